"""Additive attention (Bahdanau et al.), the score the decoder attends with, and how it is
computed on a CPU without its largest tensor going to memory.

Shapes: B images, K hypotheses per image, P grid positions, A attention size.
The score of position i is w . relu(W_e e_i + W_h h [+ w_c cov_i]) + b: a (B, K, P, A) sum
(25 MB at batch 64 with A = 512) reduced to (B, K, P). Written whole, that sum and its gradient
cost more memory traffic than arithmetic; computed a few images at a time, each block stays
in cache from the add to the reduction.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable


class SoftAttention(nn.Module):
    """alpha = softmax(w . relu(W_e e_i + W_h h [+ w_c cov_i]) + b) over the P positions.

    Its distribution serves both kinds of model: soft attention takes the expected context under
    it, hard attention one location drawn from it (`Decoder.context`).
    """

    CPU_BLOCK = 2**19  # values of the (B, K, P, A) attention sum computed at once on a CPU (2 MiB)

    def __init__(
        self, encoder_dim: int, decoder_dim: int, attention_dim: int, coverage: bool = False
    ):
        super().__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)
        self.coverage_att = nn.Linear(1, attention_dim, bias=False) if coverage else None
        self.full_att = nn.Linear(attention_dim, 1)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The encoder half of the score; it does not change over time, so compute it once."""
        return self.encoder_att(features)  # (B, P, A)

    def forward(
        self, projected: torch.Tensor, h: torch.Tensor, coverage: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The attention distribution over the P positions for each of K hypotheses: (B, K, P)."""
        att2 = self.decoder_att(h)  # (B, K, A)
        scores = self.scores(projected, att2, coverage)  # (B, K, P)
        return torch.softmax(scores, dim=2)  # (B, K, P)

    def scores(
        self, projected: torch.Tensor, att2: torch.Tensor, coverage: torch.Tensor | None = None
    ) -> torch.Tensor:
        """full_att(relu(W_e e_i + W_h h [+ w_c cov_i])) for every position: (B, K, P).

        On a CPU the sum is computed `CPU_BLOCK` values at a time: when captioning, by slicing
        (half the time at 16 images); when training, by `BlockedScores`, which recomputes each
        block in the backward pass instead of keeping the sum and its gradient (measured by
        `bench.attention_grad`). Coverage while training, and GPUs, take one block.
        """
        b, k, p, a = projected.size(0), att2.size(1), projected.size(1), projected.size(2)
        rows = max(1, self.CPU_BLOCK // (k * p * a))
        if projected.is_cuda:
            rows = b
        elif torch.is_grad_enabled():
            if coverage is None and k == 1 and rows < b:
                weight = self.full_att.weight.view(-1)  # (A,)
                return BlockedScores.apply(projected, att2[:, 0], weight, self.full_att.bias, rows)
            rows = b  # sliced blocks would each keep their sum for the backward pass
        if rows >= b:  # one block: no slices, whose gradients would be zero-filled copies
            return self._scores(projected, att2, coverage)
        return torch.cat(
            [
                self._scores(
                    projected[i : i + rows],
                    att2[i : i + rows],
                    None if coverage is None else coverage[i : i + rows],
                )
                for i in range(0, b, rows)
            ]
        )  # (B, K, P)

    def _scores(
        self, projected: torch.Tensor, att2: torch.Tensor, coverage: torch.Tensor | None
    ) -> torch.Tensor:
        att = projected.unsqueeze(1) + att2.unsqueeze(2)  # (B, K, P, A)
        if self.coverage_att is not None:  # coverage (B, K, P): attention summed over past steps
            # in units of a uniform share (1/P): a looked-at cell holds ~1-10, not ~0.01-0.05,
            # which the optimizer could only learn to weigh after very many steps
            p = coverage.size(2)
            weight = self.coverage_att.weight.view(-1) * p  # (A,); = coverage_att(P * cov)
            att = torch.addcmul(att, coverage.unsqueeze(3), weight)  # (B, K, P, A)
        att = torch.relu_(att)  # in place: the sum itself is not needed for the gradient
        return self.full_att(att).squeeze(3)  # (B, K, P)


class BlockedScores(torch.autograd.Function):
    """w . relu(projected + att2) + b for one hypothesis per image (training), `rows` images at
    a time in both passes: (B, P, A), (B, A), (A,), (1,) -> (B, 1, P).

    The backward pass recomputes each block's sum from the saved inputs, so neither the sum
    nor its gradient is ever written whole; only the gradient of `projected` is.
    """

    @staticmethod
    def forward(ctx, projected, att2, weight, bias, rows: int):
        b = projected.size(0)
        scores = projected.new_empty(b, projected.size(1))  # (B, P)
        for i in range(0, b, rows):
            att = projected[i : i + rows] + att2[i : i + rows].unsqueeze(1)  # (r, P, A)
            torch.matmul(att.relu_(), weight, out=scores[i : i + rows])  # (r, P)
        ctx.save_for_backward(projected, att2, weight)
        ctx.rows = rows
        return scores.add_(bias).unsqueeze(1)  # (B, 1, P)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_scores):
        projected, att2, weight = ctx.saved_tensors
        rows = ctx.rows
        b, a = projected.size(0), projected.size(2)
        grad = grad_scores.squeeze(1)  # (B, P)
        grad_projected = torch.empty_like(projected)  # (B, P, A)
        grad_att2 = att2.new_empty(b, a)  # (B, A)
        grad_weight = weight.new_zeros(a)  # (A,)
        for i in range(0, b, rows):
            att = (projected[i : i + rows] + att2[i : i + rows].unsqueeze(1)).relu_()  # (r, P, A)
            g = grad[i : i + rows]  # (r, P)
            grad_weight.addmv_(att.view(-1, a).t(), g.reshape(-1))  # sum over r, P of g * relu
            block = grad_projected[i : i + rows]  # (r, P, A): g * w where the sum was positive
            torch.mul(att.sign_(), g.unsqueeze(2), out=block)  # relu output >= 0: sign is 0 or 1
            block.mul_(weight)
            torch.sum(block, dim=1, out=grad_att2[i : i + rows])  # (r, A)
        grad_bias = grad.sum().view(1)  # (1,)
        return grad_projected, grad_att2, grad_weight, grad_bias, None
