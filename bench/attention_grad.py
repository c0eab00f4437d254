"""The attention score in training: `BlockedScores` against plain autograd in one block.

    python -m bench.attention_grad [--batch-size 64] [--steps 16] [--attention-dim 512] [--repeats 7]

One teacher-forced pass over `--steps` steps of the attention alone (the score, its softmax and
a recurrence through h), forward and backward, at the tutorial's sizes by default. The two
contestants share the weights; their gradients are compared before timing.
"""

from __future__ import annotations

import torch

from captioner.attention import SoftAttention

from .common import alternate, base_parser, fmt, median_ms, print_table, setup, spread


def attention_pass(att: SoftAttention, features: torch.Tensor, h0: torch.Tensor, steps: int):
    """Loss of `steps` attention steps; the context feeds h, as in the decoder."""
    projected = att.project(features)  # (B, P, A)
    h, loss = h0, 0.0
    for _ in range(steps):
        alpha = att(projected, h)  # (B, 1, P)
        context = torch.bmm(alpha, features)  # (B, 1, E)
        h = torch.tanh(h + context[..., : h.size(2)])  # (B, 1, D), with D <= E
        loss = loss + alpha.square().sum()
    return loss


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], repeats=7)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--attention-dim", type=int, default=512)
    p.add_argument("--encoder-dim", type=int, default=1280)
    args = p.parse_args(argv)
    setup(args)
    torch.manual_seed(0)
    b, a = args.batch_size, args.attention_dim
    features = torch.rand(b, 196, args.encoder_dim)  # (B, P, E)
    h0 = torch.randn(b, 1, 512) * 0.1  # (B, 1, D)
    blocked = SoftAttention(args.encoder_dim, 512, a)
    plain = SoftAttention(args.encoder_dim, 512, a)
    plain.load_state_dict(blocked.state_dict())
    plain.CPU_BLOCK = 10**15  # one block: autograd keeps the whole sum and its gradient

    def run(att: SoftAttention) -> list[torch.Tensor]:
        att.zero_grad()
        attention_pass(att, features, h0, args.steps).backward()
        return [q.grad for q in att.parameters()]

    worst = max(float((x - y).abs().max()) for x, y in zip(run(blocked), run(plain)))
    t = alternate({"blocked": lambda: run(blocked), "plain": lambda: run(plain)}, args.repeats)
    ours, base = median_ms(t["blocked"]), median_ms(t["plain"])
    print_table(
        ["attention, forward + backward", "ms", "range"],
        [
            ["BlockedScores (the default)", fmt(ours, 0), spread(t["blocked"])],
            ["autograd, one block", fmt(base, 0), spread(t["plain"])],
        ],
        title=f"Training attention: batch {b}, {args.steps} steps, A = {a}, 196 positions, "
        f"threads {torch.get_num_threads()}; median of {args.repeats}",
    )
    print(f"\nblocked / plain: {ours / base:.2f}x; max |gradient difference| {worst:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
