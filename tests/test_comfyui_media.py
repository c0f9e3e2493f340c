"""Generation files stay inside MEDIA_STORAGE_PATH whatever names ComfyUI sends (pure)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from spoonfeeder.comfyui import media
from spoonfeeder.errors import NotFoundError, ValidationError


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("ComfyUI_00001_.png", "ComfyUI_00001_.png"),
        ("../../../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/abs/olute.webm", "olute.webm"),
        ("..", "output"),
        ("", "output"),
        ("na me;rm -rf.mp4", "na_me_rm_-rf.mp4"),
        ("x" * 300 + ".flac", "x" * 95 + ".flac"),
    ],
)
def test_safe_name_keeps_only_a_harmless_base_name(given: str, kept: str) -> None:
    assert media.safe_name(given) == kept


def test_output_paths_are_generated_inside_the_generation_folder(tmp_path: Path) -> None:
    generation = uuid.uuid4()
    path = media.output_path(tmp_path, generation, 3, "../../x.png")
    assert path == (tmp_path / "comfyui" / str(generation) / "003_x.png").resolve()
    assert media.relative(tmp_path, path) == f"comfyui/{generation}/003_x.png"


@pytest.mark.parametrize(
    "path", ["../secret.key", "/etc/passwd", "comfyui/../../secret.key", "", " ", "a\x00b"]
)
def test_media_file_refuses_paths_outside_the_media_folder(tmp_path: Path, path: str) -> None:
    root = tmp_path / "media"
    root.mkdir()
    (tmp_path / "secret.key").write_text("not for you")
    with pytest.raises(ValidationError):
        media.media_file(root, path)


def test_media_file_refuses_a_symlink_that_leads_outside(tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    (tmp_path / "secret.key").write_text("not for you")
    (root / "link.png").symlink_to(tmp_path / "secret.key")
    with pytest.raises(ValidationError, match="outside the media folder"):
        media.media_file(root, "link.png")


def test_media_file_resolves_a_stored_file_and_says_when_it_is_gone(tmp_path: Path) -> None:
    (tmp_path / "comfyui").mkdir()
    (tmp_path / "comfyui" / "a.png").write_bytes(b"png")
    assert media.media_file(tmp_path, "comfyui/a.png") == (tmp_path / "comfyui/a.png").resolve()
    with pytest.raises(NotFoundError, match=r"'comfyui/b\.png' does not exist"):
        media.media_file(tmp_path, "comfyui/b.png")


@pytest.mark.parametrize(
    ("filename", "key", "kind", "mime"),
    [
        ("a.png", "images", "image", "image/png"),
        ("a.gif", "gifs", "image", "image/gif"),
        ("a.mp4", "gifs", "video", "video/mp4"),
        ("a.webm", "video", "video", "video/webm"),
        ("a.flac", "audio", "audio", "audio/flac"),
        ("a.unknownext", "audio", "audio", "application/octet-stream"),
        ("a.unknownext", "images", "image", "application/octet-stream"),
    ],
)
def test_media_type_from_extension_then_history_key(
    filename: str, key: str, kind: str, mime: str
) -> None:
    assert media.media_type(filename, key) == (kind, mime)
