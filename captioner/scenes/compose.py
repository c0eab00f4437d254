"""One synthetic scene: 1-3 objects (stamps or shapes) placed on a background, with five captions.

`compose_scene` draws one from a random generator; `SceneMaker` draws them one at a time for the
app. Writing many of them as a data set is `dataset.py`'s job.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .backgrounds import Background, BackgroundMaker
from .objects import ObjectSource, object_sources
from .phrasing import Box, Group, Sentence, describe


@dataclass(frozen=True)
class PlacedObject:
    """One object as drawn: its transformed cut-out and where its top-left corner went."""

    source: ObjectSource
    cutout: Image.Image  # RGBA, cropped so that its alpha > 0 pixels touch every edge
    x: int
    y: int

    @property
    def box(self) -> Box:
        """Pixel box of the visible (alpha > 0) pixels: x0, y0, x1, y1 with x1/y1 exclusive."""
        return (self.x, self.y, self.x + self.cutout.width, self.y + self.cutout.height)

    def alpha_mask(self, size: int) -> np.ndarray:
        """This object's alpha (0..255) on the whole size x size canvas."""
        mask = np.zeros((size, size), dtype=np.uint8)
        x0, y0, x1, y1 = self.box
        mask[y0:y1, x0:x1] = np.asarray(self.cutout.getchannel("A"))
        return mask


@dataclass(frozen=True)
class Scene:
    """A rendered scene with everything needed to write its record."""

    image: np.ndarray  # size x size x 3, uint8
    background: Background
    objects: tuple[PlacedObject, ...]
    sentences: tuple[Sentence, ...]


# Shares of scenes with 1, 2 and 3 objects: mostly one or two.
OBJECT_COUNTS = (0.4, 0.45, 0.15)


def object_count_shares(weights: Sequence[float]) -> list[float]:
    """Three non-negative weights for 1, 2, 3 objects, as probabilities."""
    w = [float(x) for x in weights]
    if len(w) != 3 or not all(math.isfinite(x) and x >= 0 for x in w) or sum(w) <= 0:
        raise ValueError(
            f"object counts need three non-negative weights (for 1, 2 and 3 objects) "
            f"that are not all 0, got {list(weights)}"
        )
    return [x / sum(w) for x in w]


def _pick_sources(
    rng: np.random.Generator,
    sources: Sequence[ObjectSource],
    counts: Sequence[float] = OBJECT_COUNTS,
) -> list[ObjectSource]:
    """1-3 objects (`counts`: their shares); sometimes copies of one, so captions can count ("two pears")."""
    n = int(rng.choice([1, 2, 3], p=list(counts)))
    if n >= 2 and (rng.random() < 0.3 or len(sources) < n):
        first = sources[rng.integers(len(sources))]
        if n == 2 or rng.random() < 0.35 or len(sources) < 2:
            return [first] * n
        others = [s for s in sources if s.name != first.name]
        return [first, first, others[rng.integers(len(others))]]
    return [sources[i] for i in rng.choice(len(sources), size=n, replace=False)]


def _transform(rng: np.random.Generator, image: Image.Image, longest: float) -> Image.Image:
    """Flip, resize to `longest` (more for thin things), jitter brightness, crop to what is visible.

    A syringe only as long as an apple is wide looks tiny, so objects with an aspect ratio above
    1.5 get up to 1.6x that length.
    """
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    aspect = max(image.size) / max(1, min(image.size))
    scale = longest * float(np.clip(np.sqrt(aspect / 1.5), 1.0, 1.6)) / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resized = image.convert("RGBa").resize(size, Image.Resampling.LANCZOS).convert("RGBA")
    pixels = np.asarray(resized).astype(np.float32)
    pixels[..., :3] *= rng.uniform(0.85, 1.15)
    pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    pixels[pixels[..., 3] < 8] = 0  # resampling leaves faint fringes nobody can see
    out = Image.fromarray(pixels, "RGBA")
    box = out.getchannel("A").getbbox()
    return out.crop(box) if box else out


