"""Where generation files live under MEDIA_STORAGE_PATH, and nothing outside it.

ComfyUI chooses output file names and subfolders; a buggy node or a hostile server
could send "../../x". We never use its path: each file gets a generated name inside
`comfyui/<generation id>/`, keeping only a cleaned-up base name for the reader.
"""

from __future__ import annotations

import contextlib
import mimetypes
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from spoonfeeder.errors import NotFoundError, ValidationError
from spoonfeeder.ids import shown

FOLDER = "comfyui"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 100
KIND_BY_KEY = {"images": "image", "gifs": "video", "video": "video", "audio": "audio"}


def safe_name(filename: str) -> str:
    """A harmless file name keeping the original's readable part and extension."""
    base = re.split(r"[\\/]", filename or "")[-1]
    cleaned = _UNSAFE.sub("_", base).strip("._") or "output"
    stem, dot, ext = cleaned.rpartition(".")
    if dot and len(ext) <= 10:
        return f"{stem[: MAX_NAME - len(ext) - 1]}.{ext}"
    return cleaned[:MAX_NAME]


def generation_folder(root: Path, generation_id: uuid.UUID) -> Path:
    return root / FOLDER / str(generation_id)


def preview_folder(root: Path) -> Path:
    """One folder for the live previews of every run; only recent ones stay in it."""
    return root / FOLDER / "_previews"


def prune_previews(root: Path, older_than: float) -> None:
    """Remove previews older than `older_than` seconds (one short directory listing)."""
    cutoff = time.time() - older_than
    for path in preview_folder(root).glob("*"):
        with contextlib.suppress(OSError):  # another run may have removed it already
            if path.stat().st_mtime < cutoff:
                path.unlink()


def output_path(root: Path, generation_id: uuid.UUID, index: int, filename: str) -> Path:
    """`<root>/comfyui/<generation>/<index>_<safe name>`, checked to be inside root."""
    path = generation_folder(root, generation_id) / f"{index:03d}_{safe_name(filename)}"
    return inside(root, path)


def inside(root: Path, path: Path) -> Path:
    resolved_root = root.resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(resolved_root):
        raise ValidationError("That file is outside the media folder and will not be served")
    return resolved


def relative(root: Path, path: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()


def media_file(root: Path, relative_path: str) -> Path:
    """The absolute path of a stored media file; refuses anything outside `root`."""
    text = str(relative_path or "").strip()
    if not text or "\x00" in text:
        raise ValidationError("No media file given")
    path = inside(root, root / text)
    if not path.is_file():
        raise NotFoundError(
            f"The media file {shown(text)} does not exist (it may have been deleted)"
        )
    return path


def media_type(filename: str, key: str) -> tuple[str, str]:
    """(kind, MIME type) of an output, from its extension, else from its history key."""
    guessed = mimetypes.guess_type(filename)[0] or ""
    major = guessed.split("/")[0]
    if major in ("image", "video", "audio"):
        return major, guessed
    return KIND_BY_KEY.get(key, "file"), guessed or "application/octet-stream"


class MediaFolder:
    """MEDIA_STORAGE_PATH as the app serves it (`ctx.comfyui.media`): stored outputs and
    previews by their relative path, the files behind input image names, and the
    expiry of live previews."""

    def __init__(self, root: Path, preview_ttl: Callable[[], float]) -> None:
        self.root = root
        self._preview_ttl = preview_ttl  # read when pruning: tests shorten it

    def file(self, relative_path: str) -> Path:
        """The absolute path of a stored output or preview; refuses anything outside the
        media folder (ValidationError) and missing files (NotFoundError)."""
        return media_file(self.root, relative_path)

    def input_image(self, name: str | None) -> Path | None:
        """The stored file behind an input image name of ours, to show in a form; None for
        a name of the server's own (the workflow's "example.png")."""
        from spoonfeeder.comfyui import inputs  # loads Pillow: only when a form asks

        return inputs.file_of(self.root, name)

    def prune_previews(self) -> None:
        """Remove live previews older than their time to live (a scheduled job): a
        browser fetches one a little after it was announced, never minutes later."""
        prune_previews(self.root, self._preview_ttl())
