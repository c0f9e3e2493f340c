"""ComfyUI as a provider kind: what it is called, where it usually listens, and its
connection check. Generation itself goes through `spoonfeeder.comfyui`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from spoonfeeder.comfyui.client import ComfyUIClient
from spoonfeeder.providers.base import CONNECT_TIMEOUT
from spoonfeeder.providers.health import (
    CHECK_TIMEOUT,
    Health,
    checked,
    version_text,
)


class ComfyUIProvider:
    name = "comfyui"
    label = "ComfyUI"
    default_url = "http://localhost:8188"
    key_env = None
    needs_key = False  # a key only where an authenticating proxy stands in front

    def __init__(self, url: str, api_key: str | None, options: Mapping[str, Any] | None = None):
        self.url = url.rstrip("/")
        self._key = api_key or None

    def check(self) -> Health:
        return checked(self.label, self.url, bool(self._key), self._version)

    def _version(self) -> str:
        """ "ComfyUI 0.3.64", from /system_stats (one try; redirects are not followed)."""
        timeout = httpx.Timeout(CHECK_TIMEOUT, connect=CONNECT_TIMEOUT)
        with ComfyUIClient(self.url, api_key=self._key, timeout=timeout) as client:
            stats = client.system_stats()
        system = stats.get("system") if isinstance(stats, dict) else None
        version = system.get("comfyui_version") if isinstance(system, dict) else None
        return f"ComfyUI {version_text(version)}" if version else "ComfyUI"
