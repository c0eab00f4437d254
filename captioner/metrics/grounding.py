"""Grounding: for data whose images list their `objects` (name, head word, words, box), does the
model look at the thing when it says its name (pointing accuracy, against the chance level of a
random peak), and does it name the things that are there (object precision and recall)?

The peak is taken on the same smoothed, image-sized map that the pictures show
(`attention_viz.upsample_attention`), so the score is about what a user sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..attention_viz import upsample_attention


@dataclass
class GroundingSample:
    """One captioned image as the grounding measures see it."""

    words: Sequence[str]
    alphas: np.ndarray | None  # (len(words), 14, 14); only pointing needs it
    size: tuple[int, int] | None  # (width, height) of the image file, the pixels boxes are in
    objects: Sequence[
        Mapping
    ]  # {"head": "bus", "words": ["bus", "buses"], "box": [x0, y0, x1, y1]}


def object_vocabulary(objects_per_image: Iterable[Sequence[Mapping]]) -> set[str]:
    """Every word that names some object somewhere in the data set: the words grounding checks."""
    return {w for objects in objects_per_image for obj in objects for w in obj["words"]}


def _box_mask(boxes: Sequence[Sequence[float]], size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies in any box; x1, y1 are exclusive pixel edges."""
    width, height = size
    xs = np.arange(width) + 0.5  # (W,)
    ys = np.arange(height) + 0.5  # (H,)
    mask = np.zeros((height, width), dtype=bool)  # (H, W)
    for x0, y0, x1, y1 in boxes:
        mask |= ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]  # (H, W)
    return mask


def attention_peak(alpha: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    """(x, y) pixel where the smoothed, image-sized attention map is highest."""
    heat = upsample_attention(alpha, size)  # (H, W)
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(x), int(y)


def pointing_accuracy(
    samples: Sequence[GroundingSample], vocabulary: set[str] | None = None
) -> dict:
    """How often the attention peak of an object word falls in the box of an object it names.

    Counted over generated words that are object words (in `vocabulary`, default: all objects'
    words in `samples`) AND name an object of their own image: a word naming an absent object
    has no box to hit, and is counted against `object_precision` instead. The peak is the argmax
    of `upsample_attention` at the image's own size; a hit is a peak in any box of the image's
    objects whose words contain the word. `pointing_chance` is what a uniformly random peak
    would score on the same words: the mean share of the image those boxes cover.
    Accuracy and chance are None when no word qualifies.
    """
    if vocabulary is None:
        vocabulary = object_vocabulary(s.objects for s in samples)
    n_object_words = hits = 0
    chances: list[float] = []
    for s in samples:
        for t, word in enumerate(s.words):
            if word not in vocabulary:
                continue
            n_object_words += 1
            boxes = [obj["box"] for obj in s.objects if word in obj["words"]]
            if not boxes:
                continue
            if s.alphas is None or s.size is None or t >= len(s.alphas):
                raise ValueError("pointing needs an attention map per word and the image size")
            mask = _box_mask(boxes, s.size)  # (H, W)
            x, y = attention_peak(s.alphas[t], s.size)
            hits += bool(mask[y, x])
            chances.append(float(mask.mean()))
    pointed = len(chances)
    return {
        "pointing_accuracy": hits / pointed if pointed else None,
        "pointing_chance": float(np.mean(chances)) if pointed else None,
        "counts": {"object_words": n_object_words, "pointed_words": pointed, "pointing_hits": hits},
    }


def object_mentions(samples: Sequence[GroundingSample], vocabulary: set[str] | None = None) -> dict:
    """Whether captions name the objects that are there, and only those.

    Precision: the share of generated object words (in `vocabulary`) that name an object of their
    image, each occurrence counted. Recall: the share of images' objects, one per distinct head
    word ("two buses" mention both buses), that the caption names with one of their words.
    """
    if vocabulary is None:
        vocabulary = object_vocabulary(s.objects for s in samples)
    n_words = n_correct = n_objects = n_mentioned = 0
    for s in samples:
        present = {w for obj in s.objects for w in obj["words"]}
        said = set(s.words)
        for word in s.words:
            if word in vocabulary:
                n_words += 1
                n_correct += word in present
        heads: dict[str, set[str]] = {}
        for obj in s.objects:
            heads.setdefault(obj["head"], set()).update(obj["words"])
        n_objects += len(heads)
        n_mentioned += sum(bool(words & said) for words in heads.values())
    return {
        "object_precision": n_correct / n_words if n_words else None,
        "object_recall": n_mentioned / n_objects if n_objects else None,
        "counts": {
            "object_words": n_words,
            "object_words_correct": n_correct,
            "objects": n_objects,
            "objects_mentioned": n_mentioned,
        },
    }


def grounding_scores(
    samples: Sequence[GroundingSample], vocabulary: set[str] | None = None
) -> dict:
    """Pointing accuracy and chance, object precision and recall, with their counts merged."""
    if vocabulary is None:
        vocabulary = object_vocabulary(s.objects for s in samples)
    pointing = pointing_accuracy(samples, vocabulary)
    mentions = object_mentions(samples, vocabulary)
    counts = {**pointing.pop("counts"), **mentions.pop("counts")}
    return {**pointing, **mentions, "counts": counts}
