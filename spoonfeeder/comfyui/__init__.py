"""ComfyUI generation: workflows, a client per server, runs, reproduction, sweeps.

The app uses `ctx.comfyui`, a `ComfyUI` (`area`) holding one object per job:
`workflows` (`library.WorkflowLibrary`), `servers` (`servers.Servers`: options,
missing nodes, uploads), `sessions` (`sessions.SessionStore`), `generator`
(`generator.Generator`: new generations), `generations` (`generations.Generations`:
stored ones), `runner` (`runner.Runner`: one run on its server), `progress`
(`progress.Progress`: following runs), `media` (`media.MediaFolder`). Beside them:
`workflow` (pure parameter logic of one API-format workflow), `params` (pure form
values), `planning` (form values → what will be posted), `client` (HTTP + websocket),
`facts` (a server's model files and node classes), `inputs` (input images), `grid`
(sweep images), `rows` (rows → views), `views` (what the services return), `hooks`
(the queue and event bus once connected; stop requests), `handler` (the
`comfyui.generate` task), `builtin` (the seeded workflows).

The names below are imported on first use, so that the pure modules (`workflow`,
`params`) load without the HTTP client, websockets or the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spoonfeeder.lazy import lazy_exports

if TYPE_CHECKING:
    from spoonfeeder.comfyui.area import ComfyUI
    from spoonfeeder.comfyui.client import ComfyUIClient, PreviewImage, ServerMessage
    from spoonfeeder.comfyui.runner import RunnerTimings
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
    "ComfyUI": "area",
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
