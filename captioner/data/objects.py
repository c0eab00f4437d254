"""The one thing a scene needs from an object: a cut-out picture and the words that name it."""
from __future__ import annotations

from dataclasses import dataclass

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
