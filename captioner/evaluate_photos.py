"""Does the caption name what is in a real photo? Scored on labelled photos the model never saw.

    python -m captioner photos --out data/photos               # extract them once (test split: held out)
    python -m captioner evaluate-photos --photos data/photos   # + the demo's scikit-image photos

For each photo: the caption, and whether it names the photo's labelled object with one of its
accepted names (`names` in the photo list: the label, synonyms, the basic-level word), singular or
plural. In total: the share named, and how many captions stutter ("a a") or repeat a word pair.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .images import ImageError, load_image
from .model import Caption, Captioner
from .options import add_decoding_arguments, add_model_arguments, decoding_kwargs, model_kwargs

# The demo's example photos (scikit-image, CC0) and what a caption may call their main object.
DEMO_PHOTOS = {
    "cat.jpg": ("cat", ["cat", "kitten"]),
    "coffee.jpg": ("coffee", ["coffee", "cup of coffee", "cup", "mug", "espresso", "coffee mug"]),
    "motorcycle.jpg": ("motorcycle", ["motorcycle", "motorbike", "scooter", "moped"]),
    "rocket.jpg": ("rocket", ["rocket", "space shuttle", "missile"]),
    "astronaut.jpg": ("astronaut", ["astronaut", "person", "man", "woman", "spacesuit"]),
}


@dataclass
class LabelledPhoto:
    path: Path
    label: str
    names: list[str]
    source: str


def accepted_forms(names: Sequence[str]) -> set[str]:
    """Each name, singular and plural (the ImageNet table's plural where it knows the name)."""
    from .names import imagenet_names

    table = imagenet_names()
    forms = set()
    for name in names:
        name = name.lower()
        forms |= {
            name,
            table.plural.get(name, name + "es" if name.endswith(("s", "sh", "ch")) else name + "s"),
        }
        if name.endswith("s"):
            forms.add(name[:-1])
    return forms


def names_object(text: str, names: Sequence[str]) -> bool:
    """Whether the caption text holds one of the accepted names as whole words."""
    return any(
        re.search(rf"(?<![a-z]){re.escape(form)}(?![a-z])", text.lower())
        for form in accepted_forms(names)
    )


def names_kind_of(caption: Caption, names: Sequence[str]) -> bool:
    """Whether a classifier word of the caption is a kind of an accepted name ("a goldfish" for
    a photo labelled "fish"): right about what it is, perhaps wrong about the species."""
    from .names import imagenet_names

    table = imagenet_names()
    forms = accepted_forms(names)
    return any(
        table.group.get(table.singular.get(w, w), w) in forms
        for w, s in zip(caption.words, caption.sources)
        if s == "classifier"
    )


def names_name(name: str, names: Sequence[str]) -> bool:
    """Whether a table name (or the kind it is, its group) is one of the accepted names."""
    from .names import imagenet_names

    table = imagenet_names()
    forms = accepted_forms(names)
    return name in forms or table.group.get(name, name) in forms


def global_top1_names(model: Captioner, features: torch.Tensor) -> list[str]:
    """The table name of the encoder's top ImageNet class for each whole image (B, 196, C)."""
    from .names import imagenet_names

    table = imagenet_names()
    logits = model.encoder.classify(features.mean(1))  # (B, 1000)
    classes = logits.argmax(-1)  # (B,)
    return [table.names[int(table.class_to_name[int(c)])] for c in classes]


def repeated_pair(words: Sequence[str]) -> bool:
    """A stutter ("a a") or the same two words twice ("a dog ... a dog")."""
    tokens = " ".join(words).split()
    if any(a == b for a, b in zip(tokens, tokens[1:])):
        return True
    pairs = list(zip(tokens, tokens[1:]))
    return len(pairs) != len(set(pairs))


def load_labelled_photos(photos_dir: str | Path, split: str = "test") -> list[LabelledPhoto]:
    """The labelled object photos of one split of an extracted photo folder."""
    path = Path(photos_dir) / "photos.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no {path}: extract the photos first with "
            f"`python -m captioner photos --out {photos_dir}`"
        )
    records = json.loads(path.read_text(encoding="utf-8"))
    return [
        LabelledPhoto(Path(photos_dir) / r["file"], r["label"], r["names"], r["source"])
        for r in records
        if r["role"] == "object" and r["split"] == split
    ]


def demo_photos(folder: str | Path) -> list[LabelledPhoto]:
    folder = Path(folder)
    return [
        LabelledPhoto(folder / f, label, names, "scikit-image")
        for f, (label, names) in DEMO_PHOTOS.items()
        if (folder / f).is_file()
    ]


