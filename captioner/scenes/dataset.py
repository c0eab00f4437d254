"""Synthetic captioned scenes with exact ground truth, written as a Karpathy-split data set.

No caption data set can be downloaded here, so we make our own: 1-3 objects (stamps or shapes)
on varied backgrounds, five reference captions each, and for every object its pixel box and the
caption tokens that name it. The output (`images/*.png` + `captions.json`) has the layout that
Flickr8k/30k/COCO users already have, plus an `objects` list per image. `python -m captioner
scenes` is this module's command line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..vocab import SLOT
from .backgrounds import BackgroundMaker
from .compose import OBJECT_COUNTS, Scene, compose_scene, object_count_shares
from .objects import ObjectSource, object_sources
from .phrasing import indefinite_article

SplitSpec = str | Sequence[float]
SPLITS = ("train", "val", "test")


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
        mentions = [
            [i, tok] for i, s in enumerate(scene.sentences) for o, tok in s.mentions if o == k
        ]
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


def _init_worker(
    out_dir: Path,
    seed: int,
    sources,
    size: int,
    splits: list[str],
    object_counts: Sequence[float],
    scene_photos=(),
) -> None:
    _worker_state.update(
        out_dir=out_dir,
        seed=seed,
        sources=sources,
        size=size,
        splits=splits,
        object_counts=object_counts,
        backgrounds=BackgroundMaker(size, scene_photos=scene_photos),
    )


def _write_scene(imgid: int) -> dict:
    """Compose scene `imgid`, write its PNG and return its record (runs in any process)."""
    w = _worker_state
    scene = compose_scene(
        np.random.default_rng([w["seed"], imgid]),
        w["sources"],
        w["size"],
        w["backgrounds"],
        w["object_counts"],
    )
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
    setup = (
        out_dir,
        seed,
        list(sources),
        size,
        assign_splits(count, seed, split_fractions),
        tuple(counts),
        scene_photos,
    )
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
        raise FileNotFoundError(
            f"no {path}: extract the photos first with "
            f"`python -m captioner photos --out {photos_dir}`"
        )
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
PHOTO_TEMPLATES = (
    "{A}",
    "a picture of {A}",
    "a photo of {A}",
    "a close up of {A}",
    "an image of {A}",
    "there is {A} in the picture",
    "a view of {A}",
)


def photo_records(
    photos_dir: str | Path,
    out_dir: str | Path,
    first_id: int,
    seed: int,
    size: int = 448,
    copies: int = 2,
) -> list[dict]:
    """Training records for the labelled object photos of split "train" (a mirrored copy too).

    The model only has to learn *that* the photo shows a thing and where it is: the tokens say
    "a picture of a <obj>", and the encoder's classifier names it. No boxes: no box supervision.
    """
    rng = np.random.default_rng([seed, 7])
    records = []
    photos = [
        r for r in _photo_manifest(photos_dir) if r["role"] == "object" and r["split"] == "train"
    ]
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
                sentences.append(
                    {
                        "tokens": tokens,
                        "raw": raw[0].upper() + raw[1:] + ".",
                        "imgid": imgid,
                        "sentid": imgid * 5 + k,
                    }
                )
            records.append(
                {
                    "filename": filename,
                    "filepath": "images",
                    "imgid": imgid,
                    "split": "train",
                    "background": "photo",
                    "photo": r["file"],
                    "sentids": [s["sentid"] for s in sentences],
                    "sentences": sentences,
                    "objects": [],
                }
            )
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
        "--stamps",
        metavar="DIR",
        help="Tux Paint stamps directory (default: Debian's, if installed)",
    )
    source.add_argument(
        "--shapes", action="store_true", help="use procedural shapes instead of stamps"
    )
    parser.add_argument("--size", type=int, default=448, help="image side in pixels")
    parser.add_argument(
        "--split",
        choices=[*SPLITS, "auto"],
        default="auto",
        help="auto: 90/5/5 train/val/test shuffle",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes drawing scenes (same output for any number)",
    )
    parser.add_argument(
        "--photos",
        metavar="DIR",
        default=None,
        help="real photos from `python -m captioner photos --out DIR`: landscapes "
        "as backgrounds captions mention, labelled photos as extra training "
        "images; and stamps the classifier names well are named by it",
    )
    parser.add_argument(
        "--object-counts",
        type=float,
        nargs=3,
        metavar=("W1", "W2", "W3"),
        default=None,
        help="weights of scenes with 1, 2 and 3 objects "
        f"(default {' '.join(map(str, OBJECT_COUNTS))})",
    )
    return parser


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
        sources = object_sources(
            False if args.shapes else None, args.stamps, slots=bool(args.photos)
        )
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    split: SplitSpec = (0.9, 0.05, 0.05) if args.split == "auto" else args.split
    data = generate_scenes(
        args.out,
        args.count,
        args.seed,
        sources,
        size=args.size,
        split_fractions=split,
        workers=args.workers,
        object_counts=args.object_counts,
        photos_dir=args.photos,
    )
    counts = {s: sum(img["split"] == s for img in data["images"]) for s in SPLITS}
    print(f"wrote {len(data['images'])} scenes from {len(sources)} objects to {args.out} {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
