"""The one thing a scene needs from an object: a cut-out picture and the words that name it."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image


@dataclass(frozen=True)
class ObjectSource:
    """A nameable RGBA cut-out; stamps and procedural shapes both become these.

    `head` must be a word of `name` and `head_plural` a word of `plural`: captions point at that
    word as the place where the object is mentioned ("bus" in "a green bus").
    """

    name: str
    plural: str
    head: str
    head_plural: str
    image: Image.Image
    # named in training captions by the slot `<obj>`, i.e. by the encoder's ImageNet classifier
    slot: bool = False
    also: tuple[str, ...] = ()  # other words that name it correctly (ImageNet names, plurals)

    def __post_init__(self) -> None:
        if self.image.mode != "RGBA":
            raise ValueError(f"{self.name}: the image must be RGBA, got {self.image.mode}")
        if self.head not in self.name.split():
            raise ValueError(f"head {self.head!r} is not a word of {self.name!r}")
        if self.head_plural not in self.plural.split():
            raise ValueError(f"head plural {self.head_plural!r} is not a word of {self.plural!r}")


def object_sources(
    use_stamps: bool | None = None,
    stamps_dir: str | Path | None = None,
    slots: bool = False,
    quiet: bool = False,
) -> list[ObjectSource]:
    """What scenes are drawn from: Tux Paint stamps, or procedural shapes where there are none.

    `use_stamps` None: stamps if `stamps_dir` (default: Debian's folder) is given or installed,
    else shapes (saying so unless `quiet`); True: stamps or FileNotFoundError; False: shapes.
    `slots`: stamps the encoder's classifier names well are captioned with the slot word.
    """
    from .shapes import shape_sources
    from .stamps import default_stamps_dir, load_stamps

    if use_stamps is False:
        return shape_sources()
    folder = Path(stamps_dir) if stamps_dir else default_stamps_dir()
    if use_stamps or stamps_dir or folder.is_dir():
        return load_stamps(folder, slots=slots)
    if not quiet:
        print(f"no stamps at {folder}: using procedural shapes", file=sys.stderr)
    return shape_sources()
