"""Check a Karpathy-format data set before hours of work: are the images there, readable, captioned?

    python -m captioner check-data --data dataset_flickr8k.json --images Flicker8k_Dataset

`check_images` is the cheap check (one stat per image, nothing decoded) that `train`,
`features` and `evaluate` run before any long work: a wrong `--images` folder then ends in one
sentence that names the paths tried and the likely fix, not in an epoch trained on nothing.
`check-data` adds what a user wants to know before training on their own data: unreadable
images, captions per image, caption lengths, the vocabulary and its `<unk>` share, duplicates.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections import Counter
from pathlib import Path

from .karpathy import SPLITS, DataError, ImageRecord, load_karpathy

MAX_MISSING = 0.01  # a larger share of missing images stops a run unless --allow-missing
SHOWN = 3  # paths named in a message


def _share(part: int, whole: int) -> str:
    return f"{part / max(whole, 1):.1%}"


def _near_folders(root: Path, limit: int = 2000) -> list[Path]:
    """`root` and its sub-folders (not hidden; at most `limit` entries looked at)."""
    folders = [root]
    try:
        with os.scandir(root) as entries:
            for k, entry in enumerate(entries):
                if k >= limit:
                    break
                if not entry.name.startswith(".") and entry.is_dir():
                    folders.append(Path(entry.path))
    except OSError:
        pass
    return folders


def find_image_folder(record: ImageRecord, base: Path, data: Path) -> Path | None:
    """A folder near the data from which `record`'s image resolves: the likely `--images`."""
    try:
        rel = record.path.relative_to(base)  # `filepath/filename` or `filename`, as the JSON says
    except ValueError:
        rel = Path(record.path.name)
    roots = dict.fromkeys([base, data.parent, data.parent.parent, base.parent])
    for root in roots:
        for folder in _near_folders(root):
            if folder == base:
                continue
            # the loader also looks for `filename` straight in the folder and in its images/
            if any((folder / r).is_file() for r in (rel, rel.name, Path("images") / rel.name)):
                return folder
    return None


def likely_fix(record: ImageRecord, base: Path, data: Path) -> str:
    """What to pass so that `record`'s image is found: a folder that holds it, or the rule."""
    folder = find_image_folder(record, base, data)
    if folder is not None:
        return f"they seem to be under {folder}: pass --images {shlex.quote(str(folder))}"
    try:
        nested = len(record.path.relative_to(base).parts) > 1
    except ValueError:
        nested = False
    if nested:  # the JSON names a `filepath` folder (COCO: train2014/, val2014/)
        return (
            "pass --images DIR, the folder that holds the JSON's `filepath` folders "
            f"(here {record.path.parent.name}/; for COCO, the one with train2014/ and val2014/)"
        )
    return "pass --images DIR, the folder that holds the image files"


def count_missing(records: list[ImageRecord]) -> list[ImageRecord]:
    """The records whose image file does not exist (one stat each)."""
    return [r for r in records if not r.path.is_file()]


def check_images(
    splits: dict[str, list[ImageRecord]],
    data: str | Path,
    images_dir: str | Path | None = None,
    allow_missing: bool = False,
    max_missing: float = MAX_MISSING,
    quiet: bool = False,
) -> set[int]:
    """Stat each split's images; one summary line on stderr; DataError when a split is unusable.

    A split is unusable when none of its images exists, or when more than `max_missing` of
    them are missing and `allow_missing` is false. Returns the ids of the missing images, which
    the caller leaves out (they were summarised here, so they need no warning each).
    """
    data = Path(data)
    base = Path(images_dir) if images_dir else data.parent
    missing = {split: count_missing(records) for split, records in splits.items()}
    failing = [
        s
        for s, recs in splits.items()
        if recs
        and (
            len(missing[s]) == len(recs)
            or (len(missing[s]) > max_missing * len(recs) and not allow_missing)
        )
    ]
    if failing:
        parts = []
        for s in failing:
            n, total = len(missing[s]), len(splits[s])
            parts.append(
                f"all {total} {s} images"
                if n == total
                else f"{n} of the {total} {s} images ({_share(n, total)}, more than the "
                f"{max_missing:.0%} allowed)"
            )
        tried = [str(r.path) for s in failing for r in missing[s]][:SHOWN]
        first = missing[failing[0]][0]
        fix = likely_fix(first, base, data)
        if any(len(missing[s]) < len(splits[s]) for s in failing):
            fix += ", or go on without them with --allow-missing"
        listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
        raise DataError(
            f"{data}: {listed} are missing (tried {', '.join(tried)}"
            f"{', ...' if sum(len(missing[s]) for s in failing) > SHOWN else ''}); "
            f"{fix}"
        )
    if not quiet:
        counts = ", ".join(
            f"{s} {len(recs) - len(missing[s])} of {len(recs)}" for s, recs in splits.items()
        )
        gone = [r for s in splits for r in missing[s]]
        note = (
            f"; {len(gone)} missing, left out (e.g. {', '.join(str(r.path) for r in gone[:SHOWN])})"
            if gone
            else ""
        )
        print(f"images found: {counts}{note}", file=sys.stderr, flush=True)
    return {r.id for s in splits for r in missing[s]}


