"""Every benchmark in one run, written up as docs/performance.md.

    python -m bench.all [--out docs/performance.md] [--repeats N]

Runs bench.encoder, bench.pipeline, bench.decode, bench.train_step, bench.render and
bench.app_latency one after another in this process (each alternates its contestants and reports
medians; app_latency starts the app as a second process), then the tutorial-sized decoding
comparison in three separate processes, to show how stable its ratios are from one process to
the next. The report holds the machine, the versions, the load average, a summary against the
speed targets, and every benchmark's tables as printed, with paths relative to the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from .common import REPO, _loadavg


class Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy, so a long run shows its progress."""

    def __init__(self, terminal):
        self.terminal, self.copy = terminal, io.StringIO()

    def write(self, text: str) -> int:
        self.terminal.write(text)
        self.terminal.flush()
        return self.copy.write(text)


def relative_paths(text: str) -> str:
    """No machine paths in the report: the repository becomes relative, temp folders `<temp>`."""
    text = text.replace(str(REPO) + "/", "").replace(str(REPO), ".")
    return re.sub(r"/tmp/[\w./-]+", "<temp>", text)


def machine() -> list[list[str]]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f"{kb / 2**20:.0f} GiB"
    versions = []
    for name in ["torch", "numpy", "PIL", "gradio", "onnxruntime", "openvino"]:
        try:
            versions.append(f"{name} {importlib.import_module(name).__version__}")
        except ImportError:
            versions.append(f"{name} not installed")
    import torch

    return [
        ["CPU", f"{cpu}, {os.cpu_count()} cores"],
        ["memory", memory],
        ["system", f"{platform.system()} {platform.release()}, Python {platform.python_version()}"],
        ["versions", ", ".join(versions)],
        ["PyTorch threads", str(torch.get_num_threads())],
    ]


def separate_processes(n: int, repeats: int) -> list[dict]:
    """The tutorial-sized beam-3 comparison in `n` fresh processes: (ours, tutorial) ms/image."""
    code = (
        "import json; from bench.decode import main; r = {}; "
        f"main(['--sizes', 'tutorial', '--beams', '3', '--no-thread-sweep', '--repeats', "
        f"'{repeats}'], r); print('RESULT', json.dumps({{str(k[2]): v for k, v in r.items()}}))"
    )
    runs = []
    for i in range(n):
        print(f"# separate process {i + 1} of {n}", flush=True)
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
        runs.append(json.loads(out.split("RESULT", 1)[1]))
    return runs


def target(name: str, before: str, now: str, goal: str, met: bool) -> list[str]:
    return [name, before, now, goal, "met" if met else "**missed**"]


def summary(r: dict, runs: list[dict]) -> list[list[str]]:
    rows = []
    b, a = r["encoder"]["encoder ms/image batch 1"]
    rows.append(
        target(
            "encoder forward, 1 image (ms)", f"{b:.1f}", f"{a:.1f}", ">= 1.3x faster", b / a >= 1.3
        )
    )
    one_b, one_n = r["pipeline"]["one photo ms"]
    list_b, list_n = r["pipeline"]["list ms/photo"]
    rows.append(
        target(
            "16 photos, per photo / one photo alone",
            f"{list_b / one_b:.2f}x",
            f"{list_n / one_n:.2f}x",
            "<= 0.8x",
            list_n / one_n <= 0.8,
        )
    )
    rows.append(
        target(
            "one photo, JPEG to Caption, beam 3 (ms)",
            f"{one_b:.0f}",
            f"{one_n:.0f}",
            "<= 0.8x before",
            one_n / one_b <= 0.8,
        )
    )
    cb, cn = r["pipeline"]["feature cache images/s"]
    rows.append(
        target("feature cache (images/s)", f"{cb:.1f}", f"{cn:.1f}", ">= 1.5x", cn / cb >= 1.5)
    )
    same, total = r["pipeline"]["identical captions"]
    rows.append(
        target("captions identical to before", "", f"{same} of {total}", "all", same == total)
    )
    decode = r["decode"]
    o, s = decode[("tutorial", 3, 1)]
    rows.append(
        target(
            "tutorial sizes: beam 3, 1 image, ours / tutorial",
            "",
            f"{o / s:.3f}x",
            "<= 0.25x",
            o / s <= 0.25,
        )
    )
    n = max(k[2] for k in decode if k[0] == "tutorial")
    o, s = decode[("tutorial", 3, n)]
    rows.append(
        target(
            f"tutorial sizes: beam 3, {n} images, ours / tutorial",
            "",
            f"{o / s:.3f}x",
            "<= 0.08x",
            o / s <= 0.08,
        )
    )
    for key, goal in (("1", 0.25), (str(n), 0.08)):
        ratios = [run[key][0] / run[key][1] for run in runs]
        spread = max(ratios) / min(ratios) - 1
        rows.append(target(
            f"... in 3 separate processes, {key} image(s)", "",
            ", ".join(f"{x:.3f}x" for x in ratios) + f" (spread {spread:.0%})",
            f"<= {goal}x, within 20%", max(ratios) <= goal and spread <= 0.2,
        ))  # fmt: skip
    ratio = r["train_step"]["tutorial"]
    rows.append(
        target(
            "tutorial sizes: training captions/s, ours / tutorial",
            "",
            f"{ratio:.2f}x",
            ">= 4x",
            ratio >= 4,
        )
    )
    enc = r["encoder"]
    speeds = {
        name: enc["PyTorch (now) ms/image batch 1"] / enc[f"{name} ms/image batch 1"]
        for name in ("ONNX Runtime", "OpenVINO")
        if f"{name} ms/image batch 1" in enc
    }
    best = max(speeds, key=speeds.get, default=None)
    for name, speed in speeds.items():
        verdict = "adopted, optional" if name == best and speed >= 1.3 else "not adopted"
        if speed >= 1.3 and name != best:
            verdict += f" ({best} is faster)"
        rows.append(
            [
                f"{name} encoder, 1 image, speed vs PyTorch",
                "",
                f"{speed:.2f}x",
                "adopt if >= 1.3x",
                verdict,
            ]
        )
    return rows  # fmt: skip


