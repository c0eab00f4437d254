"""The paper's text metrics: coco-caption's own scorers (`pycocoevalcap`) for BLEU-1..4, METEOR,
ROUGE-L and CIDEr (CIDEr-D), the code behind the numbers in "Show, Attend and Tell" and later
papers, over captions tokenised as coco-caption does (`ptb_tokenizer`). Only METEOR needs Java (it
is a Java program); without it METEOR is reported as missing.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from .meteor import meteor_score
from .ptb_tokenizer import ptb_tokenize

TEXT_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def _tokenized(
    references: Mapping[Hashable, Sequence[str]], hypotheses: Mapping[Hashable, str]
) -> tuple[dict, dict]:
    """pycocoevalcap's input form: {id: [refs...]} and {id: [hypothesis]}, same ids in both."""
    if not hypotheses:
        raise ValueError("no captions to score")
    missing = [i for i in hypotheses if not references.get(i)]
    if missing:
        raise ValueError(
            f"{len(missing)} captions have no reference sentences, e.g. id {missing[0]!r}"
        )
    gts = {i: [ptb_tokenize(r) for r in references[i]] for i in hypotheses}
    res = {i: [ptb_tokenize(h)] for i, h in hypotheses.items()}
    return gts, res


def bleu4(
    references: Mapping[Hashable, Sequence[str]], hypotheses: Mapping[Hashable, str]
) -> float:
    """Corpus BLEU-4 alone: cheap enough to pick the best epoch during training."""
    from pycocoevalcap.bleu.bleu import Bleu

    gts, res = _tokenized(references, hypotheses)
    scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return float(scores[3])


def caption_scores(
    references: Mapping[Hashable, Sequence[str]],
    hypotheses: Mapping[Hashable, str],
    meteor: bool = True,
    meteor_timeout: float | None = None,
) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of one caption per id against its reference sentences.

    Scores are fractions (papers print them x100). A metric that cannot be computed is None, and
    `missing` says why ("METEOR: java not found"). CIDEr's n-gram weights come from the references
    of the ids given, so it is only meaningful over a whole test split, and 0 for a single image.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = _tokenized(references, hypotheses)
    out: dict = dict.fromkeys(TEXT_METRICS)
    out["missing"] = []
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, value in enumerate(bleu, start=1):
        out[f"BLEU-{n}"] = float(value)
    out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    out["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if meteor:
        out["METEOR"], why = meteor_score(gts, res, timeout=meteor_timeout)
        if why:
            out["missing"].append(f"METEOR: {why}")
    else:
        out["missing"].append("METEOR: not asked for")
    return out
