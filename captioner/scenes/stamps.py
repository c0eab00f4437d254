"""Tux Paint's photo stamps as scene objects, named by our own curated list.

The images are GPL-2 and stay in the Debian package (`tuxpaint-stamps-default`); the repository
only carries `stamps.json`, which says which stamps to use and what a caption should call them.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..images import resize_longest_side
from .objects import ObjectSource

INSTALL_HINT = "apt-get install tuxpaint-stamps-default"


@dataclass(frozen=True)
class StampInfo:
    """One curated stamp: its PNG relative to the stamps root and the words for it."""

    file: str
    name: str
    plural: str
    head: str
    head_plural: str


def default_stamps_dir() -> Path:
    """Where Debian's package puts the stamps."""
    return Path("/usr/share/tuxpaint/stamps")


def default_stamp_list_path() -> Path:
    """The curated list shipped inside this package."""
    return Path(__file__).with_name("stamps.json")


def load_stamp_list(path: str | Path | None = None) -> list[StampInfo]:
    """The curated stamps, checked so a typo in the JSON fails here and not mid-generation."""
    path = Path(path) if path is not None else default_stamp_list_path()
    entries = json.loads(path.read_text(encoding="utf-8"))["stamps"]
    stamps = [StampInfo(**entry) for entry in entries]
    names = [s.name for s in stamps]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: names used twice: {duplicates}")
    for s in stamps:
        if s.head not in s.name.split() or s.head_plural not in s.plural.split():
            raise ValueError(
                f"{path}: {s.file}: the head words must be words of the name and plural"
            )
    return stamps


def default_stamp_names_path() -> Path:
    """Which ImageNet names name each stamp, and which stamps the classifier names well."""
    return Path(__file__).with_name("stamp_imagenet.json")


def load_stamp_names(path: str | Path | None = None) -> tuple[dict[str, tuple[str, ...]], set[str]]:
    """{stamp name: ImageNet names (and their plurals) that name it}, and the classifier-named stamps."""
    from ..names import imagenet_names

    path = Path(path) if path is not None else default_stamp_names_path()
    data = json.loads(path.read_text(encoding="utf-8"))
    table = imagenet_names()
    also = {}
    for stamp, entry in data["stamps"].items():
        words = [*entry["same"], *entry["broader"]]
        unknown = [w for w in words if w not in table.plural]
        if unknown:
            raise ValueError(f"{path}: {stamp}: not names of the ImageNet table: {unknown}")
        also[stamp] = tuple(dict.fromkeys(w for n in words for w in (n, table.plural[n])))
    return also, set(data.get("classifier_named", []))


def _check_stamps_dir(stamps_dir: Path) -> None:
    if not stamps_dir.is_dir():
        raise FileNotFoundError(
            f"no stamps directory at {stamps_dir}: install the stamps with `{INSTALL_HINT}` "
            "(Debian/Ubuntu), pass another directory, or use the procedural shapes instead"
        )


def load_stamp_image(path: Path, max_side: int = 320) -> Image.Image:
    """RGBA cut-out cropped to its visible pixels, longest side at most `max_side`.

    Near-invisible fringe pixels (alpha < 16) are cleared first, so the crop, and later the
    object boxes, follow what a viewer actually sees.
    """
    with Image.open(path) as raw:
        image = raw.convert("RGBA")
    pixels = np.array(image)
    pixels[pixels[..., 3] < 16] = 0
    image = Image.fromarray(pixels, "RGBA")
    box = image.getchannel("A").getbbox()
    if box is None:
        raise ValueError(f"{path} has no visible pixels")
    image = image.crop(box)
    if max(image.size) > max_side:  # resized premultiplied ("RGBa"): no dark fringes
        image = resize_longest_side(
            image.convert("RGBa"), max_side, Image.Resampling.LANCZOS
        ).convert("RGBA")
    return image


def load_stamps(
    stamps_dir: str | Path,
    stamp_list: list[StampInfo] | None = None,
    max_side: int = 320,
    slots: bool = False,
) -> list[ObjectSource]:
    """Every listed stamp found under `stamps_dir`; missing ones are skipped with a warning.

    Every stamp also answers to its ImageNet names (`stamp_imagenet.json`; scene records list
    them, so evaluation counts them); with `slots`, the stamps that the encoder's classifier
    names well are named in training captions by the slot word.
    """
    stamps_dir = Path(stamps_dir)
    _check_stamps_dir(stamps_dir)
    stamp_list = load_stamp_list() if stamp_list is None else stamp_list
    also, named = load_stamp_names()
    named = named if slots else set()
    sources = []
    missing = []
    for stamp in stamp_list:
        path = stamps_dir / stamp.file
        if not path.is_file():
            missing.append(stamp.file)
            continue
        sources.append(
            ObjectSource(
                name=stamp.name,
                plural=stamp.plural,
                head=stamp.head,
                head_plural=stamp.head_plural,
                image=load_stamp_image(path, max_side),
                slot=stamp.name in named,
                also=also.get(stamp.name, ()),
            )
        )
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        message = f"{len(missing)} listed stamps are missing under {stamps_dir}: {shown}"
        warnings.warn(message, stacklevel=2)
    if not sources:
        raise FileNotFoundError(
            f"none of the {len(stamp_list)} listed stamps is under {stamps_dir}"
        )
    return sources


def list_candidates(stamps_dir: str | Path | None = None) -> list[tuple[str, str, float]]:
    """Curation helper: (file, English description, visible fraction of the crop) per photo stamp.

    Leaves out what is never a scene object: drawings (`cartoon` folders), symbols and mirrored
    copies. Deciding which of the rest to keep, and what to call them, is done by hand.
    """
    root = Path(stamps_dir) if stamps_dir is not None else default_stamps_dir()
    _check_stamps_dir(root)
    rows = []
    for png in sorted(root.rglob("*.png")):
        rel = png.relative_to(root)
        if rel.parts[0] == "symbols" or "cartoon" in rel.parts or png.stem.endswith("_mirror"):
            continue
        text = png.with_suffix(".txt")
        description = (
            text.read_text(encoding="utf-8").splitlines()[0].strip() if text.is_file() else ""
        )
        with Image.open(png) as raw:
            alpha = np.asarray(raw.convert("RGBA").getchannel("A"))
        ys, xs = np.nonzero(alpha >= 16)
        solid = 0.0
        if len(xs):
            crop = alpha[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            solid = float((crop >= 128).mean())
        rows.append((rel.as_posix(), description, round(solid, 2)))
    return rows


if __name__ == "__main__":
    for file, description, solid in list_candidates():
        print(f"{file}\t{solid}\t{description}")
