"""Encoder forward: the layout and batching before the speed work vs now, other runtimes, the roof.

    python -m bench.encoder [--repeats 7] [--batches 1 2 4 16] [--no-runtimes]

"before": weights and inputs in PyTorch's default NCHW layout, the whole batch in one pass (the
encoder as it was). "now": `Encoder` as it is: channels-last, `cpu_batch` images per pass,
BatchNorm folded into the convolutions.
ONNX Runtime and OpenVINO run the same network when they are installed (`pip install onnx
onnxruntime openvino`); their features must agree with PyTorch's within 1e-3 (relative to the
largest value). The roof: the encoder's multiply-adds per image, the GFLOP/s it achieves, and
what one large matrix product achieves on the same threads.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from captioner.encoders import Encoder

from .common import alternate, base_parser, fmt, median_ms, photos, print_table, setup, spread


def before_speed_work(name: str = "efficientnet-lite2") -> Encoder:
    """The encoder as it ran before: NCHW weights and inputs, every image of a batch at once,
    BatchNorm layers as they are."""
    encoder = Encoder(name).eval()
    encoder.set_memory_format(torch.contiguous_format)
    encoder.cpu_batch = 10**6
    encoder.fold_batchnorm = False
    return encoder


def encoder_flops(encoder: Encoder, side: int) -> float:
    """Floating-point operations (2 per multiply-add) of one image's forward pass."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        encoder(torch.zeros(1, 3, side, side))
    return float(counter.get_total_flops())


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n x n fp32 matrix product: what this machine's cores can do at best."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


class OnnxRuntimeEncoder:
    """The encoder's network exported to ONNX and run by ONNX Runtime (optional)."""

    def __init__(self, encoder: Encoder, side: int, folder: Path):
        import onnxruntime as ort

        path = folder / "encoder.onnx"
        plain = before_speed_work(encoder.name)
        torch.onnx.export(
            plain.features,
            torch.zeros(1, 3, side, side),
            str(path),
            input_names=["image"],
            output_names=["features"],
            dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
            dynamo=False,
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (fmap,) = self.session.run(None, {"image": x.numpy()})  # (B, C, 14, 14)
        return torch.from_numpy(fmap).flatten(2).transpose(1, 2)  # (B, 196, C)


class OpenVinoEncoder:
    """The encoder's network converted by OpenVINO and compiled for the CPU (optional)."""

    def __init__(self, encoder: Encoder, side: int):
        import openvino as ov

        plain = before_speed_work(encoder.name)
        model = ov.convert_model(plain.features, example_input=torch.zeros(1, 3, side, side))
        core = ov.Core()
        self.compiled = core.compile_model(
            model, "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads()}
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.compiled(x.numpy())[0]  # (B, C, 14, 14)
        return torch.from_numpy(fmap).flatten(2).transpose(1, 2)  # (B, 196, C)


def main(argv: list[str] | None = None, results: dict | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], repeats=7)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 16])
    p.add_argument("--no-runtimes", action="store_true", help="skip ONNX Runtime and OpenVINO")
    args = p.parse_args(argv)
    setup(args)
    results = {} if results is None else results
    now_enc, old_enc = Encoder("efficientnet-lite2").eval(), before_speed_work()
    side = now_enc.spec.input_size
    x_all = now_enc.preprocess(photos(max(args.batches)))  # (N, 3, S, S)
    print(f"# efficientnet-lite2 at {side}x{side}; cpu_batch {now_enc.cpu_batch}", flush=True)

    rows = []
    with torch.no_grad():
        worst = float((now_enc(x_all) - old_enc(x_all)).abs().max() / old_enc(x_all).abs().max())
        for n in args.batches:
            x = x_all[:n]
            t = alternate(
                {"before": lambda x=x: old_enc(x), "now": lambda x=x: now_enc(x)},
                args.repeats if n < 8 else max(3, args.repeats // 2),
                clock=args.clock,
            )
            b, a = median_ms(t["before"]) / n, median_ms(t["now"]) / n
            results[f"encoder ms/image batch {n}"] = (b, a)
            rows.append(
                [
                    n,
                    fmt(b),
                    fmt(a),
                    spread([v / n for v in t["before"]]),
                    spread([v / n for v in t["now"]]),
                    f"{b / a:.2f}x",
                ]
            )
    print_table(
        ["images", "before ms/image", "now ms/image", "before range", "now range", "speed-up"],
        rows,
        title=f"Encoder forward (threads {torch.get_num_threads()})",
    )
    print(f"\nlargest feature difference, now vs before: {worst:.1e} of the largest value")

    flops = encoder_flops(now_enc, side)
    peak = matmul_gflops()
    one = results["encoder ms/image batch 1"][1]
    best = min(v[1] for v in (results[f"encoder ms/image batch {n}"] for n in args.batches))
    roof = [
        ["encoder, 1 image", fmt(flops / 1e9, 2), fmt(flops / one / 1e6), f"{flops / one / 1e6 / peak:.0%}"],
        ["encoder, best batch", fmt(flops / 1e9, 2), fmt(flops / best / 1e6), f"{flops / best / 1e6 / peak:.0%}"],
        ["2048^3 matrix product", "17.18", fmt(peak), "100%"],
    ]  # fmt: skip
    print_table(
        ["work", "GFLOP per image", "achieved GFLOP/s", "of the matrix product's"],
        roof,
        title="The roof: achieved arithmetic rate against a large matrix product's",
    )
    results["encoder GFLOP/s"] = flops / one / 1e6
    results["matmul GFLOP/s"] = peak

    if args.no_runtimes:
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        runtimes = {"PyTorch (now)": now_enc}
        for name, make in [
            ("ONNX Runtime", lambda: OnnxRuntimeEncoder(now_enc, side, Path(tmp))),
            ("OpenVINO", lambda: OpenVinoEncoder(now_enc, side)),
        ]:
            try:
                runtimes[name] = make()
            except ImportError as e:
                print(f"# {name}: not installed ({e.name}); skipped", flush=True)
        for n in (1, 2):
            x = x_all[:n]
            ref = now_enc(x)
            t = alternate(
                {name: (lambda f=f, x=x: f(x)) for name, f in runtimes.items()},
                args.repeats,
                clock=args.clock,
            )
            base = median_ms(t["PyTorch (now)"])
            for name, f in runtimes.items():
                diff = float((f(x) - ref).abs().max() / ref.abs().max())
                m = median_ms(t[name])
                results[f"{name} ms/image batch {n}"] = m / n
                rows.append(
                    [name, n, fmt(m / n), spread([v / n for v in t[name]]), f"{base / m:.2f}x", f"{diff:.1e}"]
                )  # fmt: skip
    print_table(
        ["runtime", "images", "ms/image", "range", "speed vs PyTorch", "max difference"],
        rows,
        title="Other runtimes for the same encoder (adopted only if >= 1.3x at the same features)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
