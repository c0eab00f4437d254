"""Shared helpers for the benchmarks: the model to time, fair timing, and tables.

Timings on a small shared CPU are noisy, so every comparison runs its contestants in one
process, alternating (and rotating the order each round), and reports medians.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from captioner import Captioner, Vocabulary, default_checkpoint_dir, tune_malloc

REPO = Path(__file__).resolve().parent.parent


def base_parser(description: str, repeats: int) -> argparse.ArgumentParser:
    """The options every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint folder (default: checkpoints/default if it exists, else "
        "'random': random decoder weights, embed 256, attention 256, decoder 512)",
    )
    p.add_argument("--repeats", type=int, default=repeats, help="timed rounds per contestant")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: PyTorch's, 2 on this machine)",
    )
    p.add_argument(
        "--no-malloc-tune",
        action="store_true",
        help="leave glibc malloc at its defaults (to measure what tune_malloc buys)",
    )
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time (default), or this process's CPU time: steadier while other "
        "processes load the cores, but blind to waiting (use with --threads 1)",
    )
    return p


def setup(args: argparse.Namespace) -> None:
    """Process-wide settings, as the app and CLI make them, before any tensor exists."""
    tuned = False if args.no_malloc_tune else tune_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"# torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"malloc tuned: {tuned}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"clock: {args.clock}; load average {_loadavg()}",
        flush=True,
    )


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def random_vocab(n_words: int = 400) -> Vocabulary:
    """A made-up vocabulary the size of the default model's."""
    syllables = ["ba", "ko", "ri", "mu", "te", "sa", "lo", "ne", "pi", "du", "fa", "gi"]
    words = {
        syllables[i % 12] + syllables[(i // 12) % 12] + syllables[(i // 144) % 12]
        for i in range(n_words)
    }
    return Vocabulary.build([sorted(words)])


def load_model(checkpoint: str | None, seed: int = 0) -> tuple[Captioner, str]:
    """The model to benchmark and a word on what it is.

    Without a trained model the decoder has random weights but the default model's sizes, so
    timings hold; captions then run to max_len (a random model rarely says `<end>`).
    """
    path = Path(checkpoint) if checkpoint and checkpoint != "random" else default_checkpoint_dir()
    if checkpoint != "random" and (checkpoint or (path / "config.json").is_file()):
        model = Captioner.load(path)
        return model, f"checkpoint {path}"
    torch.manual_seed(seed)
    model = Captioner.create(
        "efficientnet-lite2", random_vocab(), embed_dim=256, attention_dim=256, decoder_dim=512
    )
    if checkpoint != "random":
        print(f"# note: no model at {path}; using random decoder weights instead", flush=True)
    return model, (
        f"random decoder weights (vocab {len(model.vocab)}, embed 256, attention 256, decoder 512)"
    )


def tutorial_sized_model(seed: int = 0) -> tuple[Captioner, str]:
    """Random decoder weights at the tutorial's sizes: embedding, attention and LSTM 512,
    vocabulary 1000, no deep output or coverage, on EfficientNet-Lite2's 1280 channels.

    The weights are rounded to fp16, as every saved checkpoint holds them, so the model decodes
    as a loaded one does (packed; see `captioner.packed`); the tutorial code gets the same values.
    """
    torch.manual_seed(seed)
    model = Captioner.create(
        "efficientnet-lite2",
        random_vocab(996),  # + 4 special words = 1000
        embed_dim=512,
        attention_dim=512,
        decoder_dim=512,
        deep_output=False,
    )
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.copy_(p.half().float())
    return model, "tutorial sizes (512/512/512, vocabulary 1000, random fp16 weights)"


def add_sizes_argument(p: argparse.ArgumentParser) -> None:
    """--sizes: which models a comparison with the tutorial's code runs on."""
    p.add_argument(
        "--sizes",
        choices=["model", "tutorial", "both"],
        default="both",
        help="the checkpoint's model, random weights at the tutorial's sizes, or both (default)",
    )


def models_to_compare(args: argparse.Namespace) -> list[tuple[str, Captioner, str]]:
    """(key, model, what it is) for each model `--sizes` names: "model" and/or "tutorial"."""
    models = []
    if args.sizes in ("model", "both"):
        models.append(("model", *load_model(args.checkpoint)))
    if args.sizes in ("tutorial", "both"):
        models.append(("tutorial", *tutorial_sized_model()))
    return models


def photos(n: int, side: int = 448) -> list[Image.Image]:
    """`n` RGB photos from scikit-image's CC0 set (mirrored/cropped copies beyond the first few)."""
    from skimage import data

    names = [
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "motorcycle_left",
        "camera",
        "coins",
        "cat",
        "immunohistochemistry",
        "moon",
        "brick",
        "grass",
        "gravel",
        "hubble_deep_field",
        "colorwheel",
        "retina",
    ]
    base = []
    for name in names:
        try:
            arr = getattr(data, name)()
        except Exception:  # noqa: BLE001 - a data file missing from this install: skip it
            continue
        im = Image.fromarray(arr).convert("RGB")
        base.append(im.resize((side, side), Image.BILINEAR))
    out = []
    i = 0
    while len(out) < n:
        im = base[i % len(base)]
        variant = i // len(base)
        if variant % 2 == 1:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        if variant >= 2:
            im = im.crop((side // 8, side // 8, side, side)).resize((side, side), Image.BILINEAR)
        out.append(im)
        i += 1
    return out


def astronaut_jpeg(side: int = 448, quality: int = 90) -> bytes:
    """The upload every end-to-end benchmark uses: scikit-image's astronaut at side x side, JPEG."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((side, side), Image.BILINEAR).save(
        buf, "JPEG", quality=quality
    )
    return buf.getvalue()


def alternate(
    contestants: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, clock: str = "wall"
) -> dict[str, list[float]]:
    """Seconds per call of each contestant, run in turn (order rotated every round).

    `clock="cpu"` counts this process's CPU time instead of wall time.
    """
    names = list(contestants)
    for _ in range(warmup):
        for name in names:
            contestants[name]()
    now = time.process_time if clock == "cpu" else time.perf_counter
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = now()
            contestants[name]()
            times[name].append(now() - start)
    return times


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000.0


def spread(samples: Sequence[float]) -> str:
    """min-max of the samples in ms, to show how noisy a median is."""
    return f"{min(samples) * 1000:.0f}-{max(samples) * 1000:.0f}"


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None
) -> None:
    """A Markdown table, ready to paste into the README."""
    if title:
        print(f"\n{title}\n")
    cells = [[str(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    sys.stdout.flush()


def fmt(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def rss_mb(pid: int | str = "self") -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB, from /proc (Linux)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024.0
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def seed_everything(seed: int = 0) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
