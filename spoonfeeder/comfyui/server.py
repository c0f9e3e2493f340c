"""What a ComfyUI server offers (samplers, schedulers, checkpoints, LoRAs, read from
/object_info and cached) and what it takes from us (input images)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from typing import Any

from spoonfeeder.comfyui import media
from spoonfeeder.comfyui.client import ComfyUIClient
from spoonfeeder.comfyui.records import combo_choices
from spoonfeeder.comfyui.views import ServerOptions
from spoonfeeder.db.types import utcnow
from spoonfeeder.errors import ProviderError
from spoonfeeder.profiles import ProfileService


class OptionsCache:
    """Server options per (url, profile): two profiles may reach one server with
    different keys. Safe to share between threads."""

    def __init__(self, profiles: ProfileService) -> None:
        self._profiles = profiles
        self._found: dict[tuple[str, uuid.UUID | None], ServerOptions] = {}
        self._lock = threading.Lock()

    def get(
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
    profiles: ProfileService, workflow: Mapping[str, Any], profile_id: uuid.UUID | str | None
) -> list[str] | None:
    """The node types a workflow uses that the server does not have (custom nodes to
    install), sorted; None when the server cannot be asked right now."""
    credentials = profiles.credentials("comfyui", profile_id)
    try:
        with ComfyUIClient.for_credentials(credentials) as client:
            known = set(client.object_info())
    except ProviderError:
        return None
    used = {str(node.get("class_type")) for node in workflow.values() if isinstance(node, dict)}
    return sorted(used - known)


def upload_image(
    profiles: ProfileService,
    data: bytes,
    filename: str,
    profile_id: uuid.UUID | str | None = None,
) -> str:
    """Send an input image to the server (for LoadImage nodes); the name it stored."""
    credentials = profiles.credentials("comfyui", profile_id)
    with ComfyUIClient.for_credentials(credentials) as client:
        answer = client.upload_image(data, media.safe_name(filename))
    sub = answer.get("subfolder") or ""
    return f"{sub}/{answer['name']}" if sub else str(answer["name"])
