"""Synthetic captioned scenes with exact ground truth, written as a Karpathy-split data set.

No caption data set can be downloaded here, so we make our own: 1-3 objects (stamps or shapes)
on varied backgrounds, five reference captions each, and for every object its pixel box and the
caption tokens that name it. The output (`images/*.png` + `captions.json`) has the layout that
Flickr8k/30k/COCO users already have, plus an `objects` list per image.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image
from tqdm import tqdm

from .backgrounds import Background, BackgroundMaker
from .objects import ObjectSource
from ..vocab import SLOT
from .phrasing import Box, Group, Sentence, describe, indefinite_article

SplitSpec = Union[str, Sequence[float]]
SPLITS = ("train", "val", "test")


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
        raise ValueError(f"object counts need three non-negative weights (for 1, 2 and 3 objects) "
                         f"that are not all 0, got {list(weights)}")
    return [x / sum(w) for x in w]


def _pick_sources(rng: np.random.Generator, sources: Sequence[ObjectSource],
                  counts: Sequence[float] = OBJECT_COUNTS) -> list[ObjectSource]:
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
        groups.append(Group(src.name, src.plural, src.head, src.head_plural, boxes, tuple(indices),
                            src.slot))
    return groups


def compose_scene(
    rng: np.random.Generator, sources: Sequence[ObjectSource], size: int, backgrounds: BackgroundMaker,
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
        from .shapes import shape_sources
        from .stamps import default_stamps_dir, load_stamps

        stamps = default_stamps_dir()
        use_stamps = stamps.is_dir() if self.use_stamps is None else self.use_stamps
        self._sources = load_stamps(stamps) if use_stamps else shape_sources()
        self._backgrounds = BackgroundMaker(self.size)

    def preload(self) -> threading.Thread:
        """Load the object pictures in the background, so the first click is quick too."""
        thread = threading.Thread(target=self.make, kwargs={"draw": False}, daemon=True,
                                  name="scene-preload")
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


def assign_splits(count: int, seed: int, split: SplitSpec = (0.9, 0.05, 0.05)) -> list[str]:
    """A split name per image: all the same, or shuffled with exact shares of train/val/test."""
    if isinstance(split, str):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return [split] * count
    fractions = np.asarray(split, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or fractions.sum() <= 0:
        raise ValueError(f"split fractions must be three non-negative numbers, got {split!r}")
    fractions = fractions / fractions.sum()
    n_val, n_test = round(count * fractions[1]), round(count * fractions[2])
    n_train = count - n_val - n_test
    labels = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * n_test)
    return np.random.default_rng([seed, 0, 1]).permutation(labels).tolist()


def scene_record(scene: Scene, imgid: int, split: str, filename: str) -> dict:
    """The Karpathy-format entry for one image, plus `objects` with boxes and mentions."""
    sentids = [imgid * len(scene.sentences) + k for k in range(len(scene.sentences))]
    sentences = [
        {"tokens": list(s.tokens), "raw": s.raw, "imgid": imgid, "sentid": sid}
        for s, sid in zip(scene.sentences, sentids)
    ]
    objects = []
    for k, obj in enumerate(scene.objects):
        mentions = [[i, tok] for i, s in enumerate(scene.sentences) for o, tok in s.mentions if o == k]
        objects.append(
            {
                "name": obj.source.name,
                "head": obj.source.head,
                "words": [obj.source.head, obj.source.head_plural, *obj.source.also],
                "box": list(obj.box),
                "mentions": mentions,
            }
        )
    return {
        "filename": filename,
        "filepath": "images",
        "imgid": imgid,
        "split": split,
        "background": scene.background.kind,
        "sentids": sentids,
        "sentences": sentences,
        "objects": objects,
    }


_worker_state: dict = {}  # per worker process: what `_write_scene` needs, set once by `_init_worker`


def _init_worker(out_dir: Path, seed: int, sources, size: int, splits: list[str],
                 object_counts: Sequence[float], scene_photos=()) -> None:
    _worker_state.update(out_dir=out_dir, seed=seed, sources=sources, size=size, splits=splits,
                         object_counts=object_counts,
                         backgrounds=BackgroundMaker(size, scene_photos=scene_photos))


def _write_scene(imgid: int) -> dict:
    """Compose scene `imgid`, write its PNG and return its record (runs in any process)."""
    w = _worker_state
    scene = compose_scene(np.random.default_rng([w["seed"], imgid]), w["sources"], w["size"],
                          w["backgrounds"], w["object_counts"])
    filename = f"{imgid:06d}.png"
    # level 1: 3x faster than the default and only ~10% larger; generation is I/O bound otherwise
    Image.fromarray(scene.image, "RGB").save(w["out_dir"] / "images" / filename, compress_level=1)
    return scene_record(scene, imgid, w["splits"][imgid], filename)


def generate_scenes(
    out_dir: str | Path,
    count: int,
    seed: int,
    sources: Sequence[ObjectSource],
    size: int = 448,
    split_fractions: SplitSpec = (0.9, 0.05, 0.05),
    progress: bool = True,
    workers: int = 1,
    object_counts: Sequence[float] | None = None,
    photos_dir: str | Path | None = None,
) -> dict:
    """Write `count` scenes to out_dir/images and out_dir/captions.json; returns the JSON data.

    Image k depends only on (seed, k), so a run is reproducible byte for byte, with any number
    of worker processes. `object_counts`: weights of 1, 2 and 3 objects per scene (default
    `OBJECT_COUNTS`). `photos_dir`: real photos extracted by `python -m captioner photos`; its
    training landscapes become backgrounds that captions mention, and its training object
    photos are added as images of their own, captioned with the slot word (see `photo_records`).
    """
    if count < 0 or seed < 0:
        raise ValueError("count and seed must not be negative")
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if not sources:
        raise ValueError("no object sources to draw scenes from")
    counts = OBJECT_COUNTS if object_counts is None else object_count_shares(object_counts)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    scene_photos = load_scene_photos(photos_dir) if photos_dir else []
    setup = (out_dir, seed, list(sources), size, assign_splits(count, seed, split_fractions),
             tuple(counts), scene_photos)
    bar = dict(total=count, desc="scenes", unit="img", disable=not progress)
    if workers == 1:
        _init_worker(*setup)
        try:
            images = [_write_scene(k) for k in tqdm(range(count), **bar)]
        finally:
            _worker_state.clear()  # don't keep the object pictures alive after the run
    else:
        with multiprocessing.get_context("spawn").Pool(workers, _init_worker, setup) as pool:
            images = list(tqdm(pool.imap(_write_scene, range(count), chunksize=8), **bar))
    if photos_dir:
        images += photo_records(photos_dir, out_dir, len(images), seed, size)
    data = {"dataset": "scenes", "images": images}
    (out_dir / "captions.json").write_text(json.dumps(data), encoding="utf-8")
    return data


def _photo_manifest(photos_dir: str | Path) -> list[dict]:
    path = Path(photos_dir) / "photos.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: extract the photos first with "
                                f"`python -m captioner photos --out {photos_dir}`")
    return json.loads(path.read_text(encoding="utf-8"))


def load_scene_photos(photos_dir: str | Path) -> list[tuple[np.ndarray, tuple[str, ...]]]:
    """The training landscapes of an extracted photo folder: (RGB pixels, caption places)."""
    out = []
    for r in _photo_manifest(photos_dir):
        if r["role"] == "scene" and r["split"] == "train" and r.get("places"):
            with Image.open(Path(photos_dir) / r["file"]) as im:
                out.append((np.asarray(im.convert("RGB")), tuple(r["places"])))
    return out


# Captions for a photo of one thing; {A} is "a <obj>" in the tokens, "a banana" in the text.
PHOTO_TEMPLATES = ("{A}", "a picture of {A}", "a photo of {A}", "a close up of {A}",
                   "an image of {A}", "there is {A} in the picture", "a view of {A}")


def photo_records(photos_dir: str | Path, out_dir: str | Path, first_id: int, seed: int,
                  size: int = 448, copies: int = 2) -> list[dict]:
    """Training records for the labelled object photos of split "train" (a mirrored copy too).

    The model only has to learn *that* the photo shows a thing and where it is: the tokens say
    "a picture of a <obj>", and the encoder's classifier names it. No boxes: no box supervision.
    """
    rng = np.random.default_rng([seed, 7])
    records = []
    photos = [r for r in _photo_manifest(photos_dir) if r["role"] == "object" and r["split"] == "train"]
    for r in tqdm(photos, desc="photos", unit="img"):
        with Image.open(Path(photos_dir) / r["file"]) as im:
            image = im.convert("RGB")
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        for copy in range(copies):
            imgid = first_id + len(records)
            filename = f"{imgid:06d}.jpg"
            shown = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if copy % 2 else image
            shown.save(Path(out_dir) / "images" / filename, quality=90)
            label = r["label"]
            chosen = rng.choice(len(PHOTO_TEMPLATES), size=5, replace=False)
            sentences = []
            for k, t in enumerate(chosen):
                template = PHOTO_TEMPLATES[t]
                raw = template.replace("{A}", f"{indefinite_article(label)} {label}")
                tokens = template.replace("{A}", f"a {SLOT}").split()
                sentences.append({"tokens": tokens, "raw": raw[0].upper() + raw[1:] + ".",
                                  "imgid": imgid, "sentid": imgid * 5 + k})
            records.append({"filename": filename, "filepath": "images", "imgid": imgid,
                            "split": "train", "background": "photo", "photo": r["file"],
                            "sentids": [s["sentid"] for s in sentences], "sentences": sentences,
                            "objects": []})
    return records


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        "scenes",
        add_help=add_help,
        description="Generate synthetic captioned scenes (Karpathy JSON + PNGs).",
    )
    parser.add_argument("--out", required=True, help="output directory (images/ and captions.json)")
    parser.add_argument("--count", type=int, required=True, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same data set")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--stamps", metavar="DIR", help="Tux Paint stamps directory (default: Debian's, if installed)"
    )
    source.add_argument("--shapes", action="store_true", help="use procedural shapes instead of stamps")
    parser.add_argument("--size", type=int, default=448, help="image side in pixels")
    parser.add_argument(
        "--split", choices=[*SPLITS, "auto"], default="auto", help="auto: 90/5/5 train/val/test shuffle"
    )
    parser.add_argument("--workers", type=int, default=1,
                        help="processes drawing scenes (same output for any number)")
    parser.add_argument("--photos", metavar="DIR", default=None,
                        help="real photos from `python -m captioner photos --out DIR`: landscapes "
                             "as backgrounds captions mention, labelled photos as extra training "
                             "images; and stamps the classifier names well are named by it")
    parser.add_argument("--object-counts", type=float, nargs=3, metavar=("W1", "W2", "W3"),
                        default=None, help="weights of scenes with 1, 2 and 3 objects "
                        f"(default {' '.join(map(str, OBJECT_COUNTS))})")
    return parser


def _sources_from_args(args: argparse.Namespace) -> list[ObjectSource]:
    from .shapes import shape_sources
    from .stamps import default_stamps_dir, load_stamps

    if args.shapes:
        return shape_sources()
    slots = bool(getattr(args, "photos", None))
    if args.stamps:
        return load_stamps(args.stamps, slots=slots)
    if default_stamps_dir().is_dir():
        return load_stamps(default_stamps_dir(), slots=slots)
    print(f"no stamps at {default_stamps_dir()}: using procedural shapes", file=sys.stderr)
    return shape_sources()


def main(args: argparse.Namespace) -> int:
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.object_counts is not None:
        try:
            object_count_shares(args.object_counts)
        except ValueError as error:
            print(f"error: --object-counts: {error}", file=sys.stderr)
            return 2
    try:
        sources = _sources_from_args(args)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    split: SplitSpec = (0.9, 0.05, 0.05) if args.split == "auto" else args.split
    data = generate_scenes(
        args.out, args.count, args.seed, sources, size=args.size, split_fractions=split,
        workers=args.workers, object_counts=args.object_counts, photos_dir=args.photos,
    )
    counts = {s: sum(img["split"] == s for img in data["images"]) for s in SPLITS}
    print(f"wrote {len(data['images'])} scenes from {len(sources)} objects to {args.out} {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
