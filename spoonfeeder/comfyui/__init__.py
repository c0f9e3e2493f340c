"""ComfyUI generation: workflows, a client per server, runs, reproduction, sweeps.

The app uses `ctx.comfyui` (a `ComfyUIService`); the rest is for tests, scripts and
the task handler. Modules: `workflow` (pure parameter logic), `params` (pure form
values), `client` (HTTP + websocket), `service` (the facade), `workflows` (the workflow
library), `server` (a server's options, uploads), `sessions`, `planning` (form values →
what will be posted), `generate` (new generations), `generations` (stored ones),
`runner` (one run), `progress` (following runs), `cancelling`, `queueing` (task hooks),
`recovery` (after a restart), `media` (paths under MEDIA_STORAGE_PATH), `records`
(rows → views), `views`, `tasks` (queue handler), `builtin` (the seeded workflow).
"""

from spoonfeeder.comfyui.client import ComfyUIClient, PreviewImage, ServerMessage
from spoonfeeder.comfyui.runner import RunAbandoned, RunnerTimings
from spoonfeeder.comfyui.service import ComfyUIService
from spoonfeeder.comfyui.views import (
    PROGRESS_TOPIC,
    GenerationProgress,
    GenerationView,
    OutputFile,
    ServerOptions,
    SessionView,
    SweepView,
    WorkflowView,
)

__all__ = [
    "PROGRESS_TOPIC",
    "ComfyUIClient",
    "ComfyUIService",
    "GenerationProgress",
    "GenerationView",
    "OutputFile",
    "PreviewImage",
    "RunAbandoned",
    "RunnerTimings",
    "ServerMessage",
    "ServerOptions",
    "SessionView",
    "SweepView",
    "WorkflowView",
]
