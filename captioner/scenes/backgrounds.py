"""Backgrounds for synthetic scenes, each with the words (if any) a caption may use for it.

Variety here keeps a captioner from learning "object = anything that is not a flat colour".
Photo backgrounds are blurred and flattened so the objects stay the clear subject, and are never
mentioned; plain colours and the three textures are ("on a blue background", "on the grass").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from .phrasing import indefinite_article

RGB = tuple[float, float, float]

# no "orange": the word would read as the fruit to anything that counts object words
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40),
    "green": (60, 150, 70),
    "blue": (50, 90, 200),
    "yellow": (240, 215, 70),
    "purple": (120, 60, 160),
    "pink": (240, 160, 200),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "brown": (125, 85, 50),
}

# name -> (skimage.data loader, dark tint, light tint, ways to say it in a caption)
_TEXTURES: dict[str, tuple[str, RGB, RGB, tuple[str, ...]]] = {
    "grass": ("grass", (20, 60, 10), (150, 210, 90), ("on the grass", "in the grass", "on a lawn")),
    "brick": (
        "brick",
        (70, 25, 15),
        (210, 120, 90),
        ("in front of a brick wall", "against a brick wall", "on a brick wall"),
    ),
    "gravel": (
        "gravel",
        (50, 45, 40),
        (210, 200, 185),
        ("on gravel", "on the gravel", "on some gravel"),
    ),
}

_PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "camera")


@dataclass(frozen=True)
class Background:
    """A size x size RGB picture; `places` are caption phrases for it, empty if it is unspoken.

    `dominant` lists the colours an object must not share; empty for busy textures and photos.
    """

    pixels: np.ndarray
    kind: str
    name: str
    places: tuple[str, ...]
    dominant: tuple[RGB, ...]


def colour_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Plain RGB distance: good enough to keep a red apple off a red background."""
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


