"""BLEU and CIDEr against values worked out independently of pycocoevalcap.

BLEU (Papineni et al., 2002) by hand on small imperfect captions; CIDEr-D (Vedantam et al., 2015)
from the paper's formula, written out below in plain Python: tf-idf n-gram vectors, clipped
hypothesis counts, a Gaussian length penalty (sigma 6), mean over n = 1..4 and references, x10.
A scorer that returned BLEU-1 for BLEU-4, or dropped the brevity penalty, fails here.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest

from captioner.metrics import bleu4, caption_scores


def test_bleu_by_hand_on_an_imperfect_caption():
    # hypothesis "the cat sat on a mat" against "the cat sat on the mat" (both 6 words):
    # matched 1-grams 5/6, 2-grams 3/5, 3-grams 2/4, 4-grams 1/3; no brevity penalty
    refs, hyp = {0: ["the cat sat on the mat"]}, {0: "the cat sat on a mat"}
    expected = {1: 5 / 6, 2: (5 / 6 * 3 / 5) ** (1 / 2), 3: (5 / 6 * 3 / 5 * 2 / 4) ** (1 / 3)}
    expected[4] = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** (1 / 4)  # 0.5373
    scores = caption_scores(refs, hyp, meteor=False)
    for n, value in expected.items():
        assert scores[f"BLEU-{n}"] == pytest.approx(value, abs=1e-6), n
    assert bleu4(refs, hyp) == pytest.approx(expected[4], abs=1e-6)


def test_bleu_brevity_penalty_by_hand():
    # "the cat sat on": every n-gram matches, but 4 words against 6: BP = exp(1 - 6/4)
    refs, hyp = {0: ["the cat sat on the mat"]}, {0: "the cat sat on"}
    penalty = math.exp(1 - 6 / 4)  # 0.6065
    scores = caption_scores(refs, hyp, meteor=False)
    for n in (1, 2, 3, 4):
        assert scores[f"BLEU-{n}"] == pytest.approx(penalty, abs=1e-6)


def test_bleu_is_a_corpus_score_not_a_mean_of_sentences():
    # counts are summed over the corpus before the ratios: (5+4)/(6+4) matched 1-grams, etc.
    refs = {0: ["the cat sat on the mat"], 1: ["the cat sat on the mat"]}
    hyp = {0: "the cat sat on a mat", 1: "the cat sat on"}
    p = [(5 + 4) / (6 + 4), (3 + 3) / (5 + 3), (2 + 2) / (4 + 2), (1 + 1) / (3 + 1)]
    penalty = math.exp(1 - 12 / 10)
    expected = penalty * math.prod(p) ** (1 / 4)
    assert bleu4(refs, hyp) == pytest.approx(expected, abs=1e-6)


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def cider_d(refs: dict, hyps: dict, sigma: float = 6.0) -> float:
    """CIDEr-D from the paper, independently: the corpus mean of each image's score."""
    docs = {i: [r.split() for r in rs] for i, rs in refs.items()}
    log_images = math.log(len(docs))
    df = {n: Counter() for n in range(1, 5)}
    for rs in docs.values():
        for n in range(1, 5):
            df[n].update({g for r in rs for g in _ngrams(r, n)})

    def vector(words, n):
        tf = _ngrams(words, n)
        return {g: c * (log_images - math.log(max(1.0, df[n][g]))) for g, c in tf.items()}

    def norm(v):
        return math.sqrt(sum(x * x for x in v.values()))

    total = 0.0
    for i, hyp in hyps.items():
        h = hyp.split()
        image = 0.0
        for r in docs[i]:
            per_n = []
            for n in range(1, 5):
                vh, vr = vector(h, n), vector(r, n)
                dot = sum(min(vh[g], vr[g]) * vr[g] for g in vh if g in vr)  # clipped
                cos = dot / (norm(vh) * norm(vr)) if norm(vh) and norm(vr) else 0.0
                per_n.append(cos * math.exp(-((len(h) - len(r)) ** 2) / (2 * sigma**2)))
            image += sum(per_n) / 4
        total += 10.0 * image / len(docs[i])
    return total / len(hyps)


def test_cider_d_matches_the_paper_s_formula_on_a_small_corpus():
    refs = {
        0: ["a red bus on the road", "a bus on a road"],
        1: ["two dogs on the grass", "a pair of dogs on grass"],
        2: ["a cup of coffee on a table", "coffee in a white cup"],
    }
    hyps = {0: "a red bus on a road", 1: "two dogs on the road", 2: "a cup of tea"}
    expected = cider_d(refs, hyps)
    assert 0.5 < expected < 10  # imperfect captions: neither 0 nor the maximum
    assert caption_scores(refs, hyps, meteor=False)["CIDEr"] == pytest.approx(expected, abs=1e-6)
