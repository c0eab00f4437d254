"""Turn one caption into the files the page shows: a frame per word, the GIF and the grid figure.

Frames are drawn once per caption and saved as small JPEGs, so stepping through the words only
hands back a path: no model, no drawing, no encoding per click. The first frame is drawn at once
and the rest right after it (with the GIF and the grid), so the page shows something quickly; a
frame asked for before that finishes is drawn on the spot.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from captioner import Caption, attention_frames, attention_grid, save_gif

JPEG_QUALITY = 90


@dataclass
class Rendered:
    """A caption as the page steps through it: its words, attention and picture files."""

    text: str
    words: list[str]
    alphas: np.ndarray  # (n, 14, 14)
    base: Path  # the captioned picture at display size; frames are saved next to it
    sources: list[str] = field(default_factory=list)  # per word: "decoder" or "classifier"
    names: list[list[dict]] = field(default_factory=list)  # per word: the classifier's top names
    cells: list[int] | None = None  # hard attention: the cell each word looked at; None: soft

    def __len__(self) -> int:
        return len(self.words)

    @property
    def folder(self) -> Path:
        return self.base.parent

    def clamp(self, index: int) -> int:
        return min(max(int(index), 0), max(len(self.words) - 1, 0))

    def frame_path(self, index: int, distribution: bool = False) -> Path:
        """Word `index`'s frame file; `distribution`: a hard model's smooth map of the attention
        distribution instead of its looked-at cell (the same file for a soft model)."""
        suffix = "_distribution" if distribution and self.cells is not None else ""
        return self.folder / f"{index + 1:02d}_{_slug(self.words[index])}{suffix}.jpg"

    def frame(self, index: int, distribution: bool = False) -> str:
        """The picture for word `index` (clamped), drawn now if not yet; the base picture without words.

        Raises FileNotFoundError when the files are gone (the workspace dropped this caption).
        """
        if not self.words:
            path = self.base
        else:
            index = self.clamp(index)
            path = self.frame_path(index, distribution)
            if not path.is_file():
                self.draw([index], distribution)
        if not path.is_file():
            raise FileNotFoundError(path)
        return str(path)

    def draw(self, indices: Iterable[int] | None = None, distribution: bool = False) -> list[Path]:
        """Draw and save the frames of `indices` (default: all) that are not on disk yet."""
        todo = [
            i
            for i in (range(len(self.words)) if indices is None else indices)
            if not self.frame_path(i, distribution).is_file()
        ]
        cells = None if self.cells is None or distribution else self.cells
        if todo:
            if not self.base.is_file():
                raise FileNotFoundError(self.base)
            with Image.open(self.base) as im:
                base = im.convert("RGB")
            frames = attention_frames(
                base,
                [self.words[i] for i in todo],
                self.alphas[todo],
                size=None,
                cells=None if cells is None else [cells[i] for i in todo],
            )
            for i, frame in zip(todo, frames):
                _save_atomic(frame, self.frame_path(i, distribution))
        return [self.frame_path(i, distribution) for i in range(len(self.words))]


def _slug(word: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", word)[:24] or "word"


def _save_atomic(image: Image.Image, path: Path) -> None:
    """Write then rename, so a frame being drawn by one request is never read half-written by another."""
    tmp = path.with_name(f".{uuid.uuid4().hex}.tmp")
    image.save(tmp, "JPEG", quality=JPEG_QUALITY)
    os.replace(tmp, path)


def display_copy(image: Image.Image, side: int) -> Image.Image:
    """The picture with its longest side `side`: the size every frame is drawn at."""
    image = image.convert("RGB")
    if max(image.size) != side:
        scale = side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.BILINEAR, reducing_gap=2.0)
    return image


def start_render(caption: Caption, folder: Path, side: int = 448) -> Rendered:
    """Save the captioned picture at display size into `folder`; frames follow on demand."""
    base = folder / "image.jpg"
    _save_atomic(display_copy(caption.image, side), base)
    return Rendered(
        text=caption.text,
        words=list(caption.words),
        alphas=np.asarray(caption.alphas, dtype=np.float32),
        base=base,
        sources=list(caption.sources),
        names=[[c.to_dict() for c in choices] for choices in caption.names],
        cells=None if caption.cells is None else list(caption.cells),
    )


def word_note(rendered: Rendered | None, index: int) -> str:
    """One line on where word `index` came from: the decoder, or the classifier and its top names."""
    if rendered is None or not rendered.words or not rendered.sources:
        return ""
    i = rendered.clamp(index)
    word = rendered.words[i]
    looked = ""
    if rendered.cells is not None:  # hard attention: its chosen cell, and how sure the choice was
        row, col = divmod(rendered.cells[i], rendered.alphas.shape[-1])
        share = float(rendered.alphas[i].reshape(-1)[rendered.cells[i]])
        looked = (
            f" Hard attention: its chosen cell is row {row + 1}, column {col + 1} of the grid "
            f"({share:.0%} of the attention)."
        )
    if rendered.sources[i] != "classifier":
        return f"**{word}**: from the decoder's own vocabulary.{looked}"
    options = " · ".join(
        f"{c['name']} {c['probability']:.0%}"
        + (f" ({c['detail']})" if c["detail"] != c["name"] else "")
        for c in rendered.names[i]
    )
    return (
        f"**{word}**: named by the encoder's ImageNet classifier from where the model looked. "
        f"Its top 3: {options}{looked}"
    )


def render_gif(rendered: Rendered, name: str = "attention.gif") -> Path | None:
    """All frames as one looping GIF next to them (None for an empty caption)."""
    if not rendered.words:
        return None
    frames = []
    for path in rendered.draw():
        with Image.open(path) as im:
            frames.append(im.convert("RGB"))
    return save_gif(frames, rendered.folder / name)


def render_grid(rendered: Rendered, name: str = "attention_grid.png") -> Path | None:
    """The paper-style figure of all words as a PNG (None for an empty caption); drawn once."""
    if not rendered.words:
        return None
    path = rendered.folder / name
    if path.is_file():
        return path
    with Image.open(rendered.base) as im:
        base = im.convert("RGB")
    tmp = path.with_name(f".{uuid.uuid4().hex}.png")
    attention_grid(
        base, rendered.words, rendered.alphas, tmp, title=rendered.text, cells=rendered.cells
    )
    os.replace(tmp, path)
    return path
