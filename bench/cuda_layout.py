"""On a CUDA GPU: the encoder's memory layout and BatchNorm folding, per image at a few batch sizes.

    python -m bench.cuda_layout [--batches 1 16 64] [--repeats 15]

Why `Encoder` on CUDA keeps channels-last weights and inputs, folds BatchNorm and takes the
whole batch at once (the CPU path's choices, measured again where cuDNN picks the kernels).
Needs a GPU; prints medians (and minima) of timed forwards after three warm-ups, synchronised.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from captioner.encoders import Encoder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to measure")
        return 1
    encoder = Encoder("efficientnet-lite2").eval().cuda()
    print(f"# torch {torch.__version__}, {torch.cuda.get_device_name()}")
    print("| BatchNorm folded | layout | batch | ms/image (median) | ms/image (min) |")
    print("|---|---|---|---|---|")
    for fold in (True, False):
        encoder.fold_batchnorm = fold
        for layout in (torch.channels_last, torch.contiguous_format):
            encoder.set_memory_format(layout)
            for batch in args.batches:
                x = torch.randn(batch, 3, 448, 448, device="cuda")  # (B, 3, S, S)
                times = []
                with torch.no_grad():
                    for _ in range(3):
                        encoder(x)
                    for _ in range(args.repeats):
                        torch.cuda.synchronize()
                        start = time.perf_counter()
                        encoder(x)
                        torch.cuda.synchronize()
                        times.append((time.perf_counter() - start) * 1e3 / batch)
                name = "channels-last" if layout == torch.channels_last else "contiguous"
                print(
                    f"| {fold} | {name} | {batch} | {statistics.median(times):.3f} | "
                    f"{min(times):.3f} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
