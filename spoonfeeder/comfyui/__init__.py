"""ComfyUI generation: workflows, a client per server, runs, reproduction, sweeps.

The app uses `ctx.comfyui` (a `ComfyUIService`); the rest is for tests, scripts and
the task handler. Modules: `workflow` (pure parameter logic), `params` (pure form
values), `client` (HTTP + websocket), `service` (the facade), `workflows` (the workflow
library), `server` (a server's options, uploads), `sessions`, `planning` (form values →
what will be posted), `generate` (new generations), `generations` (stored ones),
`runner` (one run), `progress` (following runs), `cancelling`, `queueing` (task hooks),
`recovery` (after a restart), `media` (paths under MEDIA_STORAGE_PATH), `records`
(rows → views), `views`, `tasks` (queue handler), `builtin` (the seeded workflow).

The names below are imported on first use, so that the pure modules (`workflow`,
`params`) load without the HTTP client, websockets or the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spoonfeeder.lazy import lazy_exports

if TYPE_CHECKING:
    from spoonfeeder.comfyui.client import ComfyUIClient, PreviewImage, ServerMessage
    from spoonfeeder.comfyui.runner import RunnerTimings
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

_HOME = {
    "ComfyUIClient": "client",
    "PreviewImage": "client",
    "ServerMessage": "client",
    "RunnerTimings": "runner",
    "ComfyUIService": "service",
    **dict.fromkeys(
        [
            "PROGRESS_TOPIC",
            "GenerationProgress",
            "GenerationView",
            "OutputFile",
            "ServerOptions",
            "SessionView",
            "SweepView",
            "WorkflowView",
        ],
        "views",
    ),
}
__all__ = sorted(_HOME)


__getattr__ = lazy_exports(__name__, _HOME, globals())
