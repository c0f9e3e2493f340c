"""What a run ran on, read when it starts and kept with the generation (`server_info`), so
that two runs can be diffed later: the ComfyUI version and system stats, the size and
modified time of the checkpoint and LoRA files the workflow names (ComfyUI lists them at
/experiment/models/{folder}), a digest of the server's node classes (/object_info: a
custom node installed or updated changes it), and the input images' sha256.

The model listings and the node digest change only when files or nodes do, and
/object_info is large (~0.5 MB): they are read once per server every `ttl` seconds.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from spoonfeeder.comfyui.client import ComfyUIClient
from spoonfeeder.errors import ProviderError, ProviderRequestError

# workflow input -> the model folder ComfyUI keeps that kind of file in
MODEL_INPUTS = {"ckpt_name": "checkpoints", "lora_name": "loras"}


class ServerFacts:
    """Reads a server's facts for a run; caches the slow-changing ones per server URL."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def read(
        self,
        client: ComfyUIClient,
        workflow: Mapping[str, Any],
        input_images: list[dict[str, Any]] | None = None,
        *,
        ttl: float = 60.0,
    ) -> dict[str, Any]:
        stats = client.system_stats()  # a server that cannot say this cannot run anything
        facts: dict[str, Any] = {
            "url": client.url,
            "comfyui_version": (stats.get("system") or {}).get("comfyui_version"),
            "system_stats": stats,
            "input_images": [
                {"node_id": i.get("node_id"), "name": i.get("name"), "sha256": i.get("sha256")}
                for i in input_images or []
            ],
        }
        try:
            lasting = self._lasting(client, ttl)
        except ProviderError as exc:  # the rest is for diffing later: not worth the run
            return {**facts, "facts_error": exc.message}
        return {
            **facts,
            "models": _used_models(workflow, lasting["model_files"]),
            "node_classes_sha256": lasting["node_classes_sha256"],
            "node_class_count": lasting["node_class_count"],
        }

    def _lasting(self, client: ComfyUIClient, ttl: float) -> dict[str, Any]:
        with self._lock:
            hit = self._cache.get(client.url)
        if hit is not None and self._clock() - hit[0] < ttl:
            return hit[1]
        object_info = client.object_info()
        found = {
            "node_classes_sha256": node_classes_digest(object_info),
            "node_class_count": len(object_info),
            "model_files": {folder: _listing(client, folder) for folder in MODEL_INPUTS.values()},
        }
        with self._lock:
            self._cache[client.url] = (self._clock(), found)
        return found


def node_classes_digest(object_info: Mapping[str, Any]) -> str:
    """sha256 of every node class definition, in a canonical form (sorted keys)."""
    canonical = json.dumps(object_info, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _listing(client: ComfyUIClient, folder: str) -> dict[str, dict[str, Any]] | None:
    """name -> {size, modified} of a model folder's files; None when the server has no
    such listing (older ComfyUI versions)."""
    try:
        files = client.model_files(folder)
    except ProviderRequestError:  # 404: this ComfyUI does not list files
        return None
    return {
        str(f["name"]): {"size": f.get("size"), "modified": f.get("modified")}
        for f in files
        if isinstance(f, dict) and f.get("name")
    }


def _used_models(
    workflow: Mapping[str, Any], listings: Mapping[str, dict[str, Any] | None]
) -> dict[str, dict[str, Any]]:
    """The model files this workflow names, by folder, with what the server says of each:
    {"checkpoints": {"x.safetensors": {"size": …, "modified": …}}, "loras": {…}}. A file
    the server does not list is recorded as missing; a server that lists none, as None."""
    used: dict[str, dict[str, Any]] = {}
    for node in workflow.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for input_name, folder in MODEL_INPUTS.items():
            name = (inputs or {}).get(input_name)
            if not isinstance(name, str):
                continue
            listing = listings.get(folder)
            facts = None if listing is None else listing.get(name, {"missing": True})
            used.setdefault(folder, {})[name] = facts
    return used
