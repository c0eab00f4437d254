"""The same model written the way the common tutorials write it, as the baseline we measure against.

Follows sgrvinod's a-PyTorch-Tutorial-to-Image-Captioning (`models.py`, `caption.py`,
`train.py`) line by line where it matters for speed: one image per beam search with the
features expanded to k beams, the attention's encoder projection recomputed at every step,
the weighted sum as `(encoder_out * alpha.unsqueeze(2)).sum(dim=1)`, a beam that shrinks as
hypotheses finish, a training step that sorts by length and shrinks the batch per time step
with a `pack_padded_sequence` loss, `pyramid_expand` for the attention pictures and Pillow's
default GIF save. It loads the very weights of our `Decoder` (`lstm.*` is `decode_step.*`
there), so both must produce the same numbers; only the speed may differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from captioner.attention_viz import blend, label
from captioner.decoder import Decoder


class Attention(nn.Module):
    """The tutorial's attention network."""

    def __init__(self, encoder_dim: int, decoder_dim: int, attention_dim: int):
        super().__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)
        self.full_att = nn.Linear(attention_dim, 1)
        self.relu = nn.ReLU()
        self.softmax = nn.Softmax(dim=1)
        self.coverage_att = None  # not in the tutorial: set for decoders trained with coverage

    def forward(self, encoder_out, decoder_hidden, coverage=None):
        att1 = self.encoder_att(encoder_out)  # (batch, num_pixels, attention_dim), every step
        att2 = self.decoder_att(decoder_hidden)  # (batch, attention_dim)
        att = att1 + att2.unsqueeze(1)  # (batch, num_pixels, attention_dim)
        if self.coverage_att is not None:
            att = att + self.coverage_att(
                coverage.unsqueeze(2) * coverage.size(1)
            )  # (batch, num_pixels, attention_dim)
        att = self.full_att(self.relu(att)).squeeze(2)  # (batch, num_pixels)
        alpha = self.softmax(att)  # (batch, num_pixels)
        attention_weighted_encoding = (encoder_out * alpha.unsqueeze(2)).sum(
            dim=1
        )  # (batch, encoder_dim)
        return attention_weighted_encoding, alpha


