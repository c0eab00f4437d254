"""Where the model should look when it names an object: attention targets from object boxes.

The paper's attention learns without being told where things are. Data that lists objects with
pixel boxes and the caption tokens that name them (our scenes' `objects`; Flickr30k Entities
converted to that form) can also teach it, as in "attention correctness" (Liu et al., 2017):
`train --alpha-box W` adds W * -log(attention mass inside the named object's box) at each word
that names an object. Targets are cell coverages of the encoder grid, because the encoder sees
the whole image resized to a square, so a box maps onto the grid by its share of width and height.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def box_coverage(box: Sequence[float], size: tuple[int, int], grid: int) -> np.ndarray:
    """(grid, grid): the share of each grid cell that lies inside the pixel box [x0, y0, x1, y1]."""
    width, height = size
    x0, y0, x1, y1 = box
    xs = np.linspace(0.0, width, grid + 1)  # (grid+1,) cell edges
    ys = np.linspace(0.0, height, grid + 1)  # (grid+1,)
    cover_x = np.clip(np.minimum(xs[1:], x1) - np.maximum(xs[:-1], x0), 0, None) / (width / grid)
    cover_y = np.clip(np.minimum(ys[1:], y1) - np.maximum(ys[:-1], y0), 0, None) / (height / grid)
    return np.outer(cover_y, cover_x).astype(np.float32)  # (grid, grid), rows are y


def mention_targets(
    objects: Sequence[dict], size: tuple[int, int], n_captions: int, grid: int = 14
) -> list[dict[int, np.ndarray]]:
    """For each caption of an image: {token index: (grid*grid,) coverage of the boxes it names}.

    `objects[k]["mentions"]` lists [caption index, token index] pairs; a token naming several
    objects ("two pears") gets the union of their boxes (the larger coverage per cell).
    """
    targets: list[dict[int, np.ndarray]] = [{} for _ in range(n_captions)]
    for obj in objects:
        cover = box_coverage(obj["box"], size, grid).reshape(-1)  # (P,)
        for caption, token in obj.get("mentions", ()):
            if not 0 <= caption < n_captions:
                continue
            seen = targets[caption].get(token)
            targets[caption][token] = cover if seen is None else np.maximum(seen, cover)
    return targets
