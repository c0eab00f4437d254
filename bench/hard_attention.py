"""Training cost of hard attention against soft: the same step, the same weights and batch.

    python -m bench.hard_attention [--checkpoint DIR] [--batch-size 64] [--repeats 9]

Times one training step (`train_one_epoch` on one cached-style batch: forward, loss, backward,
Adam) of a soft-attention model and of the same decoder with hard attention, alternating. A hard
model's batches are of two kinds (section 4.1: half sample a location per word, half use the
expected context), so both are timed and their mean is the hard model's cost per caption.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from captioner.hard_attention import HardAttentionObjective
from captioner.train import TrainingModule, train_one_epoch

from .common import alternate, base_parser, fmt, load_model, median_ms, print_table, setup, spread
from .train_step import OneBatch, make_batch


def step_of(model, attention: str, sample_prob: float, args, features, captions):
    """A function running one training step of a copy of `model` with `attention`."""
    copied = copy.copy(model)
    copied.decoder = copy.deepcopy(model.decoder)
    copied.decoder.config = dataclasses.replace(copied.decoder.config, attention=attention)
    hard = HardAttentionObjective(sample_prob=sample_prob) if attention == "hard" else None
    module = TrainingModule(copied, args.alpha_c, hard=hard)
    optimizer = torch.optim.Adam(copied.decoder.parameters(), lr=4e-4)
    batches = OneBatch(captions)

    def step():
        train_one_epoch(
            module, optimizer, batches, lambda rows, device: features, 0, "cpu", 5.0, rank=1
        )

    return step


def main(argv: list[str] | None = None, results: dict | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], repeats=9)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--min-words", type=int, default=8)
    p.add_argument("--max-words", type=int, default=14)
    p.add_argument("--alpha-c", type=float, default=1.0)
    args = p.parse_args(argv)
    setup(args)
    model, what = load_model(args.checkpoint)
    c = model.decoder.config
    features, captions = make_batch(
        args.batch_size, c.vocab_size, c.encoder_dim, args.min_words, args.max_words
    )
    contestants = {
        "soft": step_of(model, "soft", 0.0, args, features, captions),
        "hard, sampled batch": step_of(model, "hard", 1.0, args, features, captions),
        "hard, expected-context batch": step_of(model, "hard", 0.0, args, features, captions),
    }
    t = alternate(contestants, args.repeats, clock=args.clock)
    soft = median_ms(t["soft"])
    hard = (median_ms(t["hard, sampled batch"]) + median_ms(t["hard, expected-context batch"])) / 2
    b = args.batch_size
    rows = [
        [name, fmt(median_ms(s), 0), spread(s), fmt(b / (median_ms(s) / 1000))]
        for name, s in t.items()
    ]
    rows.append(["hard, mean of the two (p = 0.5)", fmt(hard, 0), "", fmt(b / (hard / 1000))])
    print_table(
        ["training step", "ms/step", "range", "captions/s"],
        rows,
        title=f"Training step, batch {b}, {what}; median of {args.repeats}",
    )
    print(f"\ntraining cost per caption, hard / soft: {hard / soft:.2f}x")
    if results is not None:
        results["hard / soft"] = hard / soft
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
