"""Coloured geometric shapes drawn with Pillow, so scenes can be made without any image files.

Tests and CI use these; they also make a small, fully known vocabulary ("three red stars").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .objects import ObjectSource

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 36, 36),
    "green": (40, 160, 60),
    "blue": (36, 80, 210),
    "yellow": (245, 210, 40),
    "orange": (245, 130, 20),
    "purple": (130, 50, 170),
    "pink": (245, 130, 190),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
    "brown": (120, 75, 35),
}

_SUPERSAMPLE = 4  # draw large, then shrink: Pillow's polygons have no anti-aliasing of their own

Point = tuple[float, float]
Painter = Callable[[ImageDraw.ImageDraw, int, int], None]


def _polygon(points: Sequence[Point], n: int) -> list[Point]:
    """Unit-square coordinates (0..1) to pixels of an n x n canvas."""
    return [(x * (n - 1), y * (n - 1)) for x, y in points]


def _regular(
    corners: int, radius: float, inner: float | None = None, turn: float = -90.0
) -> list[Point]:
    """A regular polygon around (0.5, 0.5); with `inner`, a star alternating two radii."""
    steps = corners * (2 if inner else 1)
    points = []
    for k in range(steps):
        r = inner if inner and k % 2 else radius
        angle = math.radians(turn + 360.0 * k / steps)
        points.append((0.5 + r * math.cos(angle), 0.5 + r * math.sin(angle)))
    return points


def _heart() -> list[Point]:
    """The classic parametric heart curve, scaled into the unit square."""
    raw = []
    for k in range(200):
        t = 2 * math.pi * k / 200
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        raw.append((x, -y))
    xs, ys = [p[0] for p in raw], [p[1] for p in raw]
    span = max(max(xs) - min(xs), max(ys) - min(ys))
    return [
        (0.02 + 0.96 * (x - min(xs)) / span, 0.02 + 0.96 * (y - min(ys)) / span) for x, y in raw
    ]


def _paint_polygon(points: Sequence[Point]) -> Painter:
    def paint(draw: ImageDraw.ImageDraw, n: int, fill: int) -> None:
        draw.polygon(_polygon(points, n), fill=fill)

    return paint


def _paint_circle(draw: ImageDraw.ImageDraw, n: int, fill: int) -> None:
    draw.ellipse((0, 0, n - 1, n - 1), fill=fill)


def _paint_ring(draw: ImageDraw.ImageDraw, n: int, fill: int) -> None:
    draw.ellipse((0, 0, n - 1, n - 1), fill=fill)
    hole = round(n * 0.27)
    draw.ellipse((hole, hole, n - 1 - hole, n - 1 - hole), fill=0)


def _paint_cross(draw: ImageDraw.ImageDraw, n: int, fill: int) -> None:
    a, b = round(n * 0.33), round(n * 0.67)
    draw.rectangle((a, 0, b, n - 1), fill=fill)
    draw.rectangle((0, a, n - 1, b), fill=fill)


SHAPES: dict[str, Painter] = {
    "circle": _paint_circle,
    "square": _paint_polygon([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]),
    "triangle": _paint_polygon([(0.5, 0.0), (1.0, 0.9), (0.0, 0.9)]),
    "star": _paint_polygon(_regular(5, 0.5, inner=0.2)),
    "heart": _paint_polygon(_heart()),
    "diamond": _paint_polygon([(0.5, 0.0), (0.85, 0.5), (0.5, 1.0), (0.15, 0.5)]),
    "ring": _paint_ring,
    "cross": _paint_cross,
    "hexagon": _paint_polygon(_regular(6, 0.5, turn=0.0)),
}


def _edge_colour(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """A darker rim (lighter for black) so a shape stays visible on a similar background."""
    if sum(rgb) < 150:
        return (110, 110, 110)
    return tuple(round(c * 0.55) for c in rgb)  # type: ignore[return-value]


def _shape_masks(shape: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased coverage (0..1) of the whole shape and of its fill inside the rim."""
    big = size * _SUPERSAMPLE
    rim = max(2, big // 28)
    outer = Image.new("L", (big, big), 0)
    SHAPES[shape](ImageDraw.Draw(outer), big, 255)
    inner = Image.new("L", (big - 2 * rim, big - 2 * rim), 0)
    SHAPES[shape](ImageDraw.Draw(inner), big - 2 * rim, 255)
    fill = Image.new("L", (big, big), 0)
    fill.paste(inner, (rim, rim))
    # the fill only where the outline shape is solid, so ring holes stay holes
    fill = Image.fromarray(np.minimum(np.asarray(fill), np.asarray(outer)))
    shrink = (size, size)
    return (
        np.asarray(outer.resize(shrink, Image.Resampling.BOX), dtype=np.float32) / 255.0,
        np.asarray(fill.resize(shrink, Image.Resampling.BOX), dtype=np.float32) / 255.0,
    )


def _colourize(outer: np.ndarray, fill: np.ndarray, colour: str) -> Image.Image:
    """Fill colour inside, a rim colour around it, cropped to the visible pixels."""
    rgb = np.array(COLOURS[colour], dtype=np.float32)
    edge = np.array(_edge_colour(COLOURS[colour]), dtype=np.float32)
    share = np.where(outer > 0, fill / np.maximum(outer, 1e-6), 0.0)[..., None]
    pixels = share * rgb + (1.0 - share) * edge
    rgba = np.dstack([pixels, outer[..., None] * 255.0])
    image = Image.fromarray(np.clip(np.rint(rgba), 0, 255).astype(np.uint8), "RGBA")
    return image.crop(image.getchannel("A").getbbox())


def draw_shape(shape: str, colour: str, size: int = 192) -> Image.Image:
    """An RGBA cut-out of one shape, anti-aliased, cropped to its visible pixels."""
    return _colourize(*_shape_masks(shape, size), colour)


def shape_sources(
    size: int = 192, colours: Sequence[str] | None = None, shapes: Sequence[str] | None = None
) -> list[ObjectSource]:
    """Every colour x shape combination ("red circle" / "red circles", head "circle")."""
    masks = {shape: _shape_masks(shape, size) for shape in shapes or list(SHAPES)}
    sources = []
    for colour in colours or list(COLOURS):
        for shape, (outer, fill) in masks.items():
            sources.append(
                ObjectSource(
                    name=f"{colour} {shape}",
                    plural=f"{colour} {shape}s",
                    head=shape,
                    head_plural=f"{shape}s",
                    image=_colourize(outer, fill, colour),
                )
            )
    return sources
