"""The "Show, Attend and Tell" decoder: an LSTM with additive attention over the encoder grid,
soft (the context is the attention-weighted mean) or hard (the context is one cell).

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

from .attention import SoftAttention

ATTENTION_KINDS = ("soft", "hard")  # DecoderConfig.attention
HARD_DECODING = ("expected", "argmax")  # DecoderConfig.hard_decoding


@dataclass
class DecoderConfig:
    vocab_size: int
    encoder_dim: int = 2048
    embed_dim: int = 512
    attention_dim: int = 512
    decoder_dim: int = 512
    dropout: float = 0.5
    # The paper's deep output layer (eq. 7): words come from tanh(E y_{t-1} + L_h h_t + L_z z_t),
    # so the attended context names the word directly; False: from h_t alone (the common tutorials,
    # and checkpoints written before this option existed).
    deep_output: bool = True
    # Coverage (Tu et al., 2016; See et al., 2017): the attention also sees how much each position
    # has been attended so far, so it can move on from what it has already described instead of
    # naming one object twice. False: the paper's attention, which sees only the features and h.
    coverage: bool = False
    # "soft" (the paper's section 4.2): the context is the attention-weighted mean of the grid's
    # annotation vectors. "hard" (section 4.1): the context is one grid cell's vector, a location
    # drawn from the attention in training (REINFORCE, `captioner.hard_attention`); when
    # captioning, as `hard_decoding` says.
    attention: str = "soft"
    # A hard model's context when captioning: "expected", the attention-weighted mean (the
    # authors' generate_caps.py default, and the better captions on our validation scenes), or
    # "argmax", the most likely cell's vector alone (a hard look, exactly the cell the pictures light).
    hard_decoding: str = "expected"

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(
                f"unknown attention {self.attention!r}; known: {', '.join(ATTENTION_KINDS)}"
            )
        if self.hard_decoding not in HARD_DECODING:
            raise ValueError(
                f"unknown hard_decoding {self.hard_decoding!r}; known: {', '.join(HARD_DECODING)}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class Decoder(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        c = config
        self.attention = SoftAttention(c.encoder_dim, c.decoder_dim, c.attention_dim, c.coverage)
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        self.init_h = nn.Linear(c.encoder_dim, c.decoder_dim)
        self.init_c = nn.Linear(c.encoder_dim, c.decoder_dim)
        self.f_beta = nn.Linear(c.decoder_dim, c.encoder_dim)  # gating scalar, one per channel
        self.lstm = nn.LSTMCell(c.embed_dim + c.encoder_dim, c.decoder_dim)
        self.dropout = nn.Dropout(c.dropout)
        if c.deep_output:
            self.out_h = nn.Linear(c.decoder_dim, c.embed_dim)  # L_h
            self.out_z = nn.Linear(c.encoder_dim, c.embed_dim)  # L_z
        self.fc = nn.Linear(c.embed_dim if c.deep_output else c.decoder_dim, c.vocab_size)  # L_o
        self.embedding.weight.data.uniform_(-0.1, 0.1)
        self.fc.weight.data.uniform_(-0.1, 0.1)
        self.fc.bias.data.zero_()

    @torch.no_grad()
    def add_words(self, like: list[list[int]]) -> None:
        """Grow the vocabulary by len(like) words, to go on training on data with new words.

        New word j starts with the mean embedding and output row of the existing words
        `like[j]` (e.g. the object nouns, for a slot word), or as a fresh word if that is empty:
        random small weights and the mean output bias, so it is neither certain nor impossible.
        """
        old = self.config.vocab_size
        new = old + len(like)
        embedding = nn.Embedding(new, self.config.embed_dim).to(self.embedding.weight)
        fc = nn.Linear(self.fc.in_features, new).to(self.fc.weight)
        embedding.weight[:old] = self.embedding.weight
        fc.weight[:old], fc.bias[:old] = self.fc.weight, self.fc.bias
        for j, rows in enumerate(like):
            if rows:
                embedding.weight[old + j] = self.embedding.weight[rows].mean(0)
                fc.weight[old + j] = self.fc.weight[rows].mean(0)
                fc.bias[old + j] = self.fc.bias[rows].mean()
            else:
                embedding.weight[old + j].uniform_(-0.1, 0.1)
                fc.weight[old + j].uniform_(-0.1, 0.1)
                fc.bias[old + j] = self.fc.bias.mean()
        self.embedding, self.fc = embedding, fc
        self.config.vocab_size = new

    def init_state(self, features: torch.Tensor, k: int = 1):
        """h0, c0 from the mean annotation vector, repeated for K hypotheses per image."""
        mean = features.mean(dim=1)  # (B, E)
        h = self.init_h(mean).unsqueeze(1).expand(-1, k, -1).contiguous()  # (B, K, D)
        c = self.init_c(mean).unsqueeze(1).expand(-1, k, -1).contiguous()  # (B, K, D)
        return h, c

    def init_coverage(self, features: torch.Tensor, k: int = 1) -> torch.Tensor | None:
        """Attention summed over past steps: zeros at the start, or None without coverage."""
        if not self.config.coverage:
            return None
        return features.new_zeros(features.size(0), k, features.size(1))  # (B, K, P)

    @property
    def location_rule(self) -> str:
        """How `step` turns the attention into a context: "expected" or "argmax"."""
        hard = self.config.attention == "hard"
        return self.config.hard_decoding if hard else "expected"

    def context(self, alpha: torch.Tensor, features: torch.Tensor, rule: str):
        """The context z_t under `rule`, and the grid cell it came from (None for "expected").

        "expected": sum_i alpha_i a_i (soft attention); "sample": a_s with s drawn from alpha
        (hard attention in training; the global RNG, so seeded runs repeat); "argmax": a_s with
        s the most likely cell. Returns (B, K, E) and (B, K) or None.
        """
        if rule == "expected":
            return torch.bmm(alpha, features), None  # (B, K, E)
        b, k, p = alpha.shape
        if rule == "sample":
            where = torch.multinomial(alpha.reshape(b * k, p), 1).view(b, k)  # (B, K)
        elif rule == "argmax":
            where = alpha.argmax(dim=2)  # (B, K)
        else:
            raise ValueError(f"unknown location rule {rule!r}")
        index = where.unsqueeze(2).expand(-1, -1, features.size(2))  # (B, K, E)
        return features.gather(1, index), where  # (B, K, E): features[b, where[b, k]]

    def step(self, words, h, c, features, projected, coverage=None):
        """One time step for K hypotheses per image; returns logits, the new state and alpha.

        With coverage, `coverage` (B, K, P) is the attention of the past steps; add alpha to it.
        The context follows `location_rule` (a hard model's cell is alpha's argmax, or none).
        """
        alpha = self.attention(projected, h, coverage)  # (B, K, P)
        context, _ = self.context(alpha, features, self.location_rule)  # (B, K, E)
        logits, h, c = self.advance(words, h, c, context)
        return logits, h, c, alpha

    def gated_context(self, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """z = sigmoid(f_beta(h)) * context: the paper's gating scalar, one per channel (..., E)."""
        return torch.sigmoid(self.f_beta(h)) * context

    def word_logits(self, emb: torch.Tensor, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits of the next word (..., V) from the LSTM output h, through the deep output
        tanh(E y + L_h h + L_z z) (the paper's eq. 7) when configured."""
        out = h
        if self.config.deep_output:
            out = torch.tanh(emb + self.out_h(h) + self.out_z(z))  # (..., embed)
        return self.fc(self.dropout(out))

    def advance(self, words, h, c, context):
        """The LSTM step and the word logits, given the previous words and the context (B, K, E)."""
        b, k, d = h.shape
        emb = self.embedding(words)  # (B, K, embed)
        z = self.gated_context(h, context)  # (B, K, E)
        x = torch.cat([emb, z], dim=2)  # (B, K, embed + E)
        h, c = self.lstm(x.view(b * k, -1), (h.view(b * k, d), c.view(b * k, d)))  # (B*K, D)
        logits = self.word_logits(emb.view(b * k, -1), h, z.view(b * k, -1))  # (B*K, V)
        return logits.view(b, k, -1), h.view(b, k, d), c.view(b, k, d)

    def forward(
        self,
        features: torch.Tensor,
        captions: torch.Tensor,
        pad_index: int = 0,
        rule: str | None = None,
    ):
        """Teacher forcing. `captions` (B, T+1) are `<start> w.. <end> <pad>..`.

        Captions are sorted by length and step t runs only the captions still going, so no
        work is spent on padding; the outputs come back in the input order, zero at padding.
        `rule`: how the context is made (`context`); None: `location_rule`.
        Returns logits (B, T, V) predicting captions[:, 1:], alphas (B, T, P), and the cell each
        step's context came from (B, T), -1 at padding, or None when the context is the expected one.

        The same arithmetic as `step` at every time step, arranged for speed: what does not
        depend on the previous step (the words' share of the LSTM gates, the output layer) is
        one large matrix product over all N words of the batch instead of T small ones, and the
        words are kept packed (step by step, the captions still going) until the end.
        """
        rule = self.location_rule if rule is None else rule
        b, steps = captions.size(0), captions.size(1) - 1
        lengths = (captions[:, 1:] != pad_index).sum(dim=1)  # (B,) words + <end> to predict
        lengths, order = lengths.sort(descending=True, stable=True)
        if not bool((order == torch.arange(b, device=order.device)).all()):
            # (`CaptionBatches` yields its batches in this order: no copy of their features)
            features, captions = features[order], captions[order]
        going = lengths.unsqueeze(0) > torch.arange(steps, device=lengths.device).unsqueeze(1)
        sizes = [n for n in going.sum(dim=1).tolist() if n > 0]  # captions going at each step
        # packed order, step by step: word j is caption rows[j]'s word at step times[j]
        times, rows = going.nonzero(as_tuple=True)  # (N,), (N,): row-major, so step by step
        emb = self.embedding(captions[rows, times])  # (N, embed): the previous words
        w_word, w_context = self.lstm.weight_ih.split(
            [self.config.embed_dim, self.config.encoder_dim], dim=1
        )  # (4D, embed), (4D, E)
        bias = self.lstm.bias_ih + self.lstm.bias_hh  # (4D,)
        word_gates = F.linear(emb, w_word, bias).split(sizes)  # T x (bt, 4D)
        projected = self.attention.project(features)  # (B, P, A)
        h, c = self.init_state(features)  # (B, 1, D)
        coverage = self.init_coverage(features)  # (B, 1, P) or None
        hs, zs, alphas, cells = [], [], [], []
        for t, bt in enumerate(sizes):
            if bt < h.size(0):  # slice only when captions have ended since the last step: a
                # slice's gradient is a zero-filled copy of the whole (25 MB for `projected`)
                h, c, features, projected = h[:bt], c[:bt], features[:bt], projected[:bt]
                coverage = None if coverage is None else coverage[:bt]  # (bt, 1, P)
            alpha = self.attention(projected, h, coverage)  # (bt, 1, P)
            context, where = self.context(alpha, features, rule)  # (bt, 1, E), (bt, 1) or None
            z = self.gated_context(h[:, 0], context[:, 0])  # (bt, E)
            gates = word_gates[t] + F.linear(z, w_context) + F.linear(h[:, 0], self.lstm.weight_hh)
            i, f, g, o = gates.chunk(4, dim=1)  # (bt, D) each: nn.LSTMCell's order
            c = (torch.sigmoid(f) * c[:, 0] + torch.sigmoid(i) * torch.tanh(g)).unsqueeze(1)
            h = (torch.sigmoid(o) * torch.tanh(c[:, 0])).unsqueeze(1)  # (bt, 1, D)
            if coverage is not None:
                coverage = coverage + alpha  # (bt, 1, P)
            hs.append(h[:, 0])
            zs.append(z)
            alphas.append(alpha[:, 0])
            cells.append(where)
        logits = self.word_logits(emb, torch.cat(hs), torch.cat(zs))  # (N, V)
        place = order[rows], times  # (N,), (N,): where word j goes in the (B, T) outputs
        shape = (b, steps)
        logits = logits.new_zeros(*shape, logits.size(1)).index_put(place, logits)  # (B, T, V)
        alphas = torch.cat(alphas)  # (N, P)
        alphas = alphas.new_zeros(*shape, alphas.size(1)).index_put(place, alphas)  # (B, T, P)
        if rule == "expected":
            return logits, alphas, None
        cells = torch.cat(cells)[:, 0]  # (N,)
        return logits, alphas, cells.new_full(shape, -1).index_put(place, cells)  # (B, T)


def caption_loss(
    logits: torch.Tensor,
    captions: torch.Tensor,
    alphas: torch.Tensor,
    pad_index: int = 0,
    alpha_c: float = 1.0,
    box_targets: torch.Tensor | None = None,
    alpha_box: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy on the real words plus the doubly stochastic attention penalty.

    The penalty alpha_c * ((1 - sum_t alpha_t)^2).mean() pushes the model to look at every
    position over the course of the caption; only the steps of real words are summed.
    With `box_targets` (B, T, P) and `alpha_box` > 0, also alpha_box * `attention_box_loss`.
    """
    targets = captions[:, 1:]  # (B, T)
    mask = targets != pad_index  # (B, T)
    ce = F.cross_entropy(logits[mask], targets[mask])
    attention_total = (alphas * mask.unsqueeze(2)).sum(dim=1)  # (B, P)
    penalty = ((1.0 - attention_total) ** 2).mean()
    loss = ce + alpha_c * penalty
    if box_targets is not None and alpha_box:
        loss = loss + alpha_box * attention_box_loss(alphas, box_targets)
    return loss


def attention_box_loss(alphas: torch.Tensor, box_targets: torch.Tensor) -> torch.Tensor:
    """Mean -log(attention mass inside the named object's box) over the words that name one.

    `box_targets` (B, T, P) holds, at step t, each grid cell's coverage by the box of the object
    that word t+1 names (zero rows for other words); `alphas` (B, T, P) is the attention of step t.
    """
    named = box_targets.sum(dim=2) > 0  # (B, T)
    if not bool(named.any()):
        return alphas.sum() * 0.0  # keeps the graph (and DDP) whole when a batch names nothing
    mass = (alphas * box_targets).sum(dim=2)[named]  # (N,)
    return -torch.log(mass.clamp_min(1e-6)).mean()