class DecoderWithAttention(nn.Module):
    """The tutorial's decoder, with our parameter names except `decode_step` (our `lstm`)."""

    def __init__(
        self, attention_dim, embed_dim, decoder_dim, vocab_size, encoder_dim=2048, dropout=0.5
    ):
        super().__init__()
        self.encoder_dim = encoder_dim
        self.attention_dim = attention_dim
        self.embed_dim = embed_dim
        self.decoder_dim = decoder_dim
        self.vocab_size = vocab_size
        self.attention = Attention(encoder_dim, decoder_dim, attention_dim)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(p=dropout)
        self.decode_step = nn.LSTMCell(embed_dim + encoder_dim, decoder_dim, bias=True)
        self.init_h = nn.Linear(encoder_dim, decoder_dim)
        self.init_c = nn.Linear(encoder_dim, decoder_dim)
        self.f_beta = nn.Linear(decoder_dim, encoder_dim)
        self.sigmoid = nn.Sigmoid()
        self.fc = nn.Linear(decoder_dim, vocab_size)
        self.deep_output = False

    def add_deep_output(self) -> None:
        """The paper's eq. 7 output layer, for decoders trained with it (not in the tutorial)."""
        self.deep_output = True
        self.out_h = nn.Linear(self.decoder_dim, self.embed_dim)
        self.out_z = nn.Linear(self.encoder_dim, self.embed_dim)
        self.fc = nn.Linear(self.embed_dim, self.vocab_size)

    def output(self, h, embeddings, attention_weighted_encoding):
        """Word scores from the new LSTM state (and, with the deep output, the word and context)."""
        if self.deep_output:
            h = torch.tanh(embeddings + self.out_h(h) + self.out_z(attention_weighted_encoding))
        return self.fc(self.dropout(h))

    @classmethod
    def from_decoder(cls, decoder: Decoder) -> DecoderWithAttention:
        """A tutorial decoder holding a copy of `decoder`'s weights."""
        c = decoder.config
        model = cls(
            c.attention_dim, c.embed_dim, c.decoder_dim, c.vocab_size, c.encoder_dim, c.dropout
        )
        if c.deep_output:
            model.add_deep_output()
        if c.coverage:
            model.attention.coverage_att = nn.Linear(1, c.attention_dim, bias=False)
        state = {
            k.replace("lstm.", "decode_step.", 1)
            if k.startswith("lstm.")
            else k: v.detach().clone()
            for k, v in decoder.state_dict().items()
        }
        model.load_state_dict(state, strict=True)
        return model.to(next(decoder.parameters()).device)

    def init_hidden_state(self, encoder_out):
        mean_encoder_out = encoder_out.mean(dim=1)  # (batch, encoder_dim)
        h = self.init_h(mean_encoder_out)  # (batch, decoder_dim)
        c = self.init_c(mean_encoder_out)  # (batch, decoder_dim)
        return h, c

    def forward(self, encoder_out, encoded_captions, caption_lengths):
        """Teacher forcing over a batch sorted by length, shrinking as captions end."""
        batch_size = encoder_out.size(0)
        encoder_dim = encoder_out.size(-1)
        vocab_size = self.vocab_size
        encoder_out = encoder_out.view(
            batch_size, -1, encoder_dim
        )  # (batch, num_pixels, encoder_dim)
        num_pixels = encoder_out.size(1)
        caption_lengths, sort_ind = caption_lengths.squeeze(1).sort(dim=0, descending=True)
        encoder_out = encoder_out[sort_ind]
        encoded_captions = encoded_captions[sort_ind]
        embeddings = self.embedding(encoded_captions)  # (batch, max_caption_length, embed_dim)
        h, c = self.init_hidden_state(encoder_out)  # (batch, decoder_dim)
        decode_lengths = (caption_lengths - 1).tolist()
        predictions = torch.zeros(
            batch_size, max(decode_lengths), vocab_size, device=encoder_out.device
        )
        alphas = torch.zeros(batch_size, max(decode_lengths), num_pixels, device=encoder_out.device)
        coverage = torch.zeros(batch_size, num_pixels, device=encoder_out.device)
        for t in range(max(decode_lengths)):
            batch_size_t = sum([length > t for length in decode_lengths])
            attention_weighted_encoding, alpha = self.attention(
                encoder_out[:batch_size_t], h[:batch_size_t], coverage[:batch_size_t]
            )
            coverage = coverage[:batch_size_t] + alpha  # (batch_t, num_pixels)
            gate = self.sigmoid(self.f_beta(h[:batch_size_t]))  # (batch_t, encoder_dim)
            attention_weighted_encoding = gate * attention_weighted_encoding
            h, c = self.decode_step(
                torch.cat([embeddings[:batch_size_t, t, :], attention_weighted_encoding], dim=1),
                (h[:batch_size_t], c[:batch_size_t]),
            )  # (batch_t, decoder_dim)
            preds = self.output(
                h, embeddings[:batch_size_t, t, :], attention_weighted_encoding
            )  # (batch_t, vocab_size)
            predictions[:batch_size_t, t, :] = preds
            alphas[:batch_size_t, t, :] = alpha
        return predictions, encoded_captions, decode_lengths, alphas, sort_ind


# ---------------------------------------------------------------------------- training


def caption_lengths(captions: torch.Tensor, pad: int = 0) -> torch.Tensor:
    """The tutorial's `caplens`: words + `<start>` + `<end>`, shape (batch, 1)."""
    return (captions != pad).sum(dim=1, keepdim=True)  # (batch, 1)