class BackgroundMaker:
    """Draws random backgrounds; loads the skimage pictures once, on first use.

    `kind_weights` sets the mix; by default textures and photos (the most photo-like) and plain
    colours (the most captionable) are the most common.
    """

    def __init__(
        self,
        size: int,
        kind_weights: Mapping[str, float] | None = None,
        scene_photos: Sequence[tuple[np.ndarray, tuple[str, ...]]] = (),
    ):
        """`scene_photos`: real landscape photos (RGB array, caption places such as "in the
        snow"); with them, "photo" backgrounds blur those instead of scikit-image's pictures (which
        are the demo's test photos), and "scene" backgrounds show them sharp and say where."""
        self.size = size
        self.scene_photos = list(scene_photos)
        if self.scene_photos:
            default = {
                "plain": 0.16,
                "gradient": 0.12,
                "noise": 0.1,
                "texture": 0.17,
                "photo": 0.15,
                "scene": 0.3,
            }
        else:
            default = {
                "plain": 0.22,
                "gradient": 0.18,
                "noise": 0.15,
                "texture": 0.22,
                "photo": 0.23,
            }
        self.kind_weights = dict(kind_weights or default)
        self._images: dict[str, np.ndarray] = {}

    def _skimage(self, name: str) -> np.ndarray:
        if name not in self._images:
            import skimage.data  # a slow import, only needed for textures and photos

            image = getattr(skimage.data, name)()
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            self._images[name] = np.ascontiguousarray(image[..., :3])
        return self._images[name]

    def make(
        self, rng: np.random.Generator, avoid: Sequence[Sequence[float]] = (), tries: int = 12
    ) -> Background:
        """A random background whose main colours are far from every colour in `avoid`.

        The kind is drawn first and kept while retrying, so rejections do not skew the mix.
        """
        kinds = list(self.kind_weights)
        weights = np.array([self.kind_weights[k] for k in kinds])
        makers: dict[str, Callable[[np.random.Generator], Background]] = {
            "plain": self._plain,
            "gradient": self._gradient,
            "noise": self._noise,
            "texture": self._texture,
            "photo": self._photo,
            "scene": self._scene,
        }
        kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        for _ in range(tries):
            background = makers[kind](rng)
            if all(colour_distance(d, a) >= 70 for d in background.dominant for a in avoid):
                return background
        return self._photo(rng)  # photos have no main colour to clash with

    def _resized(self, pixels: np.ndarray) -> np.ndarray:
        image = Image.fromarray(pixels.astype(np.uint8), "RGB")
        return np.asarray(image.resize((self.size, self.size), Image.Resampling.BILINEAR))

    def _random_crop(
        self, rng: np.random.Generator, image: np.ndarray, min_share: float
    ) -> np.ndarray:
        h, w = image.shape[:2]
        side = int(rng.integers(int(min(h, w) * min_share), min(h, w) + 1))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        crop = image[y : y + side, x : x + side]
        return crop[:, ::-1] if rng.random() < 0.5 else crop

    def _plain(self, rng: np.random.Generator) -> Background:
        name = list(BACKGROUND_COLOURS)[rng.integers(len(BACKGROUND_COLOURS))]
        rgb = np.clip(np.array(BACKGROUND_COLOURS[name]) + rng.integers(-12, 13, size=3), 0, 255)
        pixels = np.broadcast_to(rgb.astype(np.uint8), (self.size, self.size, 3)).copy()
        article = indefinite_article(name)
        places = (f"on {article} {name} background", f"against {article} {name} background")
        return Background(pixels, "plain", name, places, (tuple(rgb.tolist()),))

    def _gradient(self, rng: np.random.Generator) -> Background:
        names = list(BACKGROUND_COLOURS)
        first, second = (names[i] for i in rng.choice(len(names), size=2, replace=False))
        a = np.array(BACKGROUND_COLOURS[first], dtype=np.float32)
        b = np.array(BACKGROUND_COLOURS[second], dtype=np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        coords = np.linspace(-0.5, 0.5, self.size, dtype=np.float32)
        t = np.cos(angle) * coords[None, :] + np.sin(angle) * coords[:, None]
        t = (t - t.min()) / (t.max() - t.min())
        pixels = a * (1 - t[..., None]) + b * t[..., None]
        places = (f"on {indefinite_article(first)} {first} and {second} background",)
        name = f"{first}-{second}"
        return Background(pixels.astype(np.uint8), "gradient", name, places, (tuple(a), tuple(b)))

    def _noise(self, rng: np.random.Generator) -> Background:
        cells = int(rng.integers(3, 9))
        base = rng.uniform(40, 215, size=3)
        coarse = np.clip(
            base + rng.normal(0.0, rng.uniform(20, 55), size=(cells, cells, 3)), 0, 255
        )
        smooth = Image.fromarray(coarse.astype(np.uint8), "RGB").resize(
            (self.size, self.size), Image.Resampling.BICUBIC
        )
        grain = rng.normal(0.0, rng.uniform(2, 8), size=(self.size, self.size, 1))
        pixels = np.clip(np.asarray(smooth, dtype=np.float32) + grain, 0, 255)
        return Background(pixels.astype(np.uint8), "noise", "noise", (), (tuple(base.tolist()),))

    def _texture(self, rng: np.random.Generator) -> Background:
        name = list(_TEXTURES)[rng.integers(len(_TEXTURES))]
        loader, dark, light, places = _TEXTURES[name]
        gray = self._random_crop(rng, self._skimage(loader)[..., 0], 0.4).astype(np.float32) / 255.0
        t = np.clip((gray - gray.mean()) * rng.uniform(0.6, 0.9) + 0.5, 0, 1)[..., None]
        pixels = np.array(dark, dtype=np.float32) * (1 - t) + np.array(light, dtype=np.float32) * t
        # busy enough that even a similarly coloured object keeps visible edges: nothing to avoid
        return Background(self._resized(pixels), "texture", name, places, ())

    def _scene(self, rng: np.random.Generator) -> Background:
        """A real landscape photo, sharp, that captions may mention ("a goose in the snow")."""
        k = int(rng.integers(len(self.scene_photos)))
        pixels, places = self.scene_photos[k]
        crop = self._random_crop(rng, pixels, 0.6).astype(np.float32)
        crop = np.clip(crop * rng.uniform(0.85, 1.1), 0, 255)
        return Background(self._resized(crop), "scene", f"scene{k}", tuple(places), ())

    def _photo(self, rng: np.random.Generator) -> Background:
        if self.scene_photos:
            name = f"scene{int(rng.integers(len(self.scene_photos)))}"
            crop = self._random_crop(rng, self.scene_photos[int(name[5:])][0], 0.5)
        else:
            name = _PHOTOS[rng.integers(len(_PHOTOS))]
            crop = self._random_crop(rng, self._skimage(name), 0.5)
        crop_image = Image.fromarray(np.ascontiguousarray(crop), "RGB")
        # blur cheaply: shrink, soften, and blow up again; the radius is relative to the full size
        small = max(8, self.size // 4)
        radius = self.size * rng.uniform(0.015, 0.035) * small / self.size
        image = crop_image.resize((small, small), Image.Resampling.BOX)
        image = image.filter(ImageFilter.GaussianBlur(radius)).resize(
            (self.size, self.size), Image.Resampling.BICUBIC
        )
        pixels = np.asarray(image, dtype=np.float32)
        flatten = rng.uniform(0.35, 0.6)  # share of the contrast that is kept
        mean = pixels.reshape(-1, 3).mean(0)
        pixels = mean + (pixels - mean) * flatten
        pixels = np.clip(pixels + rng.uniform(-10, 25), 0, 255).astype(np.uint8)
        return Background(pixels, "photo", name, (), ())
