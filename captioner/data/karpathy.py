"""Caption data in Karpathy's split JSON: Flickr8k, Flickr30k, COCO, our scenes, users' own data.

    {"images": [{"filename": "x.jpg", "filepath": "val2014" (optional), "split": "train",
                 "sentences": [{"tokens": ["a", "dog"], "raw": "A dog."}, ...],
                 "objects": [...] (only in our synthetic scenes)}, ...]}

Karpathy's `restval` images count as training images, as in the paper's COCO setup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..vocab import tokenize

SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """The data cannot be used as given; the message is one sentence with the likely fix."""


@dataclass
class ImageRecord:
    id: int  # position in the JSON file: stable, used to index cached features
    path: Path
    split: str
    captions: list[list[str]]  # tokenised reference captions
    references: list[str] = field(default_factory=list)  # raw sentences, what coco-caption scores
    objects: list[dict] = field(default_factory=list)  # our scenes: name, words, pixel box


def _resolve(base: Path, entry: dict) -> Path:
    name = entry["filename"]
    folder = entry.get("filepath")
    candidates = [base / folder / name] if folder else []
    candidates += [base / name, base / "images" / name]
    for path in candidates:
        if path.is_file():
            return path
    return candidates[0]  # missing: reported when the image is read, with this path


def load_karpathy(json_path: str | Path, images_dir: str | Path | None = None) -> list[ImageRecord]:
    """All images of a Karpathy-format file, image paths resolved against `images_dir`.

    Without `images_dir`, paths are relative to the JSON file's folder (where our scenes keep
    `images/`). A missing or malformed file raises DataError naming the file and the entry.
    """
    json_path = Path(json_path)
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
        entries = data["images"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{json_path}: not a Karpathy split file ({e})") from None
    base = Path(images_dir) if images_dir else json_path.parent
    records = []
    for i, entry in enumerate(entries):
        try:
            split = "train" if entry.get("split") == "restval" else entry["split"]
            sentences = entry["sentences"]
            captions = [s.get("tokens") or tokenize(s["raw"]) for s in sentences]
            references = [
                s.get("raw") or " ".join(tokens) for s, tokens in zip(sentences, captions)
            ]
            records.append(
                ImageRecord(
                    id=i,
                    path=_resolve(base, entry),
                    split=split,
                    captions=captions,
                    references=references,
                    objects=entry.get("objects", []),
                )
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise DataError(f"{json_path}: image entry {i} is malformed (missing {e})") from None
    return records


def split_records(records: list[ImageRecord], split: str) -> list[ImageRecord]:
    """The records of one split; DataError naming the splits there are when it is empty."""
    chosen = [r for r in records if r.split == split]
    if not chosen:
        there = ", ".join(sorted({r.split for r in records})) or "none"
        raise DataError(f"no images in split {split!r} (splits in the data: {there})")
    return chosen


def image_size(record: ImageRecord) -> tuple[int, int]:
    """(width, height) of the image file, read from its header: the boxes are in its pixels."""
    from PIL import Image

    with Image.open(record.path) as im:
        return im.size