def fence_comments(text: str) -> str:
    """The benchmarks' `# ...` lines (settings, load average) as text blocks, not headings."""
    out, block = [], []
    for line in text.splitlines():
        if line.startswith("# "):
            block.append(line)
            continue
        if block:
            out += ["```text", *block, "```"]
            block = []
        out.append(line)
    if block:
        out += ["```text", *block, "```"]
    return "\n".join(out)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "docs" / "performance.md"))
    p.add_argument(
        "--repeats", type=int, default=None, help="rounds per comparison (default: each bench's)"
    )
    p.add_argument("--skip", nargs="*", default=[], help="benches to leave out, e.g. app_latency")  # fmt: skip
    args = p.parse_args(argv)
    started = time.time()
    load_before = _loadavg()
    repeats = [] if args.repeats is None else ["--repeats", str(args.repeats)]
    plan = [
        ("encoder", "Encoder: layout, batch, other runtimes, the roof", []),
        ("pipeline", "Whole calls: one photo, a list, the feature cache", []),
        ("decode", "Decoding: ours against the tutorial's code", ["--no-thread-sweep"]),
        ("train_step", "Training step: ours against the tutorial's", []),
        ("attention_grad", "The attention score in training: blocked against autograd", []),
        ("render", "Attention pictures and the upload-to-frames path", ["--no-thread-sweep"]),
        ("app_latency", "The running app", []),
    ]
    results: dict = {}
    sections = []
    for name, title, extra in plan:
        if name in args.skip:
            continue
        module = importlib.import_module(f"bench.{name}")
        tee = Tee(sys.stdout)
        results[name] = {}
        with contextlib.redirect_stdout(tee):
            print(f"\n## {title}: `python -m bench.{name}`\n", flush=True)
            if "results" in module.main.__code__.co_varnames:
                module.main([*extra, *repeats], results[name])
            else:
                module.main([*extra, *repeats])
        sections.append(fence_comments(tee.copy.getvalue()))
    runs = separate_processes(3, args.repeats or 9)  # medians of 9: steadier across processes
    minutes = (time.time() - started) / 60
    report = [
        "# Performance",
        "",
        "Written by `python -m bench.all` (every benchmark in one run; "
        f"{datetime.date.today().isoformat()}, {minutes:.0f} minutes). Run it again to measure "
        "your own machine. Each comparison alternates its contestants in one process and reports "
        'medians and ranges (min-max); "before" is this code with the settings it had before the '
        "speed work (NCHW encoder on whole batches, the plain fp32 decoder, the attention sum in "
        'one block; see `bench/pipeline.py`), "tutorial" is the tutorial\'s code in '
        "`bench/straightforward.py` with the same weights.",
        "",
        "## Machine",
        "",
        markdown_table(
            ["", ""],
            machine()
            + [
                [
                    "load average (1, 5, 15 min)",
                    f"{load_before} at the start, {_loadavg()} at the end",
                ]
            ],
        ),  # fmt: skip
    ]
    if {"encoder", "pipeline", "decode", "train_step"} <= results.keys():
        report += [
            "",
            "## Summary against the speed targets",
            "",
            markdown_table(["measure", "before", "now", "target", ""], summary(results, runs)),
        ]
    report += [
        "",
        "## What made the difference",
        "",
        "- The decoder's per-step matrices packed as fp16 for FBGEMM (`captioner/packed.py`): at "
        "a few rows per product MKL's fp32 GEMM runs far below this CPU's speed; the packed fp16 "
        "kernel reads half the bytes. Exact for our checkpoints, whose weights are fp16.",
        "- The attention sum (images x beams x 196 x A) computed a few images at a time while "
        "decoding, so it stays in cache (`SoftAttention.scores`).",
        "- The encoder in channels-last layout, in chunks of `cpu_batch` images (larger batches "
        "are slower per image on two cores), with each BatchNorm folded into the convolution "
        "before it for inference (`encoders.fold_batchnorm`); in that copy the convolutions with "
        "symmetric padding (every stride-1 one) pad as they read instead of after a zero-filled "
        "padded copy of their input, and ReLU6 clamps in place (those copies were ~18% of a batch-1 "
        "forward pass).",
        "- Training (teacher forcing, `Decoder.forward`): what does not depend on the previous "
        "step, the words' share of the LSTM gates and the output layer (and the deep output), "
        "is one matrix product over all the batch's words instead of one small product per "
        "step, and the words stay packed until the end (no per-step copies into (B, T, V)); the "
        "attention score is one autograd function, `attention.BlockedScores`, that computes the "
        "sum a few images at a time in both passes, recomputing it in the backward pass instead "
        "of keeping the 25 MB sum and writing its gradient whole; training batches come "
        "longest caption first, so the decoder need not reorder their features.",
        "- The feature cache in streams: each of two threads reads, resizes and encodes its own "
        "images with one PyTorch thread, instead of one stream of two threads "
        "(`data.features.cache_features`).",
        "- Optional: `--encoder-runtime onnxruntime` runs the same encoder in ONNX Runtime "
        "(`captioner/onnx_encoder.py`).",
        "- Earlier: glibc malloc tuning (`captioner.tune_malloc`), the encoder projection computed "
        "once, features shared by the beams (`torch.bmm`), many images in one beam search, teacher "
        "forcing that skips padding, small-blur upsampling and quantised GIF frames.",
        "- Measured and not used: `torch.compile` and bf16 autocast (an earlier prototype: no gain, "
        "and 4-30x slower); TorchScript freezing of the encoder (about 1.1x at batch 1, a "
        "deprecated path); attention blocks while training as slices (slower: autograd keeps "
        "every block); an earlier, slower version of `BlockedScores` (37.6 against 32.1 ms per "
        "step at batch 64, 1 thread; the adopted one writes each block's gradient in place and "
        "was faster than autograd: see `bench.attention_grad` below); `torch.compile` of the attention alone (67 s to compile, "
        "22.6 -> 18.9 ms); Adam's fused CPU kernel (`fused=True`: no gain measured in a step of "
        "64 captions); transparent huge pages for PyTorch's tensors (`THP_MEM_ALLOC_ENABLE=1`: "
        "no gain in the training step); other block sizes for the training attention (0.5 to "
        "16 MiB: none steadily better than 2 MiB).",
        "",
        "## Separate processes",
        "",
        "The tutorial-sized beam-3 comparison run in three fresh processes (ms per image):",
        "",
        markdown_table(
            ["process", "1 image: ours", "tutorial", "ratio", "batch: ours", "tutorial", "ratio"],
            [
                [str(i + 1)]
                + [
                    x
                    for key in sorted(run, key=int)
                    for x in (
                        f"{run[key][0]:.1f}",
                        f"{run[key][1]:.1f}",
                        f"{run[key][0] / run[key][1]:.3f}x",
                    )
                ]
                for i, run in enumerate(runs)
            ],
        ),  # fmt: skip
        "",
        *sections,
    ]
    text = relative_paths("\n".join(report).rstrip() + "\n")
    Path(args.out).write_text(text)
    print(f"\nwrote {relative_paths(str(Path(args.out).resolve()))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
