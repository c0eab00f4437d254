"""What naming objects through the classifier costs: one photo, load to `Caption`, beam 3.

    python -m bench.slots [--repeats 15]

The default model (object slots named by the encoder's ImageNet head) against the stamp model it
was trained from (the same encoder and decoder sizes, no slots), alternating in one process on
the demo's photos; medians and min-max per photo and in total.
"""

from __future__ import annotations

import statistics

from captioner import Captioner, load_image

from .common import REPO, alternate, base_parser, median_ms, print_table, setup, spread

PHOTOS = ["cat.jpg", "coffee.jpg", "motorcycle.jpg", "rocket.jpg", "astronaut.jpg"]


def main() -> None:
    p = base_parser(__doc__.split("\n\n")[0], repeats=15)
    p.add_argument("--baseline", default=str(REPO / "checkpoints" / "stamps"))
    args = p.parse_args()
    setup(args)
    slots = Captioner.load(args.checkpoint or REPO / "checkpoints" / "default")
    plain = Captioner.load(args.baseline)
    rows, ratios = [], []
    for name in PHOTOS:
        data = (REPO / "demo" / "examples" / name).read_bytes()
        times = alternate(
            {
                "slots": lambda: slots.caption(load_image(data)),
                "plain": lambda: plain.caption(load_image(data)),
            },
            args.repeats,
            clock=args.clock,
        )
        ratio = median_ms(times["slots"]) / median_ms(times["plain"])
        ratios.append(ratio)
        rows.append(
            [
                name,
                slots.caption(load_image(data)).text,
                f"{median_ms(times['slots']):.1f} ({spread(times['slots'])})",
                f"{median_ms(times['plain']):.1f} ({spread(times['plain'])})",
                f"{ratio:.3f}",
            ]
        )
    print_table(
        ["photo", "caption (default model)", "default, ms", "stamp model, ms", "ratio"],
        rows,
        title="One photo, load to Caption, beam 3 (medians, min-max)",
    )
    print(f"\nmedian ratio over the photos: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
