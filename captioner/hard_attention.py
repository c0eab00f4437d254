"""Training hard attention: the paper's section 4.1 objective, estimated by REINFORCE.

A hard-attention model looks at one grid cell per word: its context is that cell's annotation
vector a_s, with the location s drawn from the attention distribution alpha. The log-likelihood
log p(y | s, a) has no gradient with respect to a draw, so the paper follows the gradient of its
lower bound L_s = sum_s p(s | a) log p(y | s, a) with the Monte Carlo estimate (its eq. 12):

    dL_s/dW ~= d log p(y|s,a)/dW + lambda_r (log p(y|s,a) - b) d log p(s|a)/dW + lambda_e dH[s]/dW

where b is a moving average of log p(y | s, a) (b <- 0.9 b + 0.1 log p, "a variance reduction
technique") and H the entropy of the attention. With probability 0.5 a minibatch uses the expected
(soft) context instead of a draw (the paper's s_t = alpha_t half of the time; the authors draw this
once per minibatch). `HardAttentionObjective` adds the second and third terms to the caption loss;
the first is the caption loss itself, computed on the sampled context.

Scales, as the authors' code (kelvinxu/arctic-captions, capgen.py) has them: the reward is the
caption's mean log-probability per word and lambda_r = 0.1 (their "/10."), lambda_e = 0.002.
Here every term is a mean per word, like the cross-entropy it is added to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def word_log_probs(logits: torch.Tensor, captions: torch.Tensor, pad_index: int) -> torch.Tensor:
    """log p(y_t | ...) of each target word: (B, T), zero at padding."""
    targets = captions[:, 1:]  # (B, T)
    log_p = -F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (B, T)
    return log_p * (targets != pad_index)  # (B, T)


def location_log_probs(alphas: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """log alpha_t[s_t] of each step's chosen cell: (B, T), zero where `cells` is -1 (padding)."""
    chosen = alphas.gather(2, cells.clamp_min(0).unsqueeze(2)).squeeze(2)  # (B, T)
    return torch.log(chosen.clamp_min(1e-12)) * (cells >= 0)  # (B, T)


def reinforce_loss(
    rewards: torch.Tensor, baseline: float, location_log_p: torch.Tensor, n_words: int
) -> torch.Tensor:
    """-(r_n - b) log p(s_n | a) summed over captions, per word: its gradient is the REINFORCE
    estimate of -dL_s/dW's location term (eq. 12's second term, before lambda_r).

    `rewards` (B,): log p(y | s, a) per caption (no gradient flows through it); `location_log_p`
    (B, T): log alpha_t[s_t], zero at padding.
    """
    advantage = (rewards.detach() - baseline).unsqueeze(1)  # (B, 1)
    return -(advantage * location_log_p).sum() / n_words


def attention_entropy(alphas: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the attention at the real words; `mask` (B, T) marks them."""
    h = -(alphas * torch.log(alphas.clamp_min(1e-12))).sum(dim=2)  # (B, T)
    return (h * mask).sum() / mask.sum().clamp_min(1)


class HardAttentionObjective(nn.Module):
    """The location terms of the hard-attention objective, and the state they keep: the baseline.

    Call `draw()` once per minibatch to decide whether it samples locations, run the decoder with
    that rule, then add `self(...)` to the caption loss. The baseline follows the sampled batches
    only (the expected-context batches have another, higher likelihood) and starts at the first
    sampled batch's mean reward (the authors start at 0, which makes the first updates' advantage
    the whole log-likelihood). Under DDP each process keeps its own baseline.
    """

    def __init__(
        self,
        reinforce_weight: float = 0.1,
        entropy_weight: float = 0.002,
        baseline_decay: float = 0.9,
        sample_prob: float = 0.5,
    ):
        super().__init__()
        self.reinforce_weight = reinforce_weight
        self.entropy_weight = entropy_weight
        self.baseline_decay = baseline_decay
        self.sample_prob = sample_prob
        self.register_buffer("baseline", torch.tensor(float("nan")))  # nan: no batch seen yet

    def draw(self) -> str:
        """This minibatch's location rule: "sample" with probability `sample_prob`, else
        "expected" (the global RNG, so a seeded run repeats)."""
        return "sample" if float(torch.rand(())) < self.sample_prob else "expected"

    @torch.no_grad()
    def update_baseline(self, rewards: torch.Tensor) -> float:
        """b <- decay b + (1 - decay) mean(rewards); returns the baseline from before the update
        (the one the batch's advantage is measured against)."""
        mean = rewards.mean()
        if torch.isnan(self.baseline):
            self.baseline.copy_(mean)
        before = float(self.baseline)
        self.baseline.mul_(self.baseline_decay).add_((1.0 - self.baseline_decay) * mean)
        return before

    def forward(
        self,
        logits: torch.Tensor,
        captions: torch.Tensor,
        alphas: torch.Tensor,
        cells: torch.Tensor | None,
        pad_index: int = 0,
    ) -> torch.Tensor:
        """The terms to add to the caption loss: -lambda_r (r - b) log p(s) - lambda_e H(alpha)
        per word; without sampled `cells` (an expected-context batch), the entropy term alone."""
        mask = captions[:, 1:] != pad_index  # (B, T)
        loss = -self.entropy_weight * attention_entropy(alphas, mask)
        if cells is None:
            return loss
        n_words = mask.sum(dim=1).clamp_min(1)  # (B,)
        rewards = word_log_probs(logits.detach(), captions, pad_index).sum(1) / n_words  # (B,)
        baseline = self.update_baseline(rewards) if self.training else float(self.baseline)
        location_log_p = location_log_probs(alphas, cells)  # (B, T)
        return loss + self.reinforce_weight * reinforce_loss(
            rewards, baseline, location_log_p, int(mask.sum())
        )