def tutorial_loss(decoder: DecoderWithAttention, features, captions, caplens, alpha_c: float = 1.0):
    """The tutorial's loss: packed cross-entropy plus the doubly stochastic penalty."""
    scores, caps_sorted, decode_lengths, alphas, sort_ind = decoder(features, captions, caplens)
    targets = caps_sorted[:, 1:]
    scores = pack_padded_sequence(scores, decode_lengths, batch_first=True).data
    targets = pack_padded_sequence(targets, decode_lengths, batch_first=True).data
    loss = F.cross_entropy(scores, targets)
    loss = loss + alpha_c * ((1.0 - alphas.sum(dim=1)) ** 2).mean()
    return loss


def clip_gradient(optimizer, grad_clip):
    """The tutorial's clipping: every gradient element clamped to [-grad_clip, grad_clip]."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is not None:
                param.grad.data.clamp_(-grad_clip, grad_clip)


def train_step(
    decoder: DecoderWithAttention,
    optimizer,
    features,
    captions,
    caplens,
    alpha_c: float = 1.0,
    grad_clip: float = 5.0,
) -> float:
    """One step of the tutorial's `train()` from cached features (its top-5 accuracy left out)."""
    decoder.train()
    loss = tutorial_loss(decoder, features, captions, caplens, alpha_c)
    optimizer.zero_grad()
    loss.backward()
    if grad_clip is not None:
        clip_gradient(optimizer, grad_clip)
    optimizer.step()
    return loss.item()


# ---------------------------------------------------------------------------- beam search


@torch.no_grad()
def caption_image_beam_search(
    decoder: DecoderWithAttention,
    encoder_out: torch.Tensor,
    start: int,
    end: int,
    beam_size: int = 3,
    max_len: int = 20,
):
    """The tutorial's `caption_image_beam_search` from features (1, num_pixels, encoder_dim).

    Returns (word ids without `<start>`/`<end>`, alphas (n, num_pixels), score). One change
    so that it can be compared with ours: it stops after `max_len` steps like ours and then, if
    no hypothesis has finished, returns the best live one (the tutorial runs 50 steps and
    then fails on `max([])`).
    """
    decoder.eval()
    k = beam_size
    device = encoder_out.device
    encoder_dim = encoder_out.size(-1)
    encoder_out = encoder_out.view(1, -1, encoder_dim)  # (1, num_pixels, encoder_dim)
    num_pixels = encoder_out.size(1)
    encoder_out = encoder_out.expand(k, num_pixels, encoder_dim)  # (k, num_pixels, encoder_dim)
    vocab_size = decoder.vocab_size
    k_prev_words = torch.LongTensor([[start]] * k).to(device)  # (k, 1)
    seqs = k_prev_words  # (k, 1)
    top_k_scores = torch.zeros(k, 1, device=device)  # (k, 1)
    seqs_alpha = torch.ones(k, 1, num_pixels, device=device)  # (k, 1, num_pixels)
    complete_seqs, complete_seqs_alpha, complete_seqs_scores = [], [], []
    step = 1
    h, c = decoder.init_hidden_state(encoder_out)  # (k, decoder_dim)
    while True:
        embeddings = decoder.embedding(k_prev_words).squeeze(1)  # (s, embed_dim)
        coverage = seqs_alpha[:, 1:].sum(
            dim=1
        )  # (s, num_pixels): attention so far (row 0 is a placeholder)
        awe, alpha = decoder.attention(
            encoder_out, h, coverage
        )  # (s, encoder_dim), (s, num_pixels)
        gate = decoder.sigmoid(decoder.f_beta(h))  # (s, encoder_dim)
        awe = gate * awe
        h, c = decoder.decode_step(torch.cat([embeddings, awe], dim=1), (h, c))  # (s, decoder_dim)
        scores = decoder.output(h, embeddings, awe)  # (s, vocab_size); eval: no dropout
        scores = F.log_softmax(scores, dim=1)
        scores = top_k_scores.expand_as(scores) + scores  # (s, vocab_size)
        if step == 1:
            top_k_scores, top_k_words = scores[0].topk(k, 0, True, True)  # (s)
        else:
            top_k_scores, top_k_words = scores.view(-1).topk(k, 0, True, True)  # (s)
        prev_word_inds = torch.div(top_k_words, vocab_size, rounding_mode="floor")  # (s)
        next_word_inds = top_k_words % vocab_size  # (s)
        seqs = torch.cat([seqs[prev_word_inds], next_word_inds.unsqueeze(1)], dim=1)  # (s, step+1)
        seqs_alpha = torch.cat(
            [seqs_alpha[prev_word_inds], alpha[prev_word_inds].unsqueeze(1)], dim=1
        )  # (s, step+1, num_pixels)
        incomplete_inds = [ind for ind, next_word in enumerate(next_word_inds) if next_word != end]
        complete_inds = list(set(range(len(next_word_inds))) - set(incomplete_inds))
        if len(complete_inds) > 0:
            complete_seqs.extend(seqs[complete_inds].tolist())
            complete_seqs_alpha.extend(seqs_alpha[complete_inds].tolist())
            complete_seqs_scores.extend(top_k_scores[complete_inds])
        k -= len(complete_inds)
        if k == 0:
            break
        seqs = seqs[incomplete_inds]
        seqs_alpha = seqs_alpha[incomplete_inds]
        h = h[prev_word_inds[incomplete_inds]]
        c = c[prev_word_inds[incomplete_inds]]
        encoder_out = encoder_out[prev_word_inds[incomplete_inds]]
        top_k_scores = top_k_scores[incomplete_inds].unsqueeze(1)
        k_prev_words = next_word_inds[incomplete_inds].unsqueeze(1)
        if step >= max_len:
            break
        step += 1
    if complete_seqs_scores:
        i = complete_seqs_scores.index(max(complete_seqs_scores))
        seq, alphas, score = (
            complete_seqs[i][1:-1],
            complete_seqs_alpha[i][1:-1],
            float(complete_seqs_scores[i]),
        )
    else:  # no `<end>` within max_len: the best live beam
        seq, alphas, score = (
            seqs[0].tolist()[1:],
            seqs_alpha[0].tolist()[1:],
            float(top_k_scores[0]),
        )
    return seq, np.asarray(alphas, dtype=np.float32), score


