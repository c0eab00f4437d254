"""Whole calls before and after the speed work: one photo to its `Caption`, a list of photos, the
feature cache.

    python -m bench.pipeline [--checkpoint DIR] [--repeats 7] [--images 16]

"before" is the same model with the settings the code had before the speed work (see
`before_speed_work`): NCHW encoder on the whole batch with its BatchNorm layers, the plain fp32
decoder, the attention sum in one block, and for the feature cache one stream that reads then
encodes. "now" is `Captioner` as it is. Both load the same weights; their captions on the
benchmark photos must be identical. When ONNX Runtime is installed, "now, onnxruntime" is `Captioner`
with `encoder_runtime="onnxruntime"` (the optional encoder runtime) beside them.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import torch
from PIL import Image

from captioner import Captioner, EncoderRuntimeError
from captioner.data.features import cache_features
from captioner.data.karpathy import load_karpathy

from .common import (
    alternate,
    astronaut_jpeg,
    base_parser,
    fmt,
    load_model,
    median_ms,
    photos,
    print_table,
    setup,
    spread,
)
from .encoder import before_speed_work as encoder_before


def before_speed_work(model: Captioner) -> Captioner:
    """`model` with the settings of the code before the speed work, sharing no state with it."""
    before = copy.copy(model)
    before.encoder = encoder_before(model.encoder.name)
    before.encoder.load_state_dict(model.encoder.state_dict())
    before.decoder = copy.deepcopy(model.decoder)
    before.decoder.attention.CPU_BLOCK = 10**15  # the whole (B, K, P, A) sum at once
    before._packed = lambda decoder: decoder  # beam search on the plain fp32 decoder
    return before


def photo_folder(folder: Path, n: int) -> Path:
    """`n` JPEG photos at 640x480 and a Karpathy-format captions.json, all in split "test"."""
    entries = []
    for i, im in enumerate(photos(n)):
        name = f"photo{i:03d}.jpg"
        im.resize((640, 480), Image.BILINEAR).save(folder / name, quality=90)
        entries.append(
            {"filename": name, "split": "test", "sentences": [{"tokens": ["a", "photo"]}]}
        )
    (folder / "captions.json").write_text(json.dumps({"images": entries}))
    return folder / "captions.json"


def main(argv: list[str] | None = None, results: dict | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], repeats=7)
    p.add_argument("--images", type=int, default=16, help="photos in the list and the cache")
    args = p.parse_args(argv)
    setup(args)
    results = {} if results is None else results
    now, what = load_model(args.checkpoint)
    before = before_speed_work(now)
    ort = copy.copy(now)
    ort.encoder = copy.deepcopy(now.encoder)
    try:
        ort.encoder.set_runtime("onnxruntime")
    except EncoderRuntimeError as e:
        print(f"# {e}", flush=True)
        ort = None
    upload = astronaut_jpeg(448)
    pictures = photos(args.images)
    print(f"# model: {what}; {args.images} photos", flush=True)

    # The same captions: the speed work must not change what a user reads.
    a, b = now.caption(pictures), before.caption(pictures)
    same = sum(x.words == y.words for x, y in zip(a, b, strict=True))
    score_diff = max(abs(x.score - y.score) for x, y in zip(a, b, strict=True))
    results["identical captions"] = (same, len(a))

    n = len(pictures)
    contestants = {"before": before, "now": now, **({"ort": ort} if ort else {})}
    t = alternate(
        {f"{k}, one photo": (lambda m=m: m.caption(upload)) for k, m in contestants.items()},
        args.repeats,
        clock=args.clock,
    )
    t.update(
        alternate(
            {f"{k}, list": (lambda m=m: m.caption(pictures)) for k, m in contestants.items()},
            max(3, args.repeats // 2),
            warmup=0,
            clock=args.clock,
        )
    )
    one_b, one_n = median_ms(t["before, one photo"]), median_ms(t["now, one photo"])
    list_b, list_n = median_ms(t["before, list"]) / n, median_ms(t["now, list"]) / n
    results["one photo ms"] = (one_b, one_n)
    results["list ms/photo"] = (list_b, list_n)
    rows = [
        ["one photo (JPEG bytes -> Caption), beam 3", fmt(one_b), fmt(one_n), spread(t["before, one photo"]), spread(t["now, one photo"]), f"{one_n / one_b:.2f}x"],
        [f"a list of {n} photos, per photo", fmt(list_b), fmt(list_n), spread([v / n for v in t["before, list"]]), spread([v / n for v in t["now, list"]]), f"{list_n / list_b:.2f}x"],
        [f"a list of {n}, per photo / one photo alone", f"{list_b / one_b:.2f}x", f"{list_n / one_n:.2f}x", "", "", ""],
    ]  # fmt: skip

    t1 = t  # the whole calls' samples; `t` is the feature cache's below
    with tempfile.TemporaryDirectory() as tmp:
        records = load_karpathy(photo_folder(Path(tmp), n))
        runs = dict.fromkeys(contestants, 0)

        def cache(which: str, encoder) -> None:
            runs[which] += 1  # a new cache folder each time: nothing is reused
            # before: one stream, the whole batch at once (the loop as it was); now: the default
            streams = 1 if which == "before" else None
            folder = Path(tmp) / f"{which}{runs[which]}"
            cache_features(encoder, records, folder, "test", streams=streams)

        t = alternate(
            {k: (lambda k=k, m=m: cache(k, m.encoder)) for k, m in contestants.items()},
            max(3, args.repeats // 2),
            clock=args.clock,
        )
    rate = {k: n / (median_ms(v) / 1000) for k, v in t.items()}  # images/s
    cb, cn = rate["before"], rate["now"]
    results["feature cache images/s"] = (cb, cn)
    rows.append(
        [f"feature cache, {n} JPEGs 640x480 (images/s)", fmt(cb), fmt(cn), "", "", f"{cn / cb:.2f}x speed"]
    )  # fmt: skip
    print_table(
        ["call", "before ms", "now ms", "before range", "now range", "now / before"],
        rows,
        title=f"Whole calls, before and after the speed work (threads {torch.get_num_threads()})",
    )
    if ort:
        o1, ol = median_ms(t1["ort, one photo"]), median_ms(t1["ort, list"]) / n
        results["onnxruntime"] = {"one photo ms": o1, "list ms/photo": ol, "cache": rate["ort"]}
        print_table(
            ["call", "now ms", "now, onnxruntime encoder ms", "onnxruntime / now"],
            [
                ["one photo (JPEG bytes -> Caption), beam 3", fmt(one_n), fmt(o1), f"{o1 / one_n:.2f}x"],
                [f"a list of {n} photos, per photo", fmt(list_n), fmt(ol), f"{ol / list_n:.2f}x"],
                ["feature cache (images/s)", fmt(cn), fmt(rate["ort"]), f"{rate['ort'] / cn:.2f}x speed"],
            ],
            title="The optional ONNX Runtime encoder (--encoder-runtime onnxruntime)",
        )  # fmt: skip
    print(
        f"\ncaptions identical (now vs before) on the {n} benchmark photos: {same} of {n}; "
        f"largest score difference {score_diff:.1e}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
