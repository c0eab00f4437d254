"""Write the example pictures of the demo: CC0 photos from scikit-image and a few synthetic scenes.

Run once from the repository root (`python -m demo.make_examples`); the files are committed,
so the app itself never writes into the repository. The scenes are made from Tux Paint stamps
(`tuxpaint-stamps-default`, GPL-2), so `scene*.jpg` are GPL-2 too: see demo/examples/LICENSE.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

# file stem -> how to get the picture from skimage.data (all CC0, shipped inside scikit-image)
PHOTOS: dict[str, Callable[[ModuleType], np.ndarray]] = {
    "astronaut": lambda d: d.astronaut(),
    "cat": lambda d: d.chelsea(),
    "coffee": lambda d: d.coffee(),
    "rocket": lambda d: d.rocket(),
    "motorcycle": lambda d: d.stereo_motorcycle()[1],  # (left, right, disparity)
}


def save_small(image: Image.Image, path: Path, side: int = 448, quality: int = 85) -> Path:
    """Longest side `side`, baseline JPEG: small files that still look good at the app's size."""
    image = image.convert("RGB")
    if max(image.size) > side:
        scale = side / max(image.size)
        image = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.LANCZOS
        )
    image.save(path, "JPEG", quality=quality, optimize=True)
    return path


def write_photos(folder: Path) -> list[Path]:
    from skimage import data

    return [
        save_small(Image.fromarray(get(data)), folder / f"{stem}.jpg")
        for stem, get in PHOTOS.items()
    ]


def write_scenes(folder: Path, seeds: tuple[int, ...] = (3, 7, 11), size: int = 448) -> list[Path]:
    """Scenes like the default model's training data (stamps; shapes where they are missing)."""
    from captioner import SceneMaker

    paths = []
    for k, seed in enumerate(seeds, 1):
        scene = SceneMaker(size, seed=seed).make()
        paths.append(save_small(scene.image, folder / f"scene{k}.jpg", side=size))
        print(f"scene{k}: {scene.reference}")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "examples")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = write_photos(args.out) + write_scenes(args.out)
    total = sum(p.stat().st_size for p in written)
    for p in written:
        print(f"{p}  {p.stat().st_size // 1024} KB")
    print(f"total {total // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
