"""Attention pictures, and the whole path from an uploaded photo to its caption and every frame.

    python -m bench.render [--checkpoint DIR] [--repeats 5]

Table 1: 12 frames + the GIF at 448 px, ours vs the tutorial's way (pyramid_expand, Pillow's
default GIF save). Table 2: a 448x448 JPEG upload (scikit-image's astronaut) through load ->
encode -> beam 3 -> all frames -> GIF, each stage's median, beside the encoder forward alone.
(What the demo's own event handlers cost is in `bench.app_latency`.)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from captioner import attention_frames, load_image, save_gif, upsample_attention

from . import straightforward as sf
from .common import (
    alternate,
    astronaut_jpeg,
    base_parser,
    fmt,
    load_model,
    median_ms,
    print_table,
    setup,
    spread,
)


def heat_correlation(alphas: np.ndarray, side: int = 448) -> float:
    """Mean Pearson correlation of our smoothed maps with the tutorial's pyramid_expand maps."""
    from skimage.transform import pyramid_expand

    values = []
    for alpha in alphas:
        ours = upsample_attention(alpha, (side, side)).ravel()
        theirs = pyramid_expand(
            alpha.astype(np.float64), upscale=side / alpha.shape[0], sigma=8
        ).ravel()
        values.append(float(np.corrcoef(ours, theirs)[0, 1]))
    return float(np.mean(values))


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], repeats=5)
    p.add_argument("--frames", type=int, default=12, help="words in table 1")
    p.add_argument(
        "--no-thread-sweep", action="store_true", help="skip the 1-vs-default threads table"
    )
    args = p.parse_args(argv)
    setup(args)
    model, what = load_model(args.checkpoint)
    upload = astronaut_jpeg(448)
    out = Path(tempfile.mkdtemp(prefix="bench-render-"))

    # ---- table 1: 12 frames + GIF, from a real caption's attention -------------------------
    photo = load_image(upload)
    caption = model.caption(photo, beam_size=3)
    reps = -(-args.frames // max(1, len(caption.words)))
    words = (caption.words * reps)[: args.frames] or ["word"] * args.frames
    alphas = (
        np.concatenate([caption.alphas] * reps)[: args.frames]
        if caption.words
        else np.full((args.frames, 14, 14), 1 / 196, np.float32)
    )  # (frames, 14, 14)
    ours_frames = attention_frames(photo, words, alphas)
    their_frames = sf.attention_frames(photo, words, alphas)
    t = alternate(
        {
            "ours frames": lambda: attention_frames(photo, words, alphas),
            "ours gif": lambda: save_gif(ours_frames, out / "ours.gif"),
            "tutorial frames": lambda: sf.attention_frames(photo, words, alphas),
            "tutorial gif": lambda: sf.save_gif(their_frames, out / "tutorial.gif"),
        },
        args.repeats,
        clock=args.clock,
    )
    o_total = median_ms([a + b for a, b in zip(t["ours frames"], t["ours gif"])])
    s_total = median_ms([a + b for a, b in zip(t["tutorial frames"], t["tutorial gif"])])
    kb = lambda name: f"{(out / name).stat().st_size / 1024:.0f} KB"  # noqa: E731
    rows = [
        [
            "frames (smooth + colour + label)",
            fmt(median_ms(t["ours frames"])),
            spread(t["ours frames"]),
            fmt(median_ms(t["tutorial frames"])),
            spread(t["tutorial frames"]),
            "",
        ],
        [
            "GIF save",
            fmt(median_ms(t["ours gif"])),
            spread(t["ours gif"]),
            fmt(median_ms(t["tutorial gif"])),
            spread(t["tutorial gif"]),
            f"{kb('ours.gif')} vs {kb('tutorial.gif')}",
        ],
        ["total", fmt(o_total), "", fmt(s_total), "", f"ours {o_total / s_total:.2f}x the time"],
    ]
    print_table(
        ["stage", "ours ms", "ours range", "tutorial ms", "tutorial range", "note"],
        rows,
        title=f"{args.frames} attention frames + GIF at 448x448 (threads {torch.get_num_threads()}, "
        f"median of {args.repeats})",
    )
    print(
        f"\nmean correlation of our smoothed maps with pyramid_expand(upscale=32, sigma=8): "
        f"{heat_correlation(alphas):.3f}"
    )

    # ---- table 2: upload -> caption -> all frames -> GIF ------------------------------------
    x = model.encoder.preprocess([photo])  # (1, 3, 448, 448)
    stages = ["load image", "encode (preprocess + CNN)", "beam 3", "all frames", "GIF"]
    samples: dict[str, list[float]] = {
        s: [] for s in stages + ["total", "encoder forward alone", "decode + pictures"]
    }
    now = time.process_time if args.clock == "cpu" else time.perf_counter

    def timed(name, fn):
        start = now()
        result = fn()
        samples[name].append(now() - start)
        return result

    n_words = 0
    for r in range(args.repeats + 1):
        with torch.no_grad():
            forward = lambda: model.encoder(x)  # noqa: E731
            if r % 2:  # the encoder alone, before or after the pipeline in turn
                timed("encoder forward alone", forward)
            im = timed("load image", lambda: load_image(upload))
            feats = timed("encode (preprocess + CNN)", lambda: model.encode([im]))
            cap = timed("beam 3", lambda: model.decode(feats, beam_size=3))[0]
            frames = timed("all frames", lambda: attention_frames(im, cap.words, cap.alphas))
            if frames:
                timed("GIF", lambda: save_gif(frames, out / "path.gif"))
            else:
                samples["GIF"].append(0.0)
            if not r % 2:
                timed("encoder forward alone", forward)
        n_words = len(cap.words)
        if r == 0:  # warm-up round
            for v in samples.values():
                v.clear()
            continue
        samples["total"].append(sum(samples[s][-1] for s in stages))
        samples["decode + pictures"].append(
            sum(samples[s][-1] for s in ("beam 3", "all frames", "GIF"))
        )
    rows = [[s, fmt(median_ms(v)), spread(v)] for s, v in samples.items()]
    print_table(
        ["stage", "median ms", "range"],
        rows,
        title=f"Upload to caption and all {n_words} frames, 448x448 JPEG ({what}; "
        f"threads {torch.get_num_threads()}, median of {args.repeats})",
    )
    enc, rest = median_ms(samples["encoder forward alone"]), median_ms(samples["decode + pictures"])
    print(f"\ncaption: {cap.text!r}")
    print(f"decode + pictures / encoder forward: {rest / enc:.2f}")

    # ---- threads: the encoder and beam 3 at 1 thread vs the default -------------------------
    if not args.no_thread_sweep:
        default_threads = torch.get_num_threads()
        contestants = {}
        for n in sorted({1, default_threads}):

            def encoder_at(n=n):
                torch.set_num_threads(n)
                with torch.no_grad():
                    model.encoder(x)

            def beam_at(n=n):
                torch.set_num_threads(n)
                model.decode(feats, beam_size=3)

            contestants[f"encoder forward|{n}"] = encoder_at
            contestants[f"beam 3|{n}"] = beam_at
        t = alternate(contestants, args.repeats, clock=args.clock)
        torch.set_num_threads(default_threads)
        rows = [
            [name.split("|")[0], name.split("|")[1], fmt(median_ms(v)), spread(v)]
            for name, v in t.items()
        ]
        print_table(
            ["stage", "torch threads", "median ms", "range"],
            rows,
            title="Threads (one 448x448 image)",
        )

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
