"""The command-line options shared by every command that loads a model or decodes captions
(`caption`, `evaluate`, `evaluate-photos`, `train`), declared once. Values are checked by the
library's own check (`beam.check_decoding_options`) as they are parsed, so a bad one is one
argparse error line and exit status 2."""

from __future__ import annotations

import argparse

from .beam import DecodingError, check_decoding_options
from .decoder import HARD_DECODING
from .onnx_encoder import RUNTIMES


def _checked_int(option: str):
    """An argparse type: a whole number that the library's check accepts for `option`."""

    def parse(text: str) -> int:
        value = int(text)  # ValueError: argparse says "invalid ... value"
        try:
            check_decoding_options(**{option: value})
        except DecodingError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    parse.__name__ = option  # argparse names the type in its "invalid value" message
    return parse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint, --encoder-weights, --encoder-runtime and --hard-decoding: which trained model
    to load, and how."""
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint folder (default: the default model, checkpoints/default)",
    )
    parser.add_argument(
        "--encoder-weights",
        default=None,
        help="local encoder weights for a checkpoint whose encoder was not fine-tuned",
    )
    add_runtime_argument(parser)
    parser.add_argument(
        "--hard-decoding",
        choices=HARD_DECODING,
        default=None,
        help="a hard-attention model's context when captioning: the expected one or the most "
        "likely cell's (argmax) (default: the checkpoint's setting; soft models ignore it)",
    )


def model_kwargs(args: argparse.Namespace) -> dict:
    """The parsed model options as keyword arguments of `Captioner.load`."""
    return {
        "encoder_weights": args.encoder_weights,
        "encoder_runtime": args.encoder_runtime,
        "hard_decoding": args.hard_decoding,
    }


def add_runtime_argument(parser: argparse.ArgumentParser) -> None:
    """--encoder-runtime: PyTorch, or ONNX Runtime (faster on a CPU, optional package)."""
    parser.add_argument(
        "--encoder-runtime",
        choices=RUNTIMES,
        default="torch",
        help="run the encoder with torch (default) or onnxruntime: the same network, about 2x "
        "faster on a CPU (`pip install onnxruntime onnx`)",
    )


def add_decoding_arguments(parser: argparse.ArgumentParser, training: bool = False) -> None:
    """The beam search's options. In training (`training=True`) the beam size is validation's
    (`--val-beam-size`) and `--no-repeat-ngram` is a setting saved with the model."""
    beam_flag = "--val-beam-size" if training else "--beam-size"
    parser.add_argument(
        beam_flag,
        type=_checked_int("beam_size"),
        default=3,
        help="hypotheses the beam search keeps (1: greedy)"
        + (", for the validation captions" if training else ""),
    )
    if not training:
        parser.add_argument(
            "--max-len",
            type=_checked_int("max_len"),
            default=None,
            help="longest caption in words (default: the model's)",
        )
        parser.add_argument(
            "--length-penalty",
            type=float,
            default=0.0,
            help="rank beams by log-prob / length**P (0: plain log-prob)",
        )
    parser.add_argument(
        "--no-repeat-ngram",
        type=_checked_int("no_repeat_ngram"),
        default=None,
        metavar="N",
        help="never repeat N words in a row within a caption; 0: off "
        + (
            "(the model's setting, saved with it and used in validation; default 0, with "
            "--resume the run's own)"
            if training
            else "(default: the checkpoint's setting)"
        ),
    )


def decoding_kwargs(args: argparse.Namespace) -> dict:
    """The parsed decoding options as keyword arguments of `Captioner.caption`/`decode`."""
    return {
        "beam_size": args.beam_size,
        "max_len": args.max_len,
        "length_penalty": args.length_penalty,
        "no_repeat_ngram": args.no_repeat_ngram,
    }
