"""Training throughput from cached features: our `TrainingModule` + Adam vs the tutorial's step.

    python -m bench.train_step [--checkpoint DIR] [--sizes both] [--batch-size 64] [--repeats 9]

Random fp32 features (batch, 196, 1280) and captions of 12-16 words stand in for a cached
batch. Both decoders start from the same weights; with dropout off their first-step losses
must agree. Two models by default: the default checkpoint's sizes, and the tutorial's own
(512/512/512, vocabulary 1000).
"""

from __future__ import annotations

import copy

import torch

from captioner.train import TrainingModule, pad_captions, train_one_epoch

from . import straightforward as sf
from .common import (
    add_sizes_argument,
    alternate,
    base_parser,
    fmt,
    median_ms,
    models_to_compare,
    print_table,
    setup,
    spread,
)


class OneBatch:
    """Stands in for `CaptionBatches`: every epoch is the same single batch."""

    def __init__(self, captions: torch.Tensor):
        self.captions = captions

    def num_batches(self, world: int = 1) -> int:
        return 1

    def epoch(self, epoch: int, rank: int = 0, world: int = 1, start_step: int = 0):
        yield list(range(self.captions.size(0))), self.captions, None  # no attention targets


def make_batch(
    batch_size: int,
    vocab_size: int,
    encoder_dim: int,
    min_words: int,
    max_words: int,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random cached-style features and `<start> w.. <end> <pad>..` captions, longest first
    (as `CaptionBatches` yields a batch; the tutorial's step sorts its batch itself)."""
    g = torch.Generator().manual_seed(seed)
    features = torch.rand(batch_size, 196, encoder_dim, generator=g) * 2.0  # (batch, 196, C)
    lengths = torch.randint(min_words, max_words + 1, (batch_size,), generator=g).tolist()
    lengths.sort(reverse=True)
    captions = [
        [1] + torch.randint(4, vocab_size, (n,), generator=g).tolist() + [2] for n in lengths
    ]
    return features, pad_captions(captions, pad=0)  # (batch, T+1)


def first_step_check(model, features, captions, alpha_c: float) -> tuple[float, float, float]:
    """(our loss, tutorial loss, max |grad difference|) on the same weights, dropout off."""
    decoder = copy.deepcopy(model.decoder).eval()
    tutorial = sf.DecoderWithAttention.from_decoder(decoder).eval()
    module = TrainingModule(model, alpha_c)
    module.decoder = decoder
    ours = module(features, captions)
    ours.backward()
    theirs = sf.tutorial_loss(tutorial, features, captions, sf.caption_lengths(captions), alpha_c)
    theirs.backward()
    grads = dict(tutorial.named_parameters())
    worst = 0.0
    for name, param in decoder.named_parameters():
        other = grads[
            name.replace("lstm.", "decode_step.", 1) if name.startswith("lstm.") else name
        ]
        worst = max(worst, float((param.grad - other.grad).abs().max()))
    return ours.item(), theirs.item(), worst


def compare(model, what: str, args) -> float:
    """Times our step and the tutorial's on one model; prints a table; returns ours / theirs."""
    c = model.decoder.config
    features, captions = make_batch(
        args.batch_size, c.vocab_size, c.encoder_dim, args.min_words, args.max_words
    )
    ours_loss, their_loss, grad_diff = first_step_check(model, features, captions, args.alpha_c)

    # Two independent copies of the same initial weights, each with its own Adam.
    ours_model = copy.copy(model)
    ours_model.decoder = copy.deepcopy(model.decoder)
    module = TrainingModule(ours_model, args.alpha_c)
    ours_opt = torch.optim.Adam(ours_model.decoder.parameters(), lr=args.lr)
    batches = OneBatch(captions)
    tutorial = sf.DecoderWithAttention.from_decoder(model.decoder)
    their_opt = torch.optim.Adam(tutorial.parameters(), lr=args.lr)
    caplens = sf.caption_lengths(captions)  # (batch, 1)

    def ours_step():
        # rank 1 only silences the progress bar; the step is train_one_epoch's own
        train_one_epoch(
            module,
            ours_opt,
            batches,
            lambda rows, device: features,
            epoch=0,
            device="cpu",
            grad_clip=args.grad_clip,
            rank=1,
            world=1,
        )

    def tutorial_step():
        sf.train_step(
            tutorial, their_opt, features, captions, caplens, args.alpha_c, args.grad_clip
        )

    contestants = {"ours": ours_step, "tutorial": tutorial_step}
    default_threads = torch.get_num_threads()
    if args.thread_sweep and default_threads != 1:

        def ours_one_thread():
            torch.set_num_threads(1)
            try:
                ours_step()
            finally:
                torch.set_num_threads(default_threads)

        contestants["ours, 1 thread"] = ours_one_thread
    t = alternate(contestants, args.repeats, clock=args.clock)
    b = args.batch_size
    o, s = median_ms(t["ours"]), median_ms(t["tutorial"])
    rows = [
        ["ours (TrainingModule + Adam)", fmt(o, 0), spread(t["ours"]), fmt(b / (o / 1000))],
        ["tutorial step", fmt(s, 0), spread(t["tutorial"]), fmt(b / (s / 1000))],
    ]
    if "ours, 1 thread" in t:
        m = median_ms(t["ours, 1 thread"])
        rows.append(
            ["ours, torch threads 1", fmt(m, 0), spread(t["ours, 1 thread"]), fmt(b / (m / 1000))]
        )
    words = (captions[:, 1:] != 0).sum().item()
    print_table(
        ["step", "ms/step", "range", "captions/s"],
        rows,
        title=f"Training step, batch {b}, {args.min_words}-{args.max_words} words "
        f"({words} target tokens), {what}; threads {default_threads}; "
        f"median of {args.repeats}",
    )
    print(f"\nthroughput ours / tutorial: {s / o:.2f}x")
    print(
        f"first-step loss, dropout off: ours {ours_loss:.6f}, tutorial {their_loss:.6f}, "
        f"|difference| {abs(ours_loss - their_loss):.2e}; max |gradient difference| {grad_diff:.2e}"
    )
    return s / o


def main(argv: list[str] | None = None, results: dict | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], repeats=9)  # steps vary by ~10% on a shared VM
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--min-words", type=int, default=12)
    p.add_argument("--max-words", type=int, default=16)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--alpha-c", type=float, default=1.0)
    p.add_argument("--grad-clip", type=float, default=5.0)
    p.add_argument(
        "--thread-sweep", action="store_true", help="also time ours at 1 thread vs the default"
    )
    add_sizes_argument(p)
    args = p.parse_args(argv)
    setup(args)
    results = {} if results is None else results  # ours / tutorial captions per second
    for key, model, what in models_to_compare(args):
        results[key] = compare(model, what, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
