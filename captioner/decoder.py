"""The "Show, Attend and Tell" decoder: an LSTM with soft additive attention over the encoder grid.

Shapes: B images, K hypotheses per image (beams; 1 in training), P grid positions (196),
E encoder channels, A attention size, D LSTM size, V vocabulary size.
One `step` serves both teacher-forced training (K = 1) and beam search (K beams): the encoder
features stay (B, P, E) and are shared by all K hypotheses of an image instead of being copied.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DecoderConfig:
    vocab_size: int
    encoder_dim: int = 2048
    embed_dim: int = 512
    attention_dim: int = 512
    decoder_dim: int = 512
    dropout: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


class SoftAttention(nn.Module):
    """Additive attention (Bahdanau et al.): alpha = softmax(w . relu(W_e e_i + W_h h))."""

    def __init__(self, encoder_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)
        self.full_att = nn.Linear(attention_dim, 1)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The encoder half of the score; it does not change over time, so compute it once."""
        return self.encoder_att(features)  # (B, P, A)

    def forward(self, features: torch.Tensor, projected: torch.Tensor, h: torch.Tensor):
        att2 = self.decoder_att(h)  # (B, K, A)
        att = torch.relu(projected.unsqueeze(1) + att2.unsqueeze(2))  # (B, K, P, A)
        scores = self.full_att(att).squeeze(3)  # (B, K, P)
        alpha = torch.softmax(scores, dim=2)  # (B, K, P)
        context = torch.bmm(alpha, features)  # (B, K, E)
        return context, alpha


class Decoder(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        c = config
        self.attention = SoftAttention(c.encoder_dim, c.decoder_dim, c.attention_dim)
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        self.init_h = nn.Linear(c.encoder_dim, c.decoder_dim)
        self.init_c = nn.Linear(c.encoder_dim, c.decoder_dim)
        self.f_beta = nn.Linear(c.decoder_dim, c.encoder_dim)  # gating scalar, one per channel
        self.lstm = nn.LSTMCell(c.embed_dim + c.encoder_dim, c.decoder_dim)
        self.dropout = nn.Dropout(c.dropout)
        self.fc = nn.Linear(c.decoder_dim, c.vocab_size)
        self.embedding.weight.data.uniform_(-0.1, 0.1)
        self.fc.weight.data.uniform_(-0.1, 0.1)
        self.fc.bias.data.zero_()

    def init_state(self, features: torch.Tensor, k: int = 1):
        """h0, c0 from the mean annotation vector, repeated for K hypotheses per image."""
        mean = features.mean(dim=1)  # (B, E)
        h = self.init_h(mean).unsqueeze(1).expand(-1, k, -1).contiguous()  # (B, K, D)
        c = self.init_c(mean).unsqueeze(1).expand(-1, k, -1).contiguous()  # (B, K, D)
        return h, c

    def step(self, words, h, c, features, projected):
        """One time step for K hypotheses per image; returns logits, the new state and alpha."""
        b, k, d = h.shape
        emb = self.embedding(words)  # (B, K, embed)
        context, alpha = self.attention(features, projected, h)  # (B, K, E), (B, K, P)
        gate = torch.sigmoid(self.f_beta(h))  # (B, K, E)
        x = torch.cat([emb, gate * context], dim=2)  # (B, K, embed + E)
        h, c = self.lstm(x.view(b * k, -1), (h.view(b * k, d), c.view(b * k, d)))  # (B*K, D)
        logits = self.fc(self.dropout(h))  # (B*K, V)
        return logits.view(b, k, -1), h.view(b, k, d), c.view(b, k, d), alpha

    def forward(self, features: torch.Tensor, captions: torch.Tensor, pad_index: int = 0):
        """Teacher forcing. `captions` (B, T+1) are `<start> w.. <end> <pad>..`.

        Captions are sorted by length and step t runs only the captions still going, so no
        work is spent on padding; the outputs come back in the input order, zero at padding.
        Returns logits (B, T, V) predicting captions[:, 1:], and alphas (B, T, P).
        """
        b = captions.size(0)
        steps = captions.size(1) - 1
        lengths = (captions[:, 1:] != pad_index).sum(dim=1)  # (B,) words + <end> to predict
        lengths, order = lengths.sort(descending=True)
        features, captions = features[order], captions[order]
        projected = self.attention.project(features)  # (B, P, A)
        h, c = self.init_state(features)  # (B, 1, D)
        logits = features.new_zeros(b, steps, self.config.vocab_size)  # (B, T, V)
        alphas = features.new_zeros(b, steps, features.size(1))  # (B, T, P)
        for t in range(steps):
            bt = int((lengths > t).sum())  # captions that still have a word to predict
            if bt == 0:
                break
            out, h, c, alpha = self.step(captions[:bt, t:t + 1], h[:bt], c[:bt],
                                         features[:bt], projected[:bt])
            logits[:bt, t] = out[:, 0]  # (bt, V)
            alphas[:bt, t] = alpha[:, 0]  # (bt, P)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(b, device=order.device)
        return logits[inverse], alphas[inverse]


def caption_loss(logits: torch.Tensor, captions: torch.Tensor, alphas: torch.Tensor,
                 pad_index: int = 0, alpha_c: float = 1.0) -> torch.Tensor:
    """Cross-entropy on the real words plus the doubly stochastic attention penalty.

    The penalty alpha_c * ((1 - sum_t alpha_t)^2).mean() pushes the model to look at every
    position over the course of the caption; only the steps of real words are summed.
    """
    targets = captions[:, 1:]  # (B, T)
    mask = targets != pad_index  # (B, T)
    ce = F.cross_entropy(logits[mask], targets[mask])
    attention_total = (alphas * mask.unsqueeze(2)).sum(dim=1)  # (B, P)
    penalty = ((1.0 - attention_total) ** 2).mean()
    return ce + alpha_c * penalty