def caption_images(
    decoder: DecoderWithAttention,
    features: torch.Tensor,
    start: int,
    end: int,
    beam_size: int = 3,
    max_len: int = 20,
) -> list:
    """The tutorial's way to caption many images: one beam search per image."""
    return [
        caption_image_beam_search(decoder, features[i : i + 1], start, end, beam_size, max_len)
        for i in range(features.size(0))
    ]


# ---------------------------------------------------------------------------- pictures


def attention_frames(
    image: Image.Image,
    words: Sequence[str],
    alphas: np.ndarray,
    size: int = 448,
    with_labels: bool = True,
) -> list[Image.Image]:
    """One frame per word with the tutorial's smoothing: `pyramid_expand(upscale=32, sigma=8)`.

    The tutorial hands the map to `plt.imshow`, which stretches min..max over the colormap;
    the colouring and label are ours, so only the smoothing differs.
    """
    from skimage.transform import pyramid_expand

    base = image.convert("RGB").resize((size, size), Image.LANCZOS)
    grid = alphas.reshape(len(alphas), 14, 14)
    frames = []
    for word, alpha in zip(words, grid):
        heat = pyramid_expand(alpha.astype(np.float64), upscale=size / 14, sigma=8)  # (size, size)
        low, high = heat.min(), heat.max()
        heat = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
        frame = blend(base, heat.astype(np.float32))
        frames.append(label(frame, word) if with_labels else frame)
    return frames


def save_gif(frames: Sequence[Image.Image], path: str | Path, duration_ms: int = 700) -> Path:
    """Pillow's default animated GIF save: Pillow quantises every RGB frame itself."""
    path = Path(path)
    frames[0].save(
        path, save_all=True, append_images=list(frames[1:]), duration=duration_ms, loop=0
    )
    return path
