"""Input images for workflows with a LoadImage node: kept in the media folder, uploaded to
ComfyUI before each run.

An image is stored once, under a name made from its sha256 (`comfyui/inputs/<sha>.png`),
and goes to ComfyUI's /upload/image as `spoonfeeder_<sha[:16]>.png` with overwrite on:
the name, and so the snapshot that names it, depends only on the bytes. A re-run posts
the same snapshot after uploading the same file again — to a restarted server, or
another one, alike.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from spoonfeeder.comfyui import media
from spoonfeeder.errors import ValidationError
from spoonfeeder.ids import shown

FOLDER = "inputs"
MAX_BYTES = 50 * 1024 * 1024
FORMATS = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
}
UPLOAD_PREFIX = "spoonfeeder_"


def store(root: Path, source: Path | str | bytes, filename: str | None = None) -> dict[str, Any]:
    """Keep an input image in the media folder: {path, name, sha256, mime, size, filename}.
    `source` is a file path (what the UI and gradio_client hand over) or the bytes."""
    if isinstance(source, bytes):
        data, original = source, filename or "image"
    else:
        path = Path(source)
        if not path.is_file():
            raise ValidationError(f"The input image {shown(path.name)} could not be read", "image")
        if path.stat().st_size > MAX_BYTES:
            raise ValidationError(
                f"The input image {shown(path.name)} is larger than 50 MB", "image"
            )
        data, original = path.read_bytes(), filename or path.name
    if len(data) > MAX_BYTES:
        raise ValidationError(f"The input image {shown(original)} is larger than 50 MB", "image")
    ext, mime = _format(data, original)
    digest = hashlib.sha256(data).hexdigest()
    target = media.inside(root, root / media.FOLDER / FOLDER / f"{digest}.{ext}")
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)  # a reader never sees half an image
    return {
        "path": media.relative(root, target),
        "name": f"{UPLOAD_PREFIX}{digest[:16]}.{ext}",
        "sha256": digest,
        "mime": mime,
        "size": len(data),
        "filename": media.safe_name(original),
    }


def prepare(
    root: Path, parameters: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The parameters with an input image given as a file (a path, bytes) stored and
    replaced by the name it will have on the server; and what was stored, if anything."""
    value = parameters.get("image")
    if value is None or value == "" or is_reference(value):
        return dict(parameters), None
    stored = store(root, value)
    return {**parameters, "image": stored["name"]}, stored


def for_run(
    root: Path, name: Any, node_id: str, just_stored: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """What a generation records of its input image (to upload it before each run), from
    the name its snapshot posts: one of ours is found in the media folder (an image
    reused from an earlier generation); a name of the server's own (the workflow's
    "example.png") is the server's business."""
    if not isinstance(name, str) or not name.startswith(UPLOAD_PREFIX):
        return []
    if just_stored is not None and just_stored["name"] == name:
        return [{**just_stored, "node_id": node_id}]
    digest_start = name.removeprefix(UPLOAD_PREFIX).rsplit(".", 1)[0]
    folder = root / media.FOLDER / FOLDER
    found = sorted(folder.glob(f"{digest_start}*.*")) if len(digest_start) == 16 else []
    if not found:
        raise ValidationError(
            f"The input image {shown(name)} is no longer in the media folder; choose it again",
            "image",
        )
    return [{**store(root, found[0]), "node_id": node_id}]


def file_of(root: Path, name: Any) -> Path | None:
    """The stored file behind one of our input image names (for a form to show it)."""
    try:
        images = for_run(root, name, "")
    except ValidationError:
        return None
    return media.media_file(root, images[0]["path"]) if images else None


def stored_bytes(root: Path, image: Mapping[str, Any]) -> bytes:
    """The bytes of a stored input image, checked against its digest."""
    try:
        data = media.media_file(root, str(image.get("path") or "")).read_bytes()
    except Exception:  # gone from the media folder (deleted by hand, another machine)
        raise ValidationError(
            f"The input image {shown(image.get('filename') or image.get('name'))} is no longer in "
            "the media folder; choose it again",
            "image",
        ) from None
    if hashlib.sha256(data).hexdigest() != image.get("sha256"):
        raise ValidationError(
            f"The input image {shown(image.get('filename'))} changed on disk since it was used",
            "image",
        )
    return data


def is_reference(value: Any) -> bool:
    """A name already on the server (the workflow's own, e.g. "example.png"), as opposed
    to a file to store and upload."""
    return isinstance(value, str) and not Path(value).is_file()


def _format(data: bytes, name: str) -> tuple[str, str]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or ""
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ValidationError(
            f"{shown(name)} is not an image ComfyUI can load (PNG, JPEG or WebP)", "image"
        ) from None
    if kind not in FORMATS:
        raise ValidationError(
            f"{shown(name)} is a {kind or 'non-image'} file; use a PNG, JPEG or WebP image", "image"
        )
    return FORMATS[kind]
