"""The one beam search every caller uses: many images x K beams decoded as one batch.

Greedy decoding is beam search with K = 1. The encoder projection of the attention is computed
once per image, the encoder features are shared by the K beams of an image (never copied K
times), and images whose search is over leave the batch, so a batch costs about what its
slowest image needs. They leave together once a third of the rows are done: dropping a row
copies the features of every other row (1 MB each), which costs more than carrying a finished
row for a few steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .decoder import Decoder


@dataclass
class Hypothesis:
    """One decoded caption as word indices (no `<start>`/`<end>`), before words are looked up."""

    tokens: list[int]
    alphas: torch.Tensor  # (len(tokens), P): the attention that produced each word
    score: float  # ranking score: log-probability, divided by length**length_penalty
    log_prob: float  # log-probability of the tokens and, if it finished, of `<end>`
    finished: bool  # False when max_len was reached before `<end>`


class DecodingError(ValueError):
    """A decoding option out of range: a beam size of 0, a negative no-repeat length..."""


def check_decoding_options(beam_size: int = 3, max_len: int = 20, no_repeat_ngram: int = 0) -> None:
    """The one check of the decoding options, used by `beam_search` and the command lines."""
    if beam_size < 1:
        raise DecodingError(f"beam_size must be at least 1, got {beam_size}")
    if max_len < 1:
        raise DecodingError(f"max_len must be at least 1, got {max_len}")
    if no_repeat_ngram < 0:
        raise DecodingError(f"no_repeat_ngram must not be negative, got {no_repeat_ngram}")


def beam_search(
    decoder: Decoder,
    features: torch.Tensor,
    start: int,
    end: int,
    beam_size: int = 3,
    max_len: int = 20,
    length_penalty: float = 0.0,
    banned: Sequence[int] | None = None,
    no_repeat_ngram: int = 0,
    repeat_exempt: Sequence[int] = (),
) -> list[Hypothesis]:
    """Best caption for each of the B images in `features` (B, P, E).

    A hypothesis that emits `end` is set aside as finished; the K live beams are refilled from
    the next best candidates. An image is done when it has K finished hypotheses, or (without
    length normalisation, where scores only fall) when no live beam can beat its best finished
    one, or at `max_len` words, where a finished hypothesis wins, else the best live beam.
    `banned` words are never generated (default: `start`; callers add `<pad>`). With
    `no_repeat_ngram` n > 0, no hypothesis contains the same n words in a row twice, except
    n-grams holding a `repeat_exempt` word (object slots, which become different words later).
    """
    with torch.no_grad():  # not a decorator: mutmut does not mutate decorated functions
        check_decoding_options(beam_size, max_len, no_repeat_ngram)
        decoder.eval()
        banned_ids = torch.tensor(sorted({start, *(banned or ())}), dtype=torch.long)
        exempt = (
            torch.tensor(sorted(set(repeat_exempt)), dtype=torch.long, device=features.device)
            if repeat_exempt
            else None
        )
        n_images, n_pos, _ = features.shape
        k = beam_size
        device = features.device

        def rank(log_prob: float, length: int) -> float:
            return log_prob / (length**length_penalty) if length_penalty else log_prob

        results: list[Hypothesis | None] = [None] * n_images
        finished: list[list[Hypothesis]] = [[] for _ in range(n_images)]
        image_ids = torch.arange(n_images, device=device)  # which image each batch row is
        projected = decoder.attention.project(features)  # (B, P, A)
        h, c = decoder.init_state(features, k)  # (B, K, D)
        coverage = decoder.init_coverage(features, k)  # (B, K, P), or None without coverage
        words = torch.full((n_images, k), start, dtype=torch.long, device=device)  # (B, K)
        scores = torch.full((n_images, k), float("-inf"), device=device)  # (B, K)
        # all beams start identical: keep one so the first step has K distinct words
        scores[:, 0] = 0.0
        seqs = torch.empty((n_images, k, 0), dtype=torch.long, device=device)  # (B, K, t)
        seq_alphas = torch.empty((n_images, k, 0, n_pos), device=device)  # (B, K, t, P)

        searching = [True] * n_images  # per batch row: False once its image is done
        for t in range(max_len):
            logits, h, c, alpha = decoder.step(
                words, h, c, features, projected, coverage
            )  # (B, K, V) ...
            vocab_size = logits.size(2)
            log_probs = torch.log_softmax(logits, dim=2)  # (B, K, V)
            log_probs[:, :, banned_ids.to(device)] = float("-inf")
            if no_repeat_ngram and seqs.size(2) >= no_repeat_ngram:
                # ban each word that would complete an n-gram this hypothesis already holds
                windows = seqs.unfold(2, no_repeat_ngram, 1)  # (B, K, W, n)
                tail = seqs[:, :, seqs.size(2) - no_repeat_ngram + 1 :]  # (B, K, n-1)
                repeats = (windows[..., :-1] == tail.unsqueeze(2)).all(dim=3)  # (B, K, W)
                if exempt is not None:
                    repeats &= ~torch.isin(windows, exempt).any(dim=3)  # (B, K, W)
                next_words = windows[..., -1].masked_fill(
                    ~repeats, start
                )  # (B, K, W); start: banned anyway
                log_probs.scatter_(2, next_words, float("-inf"))
            log_probs = log_probs + scores.unsqueeze(2)  # (B, K, V)
            # 2K candidates always hold K that do not end, whatever the K best do.
            top_scores, top_ids = log_probs.view(len(image_ids), -1).topk(2 * k, dim=1)  # (B, 2K)
            beam_of = torch.div(top_ids, vocab_size, rounding_mode="floor")  # (B, 2K)
            word_of = top_ids % vocab_size  # (B, 2K)
            is_end = word_of == end  # (B, 2K)
            rows = torch.arange(len(image_ids), device=device).unsqueeze(1)  # (B, 1)

            # Set aside the hypotheses that end among the K best candidates: their words and
            # attention are their parent beam's (`<end>` itself is not kept).
            end_rows, end_cols = torch.nonzero(
                is_end[:, :k] & torch.isfinite(top_scores[:, :k]), as_tuple=True
            )
            for r, col in zip(end_rows.tolist(), end_cols.tolist()):
                if not searching[r]:
                    continue
                lp = float(top_scores[r, col])
                parent = int(beam_of[r, col])
                finished[int(image_ids[r])].append(
                    Hypothesis(
                        tokens=seqs[r, parent].tolist(),
                        alphas=seq_alphas[r, parent].cpu(),
                        score=rank(lp, t + 1),
                        log_prob=lp,
                        finished=True,
                    )
                )

            # The K best candidates that do not end become the live beams.
            live_rank = torch.where(
                is_end,
                float("inf"),
                torch.arange(2 * k, device=device, dtype=torch.float).expand(len(image_ids), -1),
            )  # (B, 2K)
            keep = live_rank.argsort(dim=1)[:, :k]  # (B, K)
            scores = top_scores.gather(1, keep)  # (B, K)
            words = word_of.gather(1, keep)  # (B, K)
            parents = beam_of.gather(1, keep)  # (B, K)
            # Only the K kept beams' histories are copied, not all 2K candidates'.
            seqs = torch.cat([seqs[rows, parents], words.unsqueeze(2)], dim=2)  # (B, K, t+1)
            seq_alphas = torch.cat(
                [seq_alphas[rows, parents], alpha[rows, parents].unsqueeze(2)], dim=2
            )  # (B, K, t+1, P)
            h = h[rows, parents]  # (B, K, D)
            c = c[rows, parents]  # (B, K, D)
            if coverage is not None:
                coverage = (coverage + alpha)[rows, parents]  # (B, K, P)

            # Decide which images are done.
            done = []
            best_live = scores[:, 0].tolist()
            for r, img in enumerate(image_ids.tolist()):
                if not searching[r]:
                    continue
                hyps = finished[img]
                best_finished = max((hyp.score for hyp in hyps), default=float("-inf"))
                if (
                    len(hyps) >= k
                    or t == max_len - 1
                    or (not length_penalty and hyps and best_live[r] <= best_finished)
                ):
                    if hyps:
                        results[img] = max(hyps, key=lambda hyp: hyp.score)
                    else:
                        lp = best_live[r]
                        results[img] = Hypothesis(
                            tokens=seqs[r, 0].tolist(),
                            alphas=seq_alphas[r, 0].cpu(),
                            score=rank(lp, t + 1),
                            log_prob=lp,
                            finished=False,
                        )
                    done.append(r)
            for r in done:
                searching[r] = False
            n_searching = sum(searching)
            if n_searching == 0:
                break
            # drop the finished rows
            if done and 3 * (len(searching) - n_searching) >= len(searching):
                keep_rows = torch.tensor([r for r, s in enumerate(searching) if s], device=device)
                searching = [True] * n_searching
                image_ids, features, projected = (
                    image_ids[keep_rows],
                    features[keep_rows],
                    projected[keep_rows],
                )
                h, c, words, scores = (
                    h[keep_rows],
                    c[keep_rows],
                    words[keep_rows],
                    scores[keep_rows],
                )
                seqs, seq_alphas = seqs[keep_rows], seq_alphas[keep_rows]
                if coverage is not None:
                    coverage = coverage[keep_rows]
        return results  # type: ignore[return-value]
