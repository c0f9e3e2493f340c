"""The ComfyUI servers (`ctx.comfyui.servers`): what one offers — samplers, schedulers,
checkpoints, LoRAs, read from /object_info and cached — which node types a workflow
needs that it lacks, and the input images it takes from us."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from typing import Any

from spoonfeeder.comfyui import media
from spoonfeeder.comfyui.client import ComfyUIClient
from spoonfeeder.comfyui.library import WorkflowLibrary, parse
from spoonfeeder.comfyui.rows import combo_choices
from spoonfeeder.comfyui.views import ServerOptions
from spoonfeeder.db.types import utcnow
from spoonfeeder.errors import ProviderError
from spoonfeeder.profiles import ProfileService, ProfileView


class Servers:
    """Options are cached per (url, profile): two profiles may reach one server with
    different keys. Safe to share between threads."""

    def __init__(self, profiles: ProfileService, workflows: WorkflowLibrary) -> None:
        self._profiles = profiles
        self._workflows = workflows
        self._found: dict[tuple[str, uuid.UUID | None], ServerOptions] = {}
        self._lock = threading.Lock()

    def profiles(self) -> list[ProfileView]:
        """The ComfyUI server profiles a session can run on, besides the default server
        of Settings (profile None)."""
        return [p for p in self._profiles.list_profiles() if p.provider == "comfyui"]

    def options(
        self, profile_id: uuid.UUID | str | None = None, *, refresh: bool = False
    ) -> ServerOptions:
        """Samplers, schedulers, checkpoints and LoRAs of a server, cached until `refresh`."""
        credentials = self._profiles.credentials("comfyui", profile_id)
        url = credentials.url
        with self._lock:
            cached = self._found.get((url, credentials.profile_id))
        if cached is not None and not refresh:
            return cached
        with ComfyUIClient.for_credentials(credentials) as client:
            sampler = client.object_info("KSampler").get("KSampler") or {}
            loader = (
                client.object_info("CheckpointLoaderSimple").get("CheckpointLoaderSimple") or {}
            )
            lora = client.object_info("LoraLoader").get("LoraLoader") or {}
        found = ServerOptions(
            url,
            combo_choices(sampler, "sampler_name"),
            combo_choices(sampler, "scheduler"),
            combo_choices(loader, "ckpt_name"),
            combo_choices(lora, "lora_name"),
            utcnow(),
        )
        with self._lock:
            self._found[(url, credentials.profile_id)] = found
        return found

    def missing_node_types(
        self,
        source: str | bytes | Mapping[str, Any] | uuid.UUID,
        profile_id: uuid.UUID | str | None = None,
    ) -> list[str] | None:
        """The node types a workflow (JSON, or a stored workflow's id) uses that the
        server lacks — custom nodes to install before it can run — sorted; None if the
        server cannot be reached to ask."""
        workflow = (
            self._workflows.get(source).workflow if isinstance(source, uuid.UUID) else parse(source)
        )
        credentials = self._profiles.credentials("comfyui", profile_id)
        try:
            with ComfyUIClient.for_credentials(credentials) as client:
                known = set(client.object_info())
        except ProviderError:
            return None
        used = {str(node.get("class_type")) for node in workflow.values() if isinstance(node, dict)}
        return sorted(used - known)

    def upload_image(
        self, data: bytes, filename: str, *, profile_id: uuid.UUID | str | None = None
    ) -> str:
        """Send an input image to the server (for LoadImage nodes); the name it stored."""
        credentials = self._profiles.credentials("comfyui", profile_id)
        with ComfyUIClient.for_credentials(credentials) as client:
            answer = client.upload_image(data, media.safe_name(filename))
        sub = answer.get("subfolder") or ""
        return f"{sub}/{answer['name']}" if sub else str(answer["name"])
