"""ComfyUI generation: workflows, a client per server, runs, reproduction, sweeps.

The app uses `ctx.comfyui` (a `ComfyUIService`); the rest is for tests, scripts and
the task handler. Modules: `workflow` (pure parameter logic), `params` (pure form
values), `client` (HTTP + websocket), `runner` (one run), `service`, `media` (paths
under MEDIA_STORAGE_PATH), `records` (rows → views), `views`, `tasks` (queue handler).
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
