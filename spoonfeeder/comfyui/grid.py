"""A sweep as one labelled image, like A1111's X/Y plot: the first axis down the left, the
second across the top, each cell its generation's first image — or a grey tile saying why
there is none. Pure: image bytes in, PNG bytes out."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
EMPTY = (200, 200, 200)
PAD = 12
MAX_CELL = 512  # larger outputs are shown scaled down (the files themselves are kept)


@dataclass(frozen=True)
class Cell:
    image: bytes | None  # the generation's first image, as stored
    note: str = ""  # shown instead when there is no image ("failed", "cancelled")


def labelled_grid(
    title: str, row_labels: Sequence[str], column_labels: Sequence[str], cells: Sequence[Cell]
) -> bytes:
    """A PNG of `cells` (row-major: rows × columns) with the labels at the left and top."""
    images = [_open(cell.image) for cell in cells]
    width, height = _cell_size(images)
    font = ImageFont.load_default(size=max(14, min(width, height) // 16))
    draw_probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(text: str) -> tuple[int, int]:
        left, top, right, bottom = draw_probe.textbbox((0, 0), text, font=font)
        return right - left, bottom - top

    label_width = max((text_size(label)[0] for label in row_labels), default=0)
    left = label_width + 2 * PAD if label_width else PAD
    line = text_size("Ag")[1] + PAD
    top = 2 * line + PAD  # the title, then the column labels
    columns, rows = len(column_labels), len(row_labels)
    canvas = Image.new(
        "RGB", (left + columns * (width + PAD), top + rows * (height + PAD)), BACKGROUND
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, PAD // 2), title, fill=INK, font=font)
    for column, label in enumerate(column_labels):
        x = left + column * (width + PAD) + (width - text_size(label)[0]) // 2
        draw.text((x, line + PAD // 2), label, fill=INK, font=font)
    for row, label in enumerate(row_labels):
        y = top + row * (height + PAD) + (height - text_size(label)[1]) // 2
        draw.text((PAD, y), label, fill=INK, font=font)
    for index, (cell, image) in enumerate(zip(cells, images, strict=True)):
        row, column = divmod(index, columns)
        x, y = left + column * (width + PAD), top + row * (height + PAD)
        if image is None:
            draw.rectangle((x, y, x + width - 1, y + height - 1), fill=EMPTY)
            note_width, note_height = text_size(cell.note)
            draw.text(
                (x + (width - note_width) // 2, y + (height - note_height) // 2),
                cell.note,
                fill=INK,
                font=font,
            )
        else:
            fitted = image if image.size == (width, height) else image.resize((width, height))
            canvas.paste(fitted, (x, y))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def _open(data: bytes | None) -> Image.Image | None:
    if not data:
        return None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except OSError:  # not an image after all: shown as an empty tile
        return None
    return image.convert("RGB")


def _cell_size(images: Sequence[Image.Image | None]) -> tuple[int, int]:
    """The first image's size, scaled to fit MAX_CELL; a square when there is none."""
    first = next((image for image in images if image is not None), None)
    if first is None:
        return 256, 256
    width, height = first.size
    scale = min(1.0, MAX_CELL / max(width, height))
    return max(1, int(width * scale)), max(1, int(height * scale))
