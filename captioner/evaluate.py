"""Score a checkpoint on a split of a Karpathy-format data set: the paper's metrics, plus grounding.

    python -m captioner evaluate --data data/flickr8k/dataset_flickr8k.json --split test

`evaluate_captions` does the work on encoder features, so training can call it on cached
features; `evaluate` loads the images and encodes them first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path

import torch

from .data.check import MAX_MISSING, check_images
from .data.karpathy import ImageRecord, image_size, load_karpathy, split_records
from .metrics import (
    TEXT_METRICS,
    GroundingSample,
    caption_scores,
    grounding_scores,
    object_vocabulary,
)
from .model import Caption, Captioner, default_checkpoint_dir
from .options import add_decoding_arguments, add_model_arguments, model_kwargs


def classifier_words(captions: Iterable[Caption]) -> set[str]:
    """Words the classifier chose for object slots: each one claims an object, right or wrong."""
    return {w for cap in captions for w, src in zip(cap.words, cap.sources) if src == "classifier"}


def evaluate_captions(
    model: Captioner,
    batches: Iterable[tuple[Sequence[Hashable], torch.Tensor]],
    records: Sequence[ImageRecord],
    beam_size: int = 3,
    max_len: int | None = None,
    length_penalty: float = 0.0,
    vocabulary: set[str] | None = None,
    meteor: bool = True,
) -> dict:
    """Caption each batch of features (ids, (B, 196, C)) and score the captions against `records`.

    Records with `objects` also get the grounding measures. `vocabulary`: the object words of the whole data set (default: of these records).
    Returns the metrics, `counts`, `n_images`, `beam_size`, `no_repeat_ngram` (the model's
    setting, used) and `captions`: one dict per image.
    """
    by_id = {r.id: r for r in records}
    dtype = next(model.decoder.parameters()).dtype
    captions: dict[Hashable, Caption] = {}
    for ids, features in batches:
        features = features.to(model.device, dtype)  # (B, 196, C)
        for image_id, cap in zip(ids, model.decode(features, beam_size, max_len, length_penalty)):
            captions[image_id] = cap

    scored = {i: by_id[i].references for i in captions if by_id[i].references}
    if scored:
        result = caption_scores(scored, {i: captions[i].text for i in scored}, meteor=meteor)
    else:
        result = {
            **dict.fromkeys(TEXT_METRICS),
            "missing": ["text metrics: no captioned image has reference sentences"],
        }
    with_objects = [i for i in captions if by_id[i].objects]
    if vocabulary is None:
        vocabulary = object_vocabulary(r.objects for r in records if r.objects)
    vocabulary = vocabulary | classifier_words(captions.values())
    samples = [
        GroundingSample(
            captions[i].words, captions[i].alphas, image_size(by_id[i]), by_id[i].objects
        )
        for i in with_objects
    ]
    grounding = grounding_scores(samples, vocabulary)
    if not with_objects:
        result["missing"].append("grounding: the data set lists no objects")
    result.update(grounding)
    result["counts"] = {
        "images": len(captions),
        "images_scored": len(scored),
        "images_with_objects": len(with_objects),
        **grounding["counts"],
    }
    result["n_images"] = len(captions)
    result["beam_size"] = beam_size
    result["no_repeat_ngram"] = model.no_repeat_ngram
    result["captions"] = [
        {
            "id": i,
            "image": str(by_id[i].path),
            "caption": cap.text,
            "score": cap.score,
            "references": by_id[i].references,
        }
        for i, cap in captions.items()
    ]
    return result


def evaluate(
    model: Captioner,
    records: Sequence[ImageRecord],
    beam_size: int = 3,
    batch_size: int = 16,
    max_len: int | None = None,
    length_penalty: float = 0.0,
    vocabulary: set[str] | None = None,
    meteor: bool = True,
    progress: bool = True,
) -> dict:
    """`evaluate_captions` on the records' image files, with a progress bar.

    An image that cannot be read is reported on stderr, skipped, and listed under `skipped`.
    Adds `seconds`, the wall time including image loading and scoring.
    """
    from tqdm import tqdm

    from .images import ImageError, load_image

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    start = time.perf_counter()
    skipped: list[dict] = []

    def batches() -> Iterable[tuple[list, torch.Tensor]]:
        with tqdm(
            total=len(records), unit="image", desc="evaluate", disable=not progress, file=sys.stderr
        ) as bar:
            for k in range(0, len(records), batch_size):
                ids, pictures = [], []
                for record in records[k : k + batch_size]:
                    try:
                        pictures.append(load_image(record.path))
                        ids.append(record.id)
                    except ImageError as e:
                        skipped.append(
                            {"id": record.id, "image": str(record.path), "error": str(e)}
                        )
                        tqdm.write(f"skipped: {e}", file=sys.stderr)
                if pictures:
                    features = model.encode(pictures)  # (B, 196, C)
                    bar.update(len(ids))
                    yield ids, features
                bar.update(len(records[k : k + batch_size]) - len(ids))

    result = evaluate_captions(
        model, batches(), records, beam_size, max_len, length_penalty, vocabulary, meteor
    )
    result["skipped"] = skipped
    result["counts"]["skipped"] = len(skipped)
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


EXIT_STATUS = (
    "exit status: 0 every image scored; 1 some images skipped (unreadable, or missing "
    "with --allow-missing); 2 bad arguments, data file or checkpoint, or more than 1% "
    "of the images missing (nothing evaluated); 3 no image, or more than 1% of them, "
    "could be scored"
)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Evaluate a checkpoint on a split of a Karpathy-format "
        "data set: BLEU, METEOR, ROUGE-L, CIDEr, grounding.",
        epilog=EXIT_STATUS,
        add_help=add_help,
    )
    add_model_arguments(p)
    p.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="Karpathy split JSON (dataset_flickr8k.json, dataset_coco.json, captions.json)",
    )
    p.add_argument("--split", default="test", help="which split to evaluate (default: test)")
    p.add_argument(
        "--images",
        default=None,
        metavar="DIR",
        help="folder holding the images (or their `filepath` folders); default: beside the JSON",
    )
    add_decoding_arguments(p)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--max-images", type=int, default=None, metavar="N", help="only the first N images"
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="evaluate even when more than 1%% of the images are missing or unreadable "
        "(they are skipped; exit status 1)",
    )
    p.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    p.add_argument(
        "--no-meteor",
        action="store_true",
        help="skip METEOR (it starts Java and loads a paraphrase table: 10-20 s)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object with all results")
    p.add_argument(
        "--out", default=None, metavar="FILE", help="also write the captions per image to FILE"
    )
    return p


def _fmt(value: float | None, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.3f}"


def format_table(result: dict, split: str) -> str:
    """The results as a few aligned lines for a terminal."""
    c = result["counts"]
    no_repeat = (
        f", no repeated {result['no_repeat_ngram']}-grams" if result.get("no_repeat_ngram") else ""
    )
    lines = [
        f"{result['n_images']} images of split '{split}', beam {result['beam_size']}{no_repeat}, "
        f"{result['seconds']:.1f} s" + (f", {c['skipped']} skipped" if c.get("skipped") else "")
    ]
    lines += [f"  {name:<18}{_fmt(result[name])}" for name in TEXT_METRICS]
    if c.get("images_with_objects"):
        lines += [
            f"  {'pointing accuracy':<18}{_fmt(result['pointing_accuracy'])}  "
            f"(chance {_fmt(result['pointing_chance'])}; {c['pointing_hits']} of "
            f"{c['pointed_words']} object words)",
            f"  {'object precision':<18}{_fmt(result['object_precision'])}  "
            f"({c['object_words_correct']} of {c['object_words']} object words)",
            f"  {'object recall':<18}{_fmt(result['object_recall'])}  "
            f"({c['objects_mentioned']} of {c['objects']} objects)",
        ]
    lines += [f"  missing: {why}" for why in result["missing"]]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Evaluate and print; exit status 2 for bad arguments or inputs, 1 if some images were
    skipped, 3 if none or too many (more than 1%, without --allow-missing) could be scored."""
    from .checkpoint import CheckpointError
    from .encoders import EncoderWeightsError
    from .onnx_encoder import EncoderRuntimeError

    for name in ("batch_size", "max_images"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    try:
        everything = load_karpathy(args.data, args.images)
        records = split_records(everything, args.split)
        records = records[: args.max_images] if args.max_images else records
        # one stat per image, before the model loads: a wrong folder ends here, in a sentence
        missing = check_images({args.split: records}, args.data, args.images, args.allow_missing)
    except ValueError as e:
        print(
            f"error: {args.data}: {e}" if str(Path(args.data)) not in str(e) else f"error: {e}",
            file=sys.stderr,
        )
        return 2
    gone = [
        {"id": r.id, "image": str(r.path), "error": f"{r.path}: no such file."}
        for r in records
        if r.id in missing
    ]  # summarised above: no line each
    records = [r for r in records if r.id not in missing]
    vocabulary = object_vocabulary(r.objects for r in everything if r.objects)
    try:
        model = Captioner.load(args.checkpoint, **model_kwargs(args))
    except (CheckpointError, EncoderWeightsError, EncoderRuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model.to(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.no_repeat_ngram is not None:
        model.no_repeat_ngram = args.no_repeat_ngram

    result = evaluate(
        model,
        records,
        args.beam_size,
        args.batch_size,
        args.max_len,
        args.length_penalty,
        vocabulary,
        meteor=not args.no_meteor,
    )
    result["skipped"] = gone + result["skipped"]
    result["counts"]["skipped"] = len(result["skipped"])
    total, skipped = len(records) + len(gone), result["skipped"]
    check = (
        f"`python -m captioner check-data --data {args.data}"
        f"{f' --images {args.images}' if args.images else ''}` lists them"
    )
    if not result["n_images"]:
        print(
            f"error: no image of split '{args.split}' could be scored: none of the {total} could "
            f"be read (e.g. {skipped[0]['error']}); {check}",
            file=sys.stderr,
        )
        return 3
    captions = result.pop("captions")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "data": str(args.data),
                    "split": args.split,
                    "checkpoint": str(args.checkpoint or default_checkpoint_dir()),
                    "beam_size": args.beam_size,
                    "no_repeat_ngram": model.no_repeat_ngram,
                    "captions": captions,
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        print(format_table(result, args.split), flush=True)
    if len(skipped) > MAX_MISSING * total and not args.allow_missing:
        print(
            f"error: {len(skipped)} of the {total} images of split '{args.split}' "
            f"({len(skipped) / total:.1%}, more than the {MAX_MISSING:.0%} allowed) could not be "
            f"read and were skipped, so the scores are of the rest only "
            f"(e.g. {skipped[0]['error']}); {check}, or pass --allow-missing to accept this",
            file=sys.stderr,
        )
        return 3
    return 1 if skipped else 0