def score_photos(
    model: Captioner,
    photos: Sequence[LabelledPhoto],
    beam_size: int = 3,
    batch_size: int = 4,
    progress: bool = True,
    max_len: int | None = None,
    length_penalty: float = 0.0,
    no_repeat_ngram: int | None = None,
) -> dict:
    """Caption every photo and count how many captions name the labelled object.

    Also per photo `sayable`: whether the model has a word for the label at all (an ImageNet
    name, a kind of one, or a word of the decoder's vocabulary); "the Eiffel tower" is not, so
    the share among the sayable photos is reported beside the share among all. And, where the
    encoder has an ImageNet classifier, `classifier_top1`: the name of its top class for the
    whole image (the pooled features, as it was trained), and whether that names the object:
    what the encoder alone knows, a reference for the captions (a caption cannot name what its
    encoder cannot tell apart).
    """
    from .names import imagenet_names

    table = imagenet_names()
    sayable_words = table.words | set(table.group.values()) | set(model.vocab.itos)
    rows = []
    for k in tqdm(
        range(0, len(photos), batch_size),
        desc="photos",
        unit="batch",
        disable=not progress,
        file=sys.stderr,
    ):
        chunk = photos[k : k + batch_size]
        images, kept = [], []
        for p in chunk:
            try:
                images.append(load_image(p.path))
                kept.append(p)
            except ImageError as e:
                print(f"skipped: {e}", file=sys.stderr)
        if not images:
            continue
        with torch.inference_mode():
            features = model.encode(images)  # (B, 196, C)
            caps: list[Caption] = model.decode(
                features, beam_size, max_len, length_penalty, no_repeat_ngram, images=images
            )
            top1 = (
                global_top1_names(model, features)
                if model.encoder.has_classifier
                else [None] * len(caps)
            )
        for p, cap, top in zip(kept, caps, top1):
            exact = names_object(cap.text, p.names)
            rows.append(
                {
                    "image": p.path.name,
                    "source": p.source,
                    "label": p.label,
                    "caption": cap.text,
                    "named": exact or names_kind_of(cap, p.names),
                    "named_exactly": exact,
                    "sayable": bool(accepted_forms(p.names) & sayable_words),
                    "classifier_words": [
                        w for w, s in zip(cap.words, cap.sources) if s == "classifier"
                    ],
                    "repeated_pair": repeated_pair(cap.words),
                    "classifier_top1": top,
                    "classifier_top1_named": top is not None and names_name(top, p.names),
                }
            )
    n = len(rows)
    named = sum(r["named"] for r in rows)
    exactly = sum(r["named_exactly"] for r in rows)
    sayable = [r for r in rows if r["sayable"]]
    sayable_named = sum(r["named"] for r in sayable)
    return {
        "photos": n,
        "named": named,
        "share_named": named / n if n else None,
        "named_exactly": exactly,
        "share_named_exactly": exactly / n if n else None,
        "sayable": len(sayable),
        "sayable_named": sayable_named,
        "share_sayable_named": sayable_named / len(sayable) if sayable else None,
        "repeated_pair": sum(r["repeated_pair"] for r in rows),
        "classifier_top1_named": (
            sum(r["classifier_top1_named"] for r in rows) if model.encoder.has_classifier else None
        ),
        "classifier_top1_sayable_named": sum(r["classifier_top1_named"] for r in sayable),
        "rows": rows,
    }


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Score captions of labelled real photos: does the "
        "caption name the photo's object?",
        add_help=add_help,
    )
    p.add_argument(
        "--photos",
        default="data/photos",
        metavar="DIR",
        help="folder written by `python -m captioner photos` (default: data/photos)",
    )
    p.add_argument(
        "--split", default="test", help="which photos (default: test, the held-out ones)"
    )
    p.add_argument(
        "--examples",
        default="demo/examples",
        metavar="DIR",
        help="also score the demo's scikit-image photos found in DIR ('' to skip)",
    )
    add_model_arguments(p)
    add_decoding_arguments(p)
    p.add_argument("--max-photos", type=int, default=None, metavar="N")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    return p


def _print_rows(title: str, result: dict) -> None:
    print(f"# {title}")
    for r in result["rows"]:
        mark = "yes" if r["named_exactly"] else "kind" if r["named"] else "NO"
        unsayable = "" if r["sayable"] else "  (no word for it)"
        print(f"{mark:<5}{r['label']:<22} {r['caption']}   [{r['image']}]{unsayable}")
    if result["photos"]:
        print(
            f"named the labelled object in {result['named']} of {result['photos']} photos "
            f"({result['share_named']:.1%}; by one of its own names in {result['named_exactly']}, "
            f"{result['share_named_exactly']:.1%}, the rest by a kind of it: 'kind'); captions "
            f"with a repeated word pair: {result['repeated_pair']}"
        )
        if result["sayable"]:
            print(
                f"among the {result['sayable']} photos whose label the model has a word for: "
                f"named in {result['sayable_named']} ({result['share_sayable_named']:.1%})"
            )
        if result["classifier_top1_named"] is not None:
            print(
                f"for reference, the encoder's ImageNet classifier alone (its top class for the "
                f"whole photo) names the object in {result['classifier_top1_named']} of "
                f"{result['photos']} ({result['classifier_top1_named'] / result['photos']:.1%}), "
                f"{result['classifier_top1_sayable_named']} of the {result['sayable']} with a word"
            )
        print()


def main(args: argparse.Namespace) -> int:
    photos = load_labelled_photos(args.photos, args.split)
    if args.max_photos:
        photos = photos[: args.max_photos]
    if not photos:
        print(
            f"error: no labelled photos of split {args.split!r} in {args.photos}", file=sys.stderr
        )
        return 2
    model = Captioner.load(args.checkpoint, **model_kwargs(args))
    result = {"held_out": score_photos(model, photos, **decoding_kwargs(args))}
    if args.examples:
        demo = demo_photos(args.examples)
        if demo:
            result["demo_examples"] = score_photos(
                model, demo, progress=False, **decoding_kwargs(args)
            )
    if args.json:
        print(json.dumps(result))
    else:
        _print_rows(f"{args.photos} (split {args.split}): {len(photos)} photos", result["held_out"])
        if "demo_examples" in result:
            _print_rows(f"the demo's photos ({args.examples})", result["demo_examples"])
    return 0