def _overlap_ok(a: Box, b: Box, limit: float = 0.05) -> bool:
    """Boxes may touch but share at most `limit` of the smaller one, so each has its own region."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return True
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h <= limit * smaller


def _layout(
    rng: np.random.Generator, chosen: Sequence[ObjectSource], size: int, attempts: int = 200
) -> list[PlacedObject]:
    """Sizes and positions with little overlap; shrinks everything if no room is found."""
    top = {1: 0.50, 2: 0.42, 3: 0.34}[len(chosen)]
    base = rng.uniform(0.22, top)
    fractions = []
    for k, source in enumerate(chosen):
        duplicate = any(other is source for other in chosen[:k])
        fraction = base * rng.uniform(0.9, 1.1) if duplicate else rng.uniform(0.22, top)
        # small stamps get blurry when blown up: at most 3x, but never below the smallest size
        fraction = max(0.22, min(fraction, 3.0 * max(source.image.size) / size))
        fractions.append(fraction)
    shrink = 1.0
    while True:
        cutouts = [_transform(rng, s.image, f * shrink * size) for s, f in zip(chosen, fractions)]
        placed: list[PlacedObject] = []
        for source, cutout in zip(chosen, cutouts):
            for _ in range(attempts):
                x = int(rng.integers(0, size - cutout.width + 1))
                y = int(rng.integers(0, size - cutout.height + 1))
                candidate = PlacedObject(source, cutout, x, y)
                if all(_overlap_ok(candidate.box, other.box) for other in placed):
                    placed.append(candidate)
                    break
            else:
                break
        if len(placed) == len(chosen):
            return placed
        shrink *= 0.9
        if shrink < 0.2:
            raise RuntimeError(f"cannot fit {[s.name for s in chosen]} into {size} x {size} pixels")


def _mean_colour(image: Image.Image) -> tuple[float, float, float]:
    """Alpha-weighted mean RGB: what the background must not look like."""
    pixels = np.asarray(image).astype(np.float64)
    alpha = pixels[..., 3:] / 255.0
    mean = (pixels[..., :3] * alpha).sum((0, 1)) / max(alpha.sum(), 1e-6)
    return (float(mean[0]), float(mean[1]), float(mean[2]))


def _composite(background: np.ndarray, objects: Sequence[PlacedObject]) -> np.ndarray:
    """Alpha-blend the cut-outs in order, rounding once at the end."""
    canvas = background.astype(np.float32)
    for obj in objects:
        x0, y0, x1, y1 = obj.box
        pixels = np.asarray(obj.cutout).astype(np.float32)
        alpha = pixels[..., 3:] / 255.0
        region = canvas[y0:y1, x0:x1]
        canvas[y0:y1, x0:x1] = region * (1.0 - alpha) + pixels[..., :3] * alpha
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def groups_of(objects: Sequence[PlacedObject]) -> list[Group]:
    """Copies of the same object form one group, in order of first appearance."""
    members: dict[str, list[int]] = {}
    for k, obj in enumerate(objects):
        members.setdefault(obj.source.name, []).append(k)
    groups = []
    for indices in members.values():
        src = objects[indices[0]].source
        boxes = tuple(objects[k].box for k in indices)
        groups.append(
            Group(src.name, src.plural, src.head, src.head_plural, boxes, tuple(indices), src.slot)
        )
    return groups


def compose_scene(
    rng: np.random.Generator,
    sources: Sequence[ObjectSource],
    size: int,
    backgrounds: BackgroundMaker,
    object_counts: Sequence[float] = OBJECT_COUNTS,
) -> Scene:
    """One random scene: objects, a background that contrasts with them, and five captions."""
    chosen = _pick_sources(rng, sources, object_counts)
    objects = _layout(rng, chosen, size)
    background = backgrounds.make(rng, avoid=[_mean_colour(o.cutout) for o in objects])
    image = _composite(background.pixels, objects)
    sentences = describe(groups_of(objects), size, rng, background.places)
    return Scene(image, background, tuple(objects), tuple(sentences))


@dataclass(frozen=True)
class RandomScene:
    image: Image.Image
    reference: str  # one of the scene's reference captions, to compare with the model's


class SceneMaker:
    """Draws random scenes; the object pictures are loaded once, on first use (stamps take ~1 s)."""

    def __init__(self, size: int = 448, use_stamps: bool | None = None, seed: int | None = None):
        self.size = size
        self.use_stamps = use_stamps
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._sources: list | None = None
        self._backgrounds = None

    def _load(self) -> None:
        self._sources = object_sources(self.use_stamps, quiet=True)
        self._backgrounds = BackgroundMaker(self.size)

    def preload(self) -> threading.Thread:
        """Load the object pictures in the background, so the first click is quick too."""
        thread = threading.Thread(
            target=self.make, kwargs={"draw": False}, daemon=True, name="scene-preload"
        )
        thread.start()
        return thread

    def make(self, draw: bool = True) -> RandomScene | None:
        with self._lock:  # one generator state; drawing takes ~20 ms
            if self._sources is None:
                self._load()
            if not draw:
                return None
            scene = compose_scene(self._rng, self._sources, self.size, self._backgrounds)
        reference = scene.sentences[0].raw if scene.sentences else ""
        return RandomScene(Image.fromarray(scene.image, "RGB"), reference)