# ---------------------------------------------------------------------------- check-data


def _percentiles(values: list[int], qs=(5, 50, 95)) -> dict[str, int]:
    if not values:
        return {}
    ordered = sorted(values)
    out = {f"p{q}": ordered[min(len(ordered) - 1, (len(ordered) * q) // 100)] for q in qs}
    return {"min": ordered[0], **out, "max": ordered[-1]}


def _readable(path: Path) -> str | None:
    """None if the image loads as the models would load it, else the reason (a sentence)."""
    from ..images import ImageError, load_image

    try:
        load_image(path, max_side=64)  # JPEGs decode at reduced scale: the whole file, but fast
    except ImageError as e:
        return str(e)
    return None


def data_report(
    data: str | Path,
    images_dir: str | Path | None = None,
    min_word_freq: int = 5,
    max_len: int = 20,
    decode: bool = True,
    progress: bool = True,
) -> dict:
    """Everything `check-data` prints, as a dict; `problems` stop train, features or evaluate
    (a split without usable images, too many missing, no caption, no vocabulary), `warnings` not."""
    from tqdm import tqdm

    from ..vocab import UNK, Vocabulary

    data = Path(data)
    base = Path(images_dir) if images_dir else data.parent
    records = load_karpathy(data, images_dir)
    problems: list[str] = []
    warnings: list[str] = []
    names = [s for s in SPLITS if any(r.split == s for r in records)]
    names += sorted({r.split for r in records} - set(names))
    splits = {s: [r for r in records if r.split == s] for s in names}
    for s in ("train", "val"):
        if s not in splits:
            problems.append(
                f"no images in the {s} split (training needs train and val; "
                f"splits here: {', '.join(names) or 'none'})"
            )

    report: dict = {
        "data": str(data),
        "images_dir": str(base),
        "images": len(records),
        "splits": {},
    }
    todo = [r for r in records if r.path.is_file()] if decode else []
    bad: dict[int, str] = {}
    for r in tqdm(
        todo,
        desc="reading images",
        unit="image",
        disable=not progress or not todo,
        file=sys.stderr,
        mininterval=1.0,
    ):
        why = _readable(r.path)
        if why is not None:
            bad[r.id] = why
    for s, recs in splits.items():
        missing = count_missing(recs)
        unreadable = [r for r in recs if r.id in bad]
        entry = {
            "images": len(recs),
            "found": len(recs) - len(missing),
            "missing": len(missing),
            "missing_examples": [str(r.path) for r in missing[:SHOWN]],
        }
        if decode:
            entry.update(
                unreadable=len(unreadable),
                unreadable_examples=[bad[r.id] for r in unreadable[:SHOWN]],
            )
        report["splits"][s] = entry
        if missing and (len(missing) == len(recs) or len(missing) > MAX_MISSING * len(recs)):
            problems.append(
                f"{s}: {len(missing)} of {len(recs)} images missing "
                f"({_share(len(missing), len(recs))}; e.g. "
                f"{', '.join(entry['missing_examples'])}); "
                f"{likely_fix(missing[0], base, data)}"
            )
        elif missing:
            warnings.append(
                f"{s}: {len(missing)} of {len(recs)} images missing "
                f"({_share(len(missing), len(recs))}); training leaves them out"
            )
        if unreadable and len(unreadable) + len(missing) == len(recs) > len(missing):
            problems.append(
                f"{s}: no image can be read (e.g. {unreadable[0].path}: {bad[unreadable[0].id]})"
            )
        elif unreadable:
            warnings.append(
                f"{s}: {len(unreadable)} unreadable images, which training leaves "
                f"out (e.g. {bad[unreadable[0].id]})"
            )

    per_image = [len(r.captions) for r in records]
    uncaptioned = [r for r in records if not r.captions]
    report["captions"] = {
        "total": sum(per_image),
        "per_image": _percentiles(per_image, (50,)),
        "images_without": len(uncaptioned),
    }
    train = splits.get("train", [])
    if train and all(not r.captions for r in train):
        problems.append("no training image has a caption")
    elif uncaptioned:
        warnings.append(
            f"{len(uncaptioned)} images have no caption (e.g. {uncaptioned[0].path.name})"
        )

    lengths = [len(c) for r in records for c in r.captions]
    empty = sum(n == 0 for n in lengths)
    longer = sum(n > max_len for n in lengths)
    report["caption_words"] = {
        **_percentiles(lengths),
        "empty": empty,
        "longer_than_max_len": longer,
        "max_len": max_len,
    }
    if empty:
        warnings.append(f"{empty} captions have no words")
    if longer > 0.05 * max(len(lengths), 1):
        warnings.append(
            f"{_share(longer, len(lengths))} of the captions are longer than "
            f"--max-len {max_len} words and get cut"
        )

    vocab = Vocabulary.build([c for r in train for c in r.captions], min_word_freq)
    unk = {}
    for s, recs in splits.items():
        tokens = [t for r in recs for c in r.captions for t in c]
        unk[s] = sum(t not in vocab.stoi for t in tokens) / max(len(tokens), 1)
    report["vocabulary"] = {
        "min_word_freq": min_word_freq,
        "words": len(vocab) - 4,
        "size": len(vocab),
        "unk_share": {s: round(v, 4) for s, v in unk.items()},
    }
    if train and len(vocab) == 4:
        problems.append(
            f"no word occurs {min_word_freq} times in the training captions: the "
            f"vocabulary would be empty (lower --min-word-freq)"
        )
    elif unk.get("train", 0) > 0.05:
        warnings.append(
            f"{unk['train']:.1%} of the training words become {UNK} at "
            f"--min-word-freq {min_word_freq}"
        )

    try:
        entries = json.loads(data.read_text(encoding="utf-8"))["images"]
    except (OSError, ValueError, KeyError, TypeError):
        entries = []
    ids = Counter(
        e["imgid"]
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("imgid"), (int, str))
    )
    dup_ids = sorted((i for i, n in ids.items() if n > 1), key=str)
    paths = Counter(r.path for r in records)
    dup_paths = [p for p, n in paths.items() if n > 1]
    across = [p for p in dup_paths if len({r.split for r in records if r.path == p}) > 1]
    report["duplicates"] = {
        "image_ids": dup_ids[:20],
        "n_image_ids": len(dup_ids),
        "image_files": len(dup_paths),
        "across_splits": len(across),
    }
    if dup_ids:
        warnings.append(
            f"{len(dup_ids)} image ids (imgid) listed more than once "
            f"(e.g. {', '.join(map(str, dup_ids[:SHOWN]))})"
        )
    if dup_paths:
        warnings.append(
            f"{len(dup_paths)} image files listed more than once (e.g. {dup_paths[0]})"
            + (
                f"; {len(across)} of them in two splits, so evaluation sees training images"
                if across
                else ""
            )
        )
    report["problems"], report["warnings"] = problems, warnings
    return report


def format_report(report: dict) -> str:
    """The report as a few lines for a terminal."""
    lines = [
        f"{report['data']}: {report['images']} images, looked for under {report['images_dir']}"
    ]
    for s, e in report["splits"].items():
        line = f"  {s:<6}{e['found']:>8} found {e['missing']:>8} missing"
        if "unreadable" in e:
            line += f" {e['unreadable']:>8} unreadable"
        lines.append(line)
    c, w, v = report["captions"], report["caption_words"], report["vocabulary"]
    per = c["per_image"]
    if per:
        lines.append(
            f"captions: {c['total']}; per image min {per['min']}, median {per['p50']}, "
            f"max {per['max']}; {c['images_without']} images without"
        )
    if "p50" in w:
        lines.append(
            f"caption words: min {w['min']}, p5 {w['p5']}, median {w['p50']}, p95 {w['p95']}, "
            f"max {w['max']}; {w['longer_than_max_len']} longer than {w['max_len']}"
        )
    unk = ", ".join(f"{s} {share:.1%}" for s, share in v["unk_share"].items())
    lines.append(
        f"vocabulary (train captions, words seen >= {v['min_word_freq']} times): "
        f"{v['words']} words; <unk> share: {unk}"
    )
    d = report["duplicates"]
    lines.append(
        f"duplicates: {d['n_image_ids']} image ids, {d['image_files']} image files "
        f"({d['across_splits']} in two splits)"
    )
    lines += [f"warning: {w}" for w in report["warnings"]]
    lines += [f"problem: {p}" for p in report["problems"]]
    lines.append(
        f"{len(report['problems'])} problems: train, features or evaluate would stop on them"
        if report["problems"]
        else "no problems: ready to train"
    )
    return "\n".join(lines)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Check a Karpathy-format data set before training on it: images found, missing "
        "and unreadable per split, captions per image, caption lengths, vocabulary "
        "and <unk> share, duplicates. Exit status 0: ready to train; 1: problems on "
        "which train, features or evaluate would stop (listed); 2: the data file "
        "cannot be read.",
        add_help=add_help,
    )
    p.add_argument(
        "--data", required=True, help="captions.json / dataset_*.json in Karpathy format"
    )
    p.add_argument(
        "--images",
        default=None,
        metavar="DIR",
        help="image folder (or the folder of the `filepath` folders); default: beside the JSON",
    )
    p.add_argument("--min-word-freq", type=int, default=5, help="as for train (default 5)")
    p.add_argument("--max-len", type=int, default=20, help="as for train (default 20)")
    p.add_argument(
        "--no-decode",
        action="store_true",
        help="only look whether the image files exist; do not read them (faster)",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return p


def main(args: argparse.Namespace) -> int:
    report = data_report(
        args.data, args.images, args.min_word_freq, args.max_len, decode=not args.no_decode
    )
    print(json.dumps(report) if args.json else format_report(report), flush=True)
    return 1 if report["problems"] else 0
