"""The pure modules load without the HTTP stack, the database or the services."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("httpx", "websockets", "sqlalchemy", "gradio", "openai", "anthropic", "ollama")


@pytest.mark.parametrize(
    "module",
    ["spoonfeeder.comfyui.workflow", "spoonfeeder.comfyui.params", "spoonfeeder.tasks.retry"],
)
def test_a_pure_module_imports_nothing_heavy(module: str) -> None:
    code = (
        "import sys\n"
        f"import {module}\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "print(','.join(heavy))\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{module} loaded {done.stdout.strip()}"


def test_the_lazy_packages_still_hand_out_their_names() -> None:
    from spoonfeeder import comfyui, tasks
    from spoonfeeder.comfyui.area import ComfyUI
    from spoonfeeder.tasks.queue import TaskQueue

    assert comfyui.ComfyUI is ComfyUI
    assert tasks.TaskQueue is TaskQueue
    with pytest.raises(AttributeError):
        _ = tasks.NoSuchThing
