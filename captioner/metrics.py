"""How good the captions are: the paper's text metrics, and whether attention lands on the objects named.

Text metrics are coco-caption's own scorers (`pycocoevalcap`): BLEU-1..4, METEOR, ROUGE-L and CIDEr
(CIDEr-D), the code behind the numbers in "Show, Attend and Tell" and later papers.

coco-caption first runs Stanford's PTBTokenizer (Java) over every caption and drops punctuation
tokens. Here `ptb_tokenize`, a pure-Python copy of what that step does to captions, is used instead,
always: scores are then the same with and without Java, and no JVM starts just to split words.
Only METEOR needs Java (it is a Java program); without it METEOR is reported as missing.

Grounding measures, for data whose images list their `objects` (name, head word, words, box), ask
whether the model looks at the thing when it says its name (pointing accuracy, against the chance
level of a random peak) and whether it names the things that are there (object precision/recall).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping, Sequence

import numpy as np

from .attention_viz import upsample_attention

TEXT_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")

# ---------------------------------------------------------------------------------------------
# Tokenisation: what PTBTokenizer -lowerCase -preserveLines + coco-caption's punctuation filter do
# ---------------------------------------------------------------------------------------------

# coco-caption removes these tokens after tokenising. Its list also names -LRB- -RRB- -LCB- -RCB-,
# but in upper case while the tokens are lower case by then, so brackets survive as "-lrb-" etc.;
# we keep that quirk, or our scores would differ from coco-caption's on captions with brackets.
_DROPPED = frozenset({"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"})
_BRACKETS = {"(": " -lrb- ", ")": " -rrb- ", "[": " -lsb- ", "]": " -rsb- ",
             "{": " -lcb- ", "}": " -rcb- "}
_CLITICS = frozenset({"'s", "'re", "'ve", "'ll", "'d", "'m", "n't", "'t"})
_ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "prof.", "etc.",
                            "vs.", "inc.", "ltd.", "co.", "corp.", "mt.", "ave."})
_TAGS = frozenset(_BRACKETS[b].strip() for b in _BRACKETS)
_SPLIT_WORDS = {"cannot": "can not", "gonna": "gon na", "gotta": "got ta", "wanna": "wan na",
                "gimme": "gim me", "lemme": "lem me", "'tis": "'t is", "'twas": "'t was"}

_SUBS = [
    (re.compile(r'["`]'), " "),  # quotes become `` or '', which are dropped
    (re.compile(r"[()\[\]{}]"), lambda m: _BRACKETS[m.group()]),
    (re.compile(r"\.\.\.+"), " ... "),
    (re.compile(r"--+"), " -- "),
    (re.compile(r"[?!]+"), lambda m: f" {m.group()} "),  # "!!!" stays a token, as in PTB
    (re.compile(r"[;#$%]"), lambda m: f" {m.group()} "),
    (re.compile(r",(?!\d)|(?<!\d),"), " , "),  # but 1,000 stays one token
    (re.compile(r":(?!\d)|(?<!\d):"), " : "),  # but 5:30 stays one token
    (re.compile(r"(?<=\w)(n't)\b"), r" \1"),  # don't -> do n't, can't -> ca n't
    (re.compile(r"(?<=\w)('(?:s|re|ve|ll|d|m))\b"), r" \1"),  # man's -> man 's
]


def _split_token(token: str) -> list[str]:
    """Quotes and dashes at a word's edges and a final period come off; clitics stay whole."""
    token = _SPLIT_WORDS.get(token, token)
    if " " in token:
        return token.split()
    if token in _CLITICS or token in _DROPPED or token in _TAGS:
        return [token]
    out_tail: list[str] = []
    token = token.strip("-") or token  # a dash at a word's edge goes, one inside stays (t-shirt)
    while len(token) > 1 and token.startswith("'") and token not in _CLITICS:
        token = token[1:]
    while len(token) > 1 and token.endswith("'"):
        token = token[:-1]
    if (len(token) > 1 and token.endswith(".") and token not in _ABBREVIATIONS
            and "." not in token[:-1]):
        token, out_tail = token[:-1], ["."]
    return [token, *out_tail]


def ptb_tokenize(text: str) -> str:
    """Lower-cased, punctuation-free, space-joined tokens, as coco-caption scores them.

    Mirrors Stanford PTBTokenizer for captions: clitics split ("man 's", "do n't"), hyphenated
    words, numbers like 3.5, 5:30, 1,000 and abbreviations like "p.m." kept whole, then the tokens
    coco-caption treats as punctuation dropped. Running it twice changes nothing.
    """
    text = " ".join(text.lower().split())
    for pattern, repl in _SUBS:
        text = pattern.sub(repl, text)
    tokens = [piece for token in text.split() for piece in _split_token(token)]
    return " ".join(t for t in tokens if t not in _DROPPED)


# ---------------------------------------------------------------------------------------------
# Text metrics
# ---------------------------------------------------------------------------------------------

def _tokenized(references: Mapping[Hashable, Sequence[str]],
               hypotheses: Mapping[Hashable, str]) -> tuple[dict, dict]:
    """pycocoevalcap's input form: {id: [refs...]} and {id: [hypothesis]}, same ids in both."""
    if not hypotheses:
        raise ValueError("no captions to score")
    missing = [i for i in hypotheses if not references.get(i)]
    if missing:
        raise ValueError(f"{len(missing)} captions have no reference sentences, e.g. id {missing[0]!r}")
    gts = {i: [ptb_tokenize(r) for r in references[i]] for i in hypotheses}
    res = {i: [ptb_tokenize(h)] for i, h in hypotheses.items()}
    return gts, res


def bleu4(references: Mapping[Hashable, Sequence[str]], hypotheses: Mapping[Hashable, str]) -> float:
    """Corpus BLEU-4 alone: cheap enough to pick the best epoch during training."""
    from pycocoevalcap.bleu.bleu import Bleu

    gts, res = _tokenized(references, hypotheses)
    scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return float(scores[3])


def caption_scores(references: Mapping[Hashable, Sequence[str]], hypotheses: Mapping[Hashable, str],
                   meteor: bool = True, meteor_timeout: float | None = None) -> dict:
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


def _meteor_class():
    """pycocoevalcap's METEOR client, made safe to give up on.

    Its `__del__` takes a lock that `compute_score` never releases when Java dies or we stop it,
    which would hang the interpreter at garbage collection; here closing is explicit instead.
    """
    from pycocoevalcap.meteor.meteor import Meteor

    class SafeMeteor(Meteor):
        def close(self) -> str:
            """Stop Java; returns the last line it wrote to stderr (why it failed, if it did)."""
            proc = self.meteor_p
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            err = ""
            try:  # without blocking: a child of java could still hold the pipe open
                os.set_blocking(proc.stderr.fileno(), False)
                err = (proc.stderr.read() or b"").decode(errors="replace").strip()
            except (OSError, ValueError):
                pass
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
            return err.splitlines()[-1] if err else ""

        def __del__(self) -> None:
            pass

    return SafeMeteor


def meteor_score(gts: Mapping[Hashable, list[str]], res: Mapping[Hashable, list[str]],
                 timeout: float | None = None) -> tuple[float | None, str | None]:
    """(METEOR, None), or (None, why not) when Java is missing, fails, or takes longer than `timeout`.

    Inputs are already tokenised, in pycocoevalcap's form. Java loads METEOR's paraphrase table
    first, which takes 10-20 s; the default timeout allows for that and for 50 images a second.
    """
    if shutil.which("java") is None:
        return None, "java not found"
    if timeout is None:
        timeout = 120.0 + len(res) / 50.0
    # The wire format separates fields with "|||": keep it out of the sentences.
    gts = {i: [r.replace("|", " ") for r in refs] for i, refs in gts.items()}
    res = {i: [h.replace("|", " ") for h in hyp] for i, hyp in res.items()}
    try:
        scorer = _meteor_class()()
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"cannot start java ({e})"
    result: dict = {}

    def work() -> None:
        try:
            result["score"] = float(scorer.compute_score(gts, res)[0])
        except Exception as e:  # noqa: BLE001 - Java died or answered nonsense: report, don't crash
            result["error"] = e

    worker = threading.Thread(target=work, name="meteor", daemon=True)
    worker.start()
    worker.join(timeout)
    timed_out = worker.is_alive()
    stderr = scorer.close()  # also unblocks a worker waiting on Java's output
    worker.join(5.0)
    if timed_out:
        return None, f"no answer from java -jar meteor-1.5.jar within {timeout:.0f} s"
    if "score" in result:
        return result["score"], None
    detail = stderr or f"{type(result.get('error')).__name__}: {result.get('error')}"
    return None, f"java -jar meteor-1.5.jar failed ({detail[:200]})"


# ---------------------------------------------------------------------------------------------
# Grounding: does the model look at what it names, and name what is there?
# ---------------------------------------------------------------------------------------------

@dataclass
class GroundingSample:
    """One captioned image as the grounding measures see it."""
    words: Sequence[str]
    alphas: np.ndarray | None  # (len(words), 14, 14); only pointing needs it
    size: tuple[int, int] | None  # (width, height) of the image file, the pixels boxes are in
    objects: Sequence[Mapping]  # {"head": "bus", "words": ["bus", "buses"], "box": [x0, y0, x1, y1]}


def object_vocabulary(objects_per_image: Iterable[Sequence[Mapping]]) -> set[str]:
    """Every word that names some object somewhere in the data set: the words grounding checks."""
    return {w for objects in objects_per_image for obj in objects for w in obj["words"]}


def _box_mask(boxes: Sequence[Sequence[float]], size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies in any box; x1, y1 are exclusive pixel edges."""
    width, height = size
    xs = np.arange(width) + 0.5  # (W,)
    ys = np.arange(height) + 0.5  # (H,)
    mask = np.zeros((height, width), dtype=bool)  # (H, W)
    for x0, y0, x1, y1 in boxes:
        mask |= ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]  # (H, W)
    return mask


def attention_peak(alpha: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    """(x, y) pixel where the smoothed, image-sized attention map is highest."""
    heat = upsample_attention(alpha, size)  # (H, W)
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(x), int(y)


def pointing_accuracy(samples: Sequence[GroundingSample], vocabulary: set[str] | None = None) -> dict:
    """How often the attention peak of an object word falls in the box of an object it names.

    Counted over generated words that are object words (in `vocabulary`, default: all objects'
    words in `samples`) AND name an object of their own image: a word naming an absent object
    has no box to hit, and is counted against `object_precision` instead. The peak is the argmax
    of `upsample_attention` at the image's own size; a hit is a peak in any box of the image's
    objects whose words contain the word. `pointing_chance` is what a uniformly random peak
    would score on the same words: the mean share of the image those boxes cover.
    Accuracy and chance are None when no word qualifies.
    """
    if vocabulary is None:
        vocabulary = object_vocabulary(s.objects for s in samples)
    n_object_words = hits = 0
    chances: list[float] = []
    for s in samples:
        for t, word in enumerate(s.words):
            if word not in vocabulary:
                continue
            n_object_words += 1
            boxes = [obj["box"] for obj in s.objects if word in obj["words"]]
            if not boxes:
                continue
            if s.alphas is None or s.size is None or t >= len(s.alphas):
                raise ValueError("pointing needs an attention map per word and the image size")
            mask = _box_mask(boxes, s.size)  # (H, W)
            x, y = attention_peak(s.alphas[t], s.size)
            hits += bool(mask[y, x])
            chances.append(float(mask.mean()))
    pointed = len(chances)
    return {"pointing_accuracy": hits / pointed if pointed else None,
            "pointing_chance": float(np.mean(chances)) if pointed else None,
            "counts": {"object_words": n_object_words, "pointed_words": pointed, "pointing_hits": hits}}


def object_mentions(samples: Sequence[GroundingSample], vocabulary: set[str] | None = None) -> dict:
    """Whether captions name the objects that are there, and only those.

    Precision: the share of generated object words (in `vocabulary`) that name an object of their
    image, each occurrence counted. Recall: the share of images' objects, one per distinct head
    word ("two buses" mention both buses), that the caption names with one of their words.
    """
    if vocabulary is None:
        vocabulary = object_vocabulary(s.objects for s in samples)
    n_words = n_correct = n_objects = n_mentioned = 0
    for s in samples:
        present = {w for obj in s.objects for w in obj["words"]}
        said = set(s.words)
        for word in s.words:
            if word in vocabulary:
                n_words += 1
                n_correct += word in present
        heads: dict[str, set[str]] = {}
        for obj in s.objects:
            heads.setdefault(obj["head"], set()).update(obj["words"])
        n_objects += len(heads)
        n_mentioned += sum(bool(words & said) for words in heads.values())
    return {"object_precision": n_correct / n_words if n_words else None,
            "object_recall": n_mentioned / n_objects if n_objects else None,
            "counts": {"object_words": n_words, "object_words_correct": n_correct,
                       "objects": n_objects, "objects_mentioned": n_mentioned}}


def grounding_scores(samples: Sequence[GroundingSample], vocabulary: set[str] | None = None) -> dict:
    """Pointing accuracy and chance, object precision and recall, with their counts merged."""
    if vocabulary is None:
        vocabulary = object_vocabulary(s.objects for s in samples)
    pointing = pointing_accuracy(samples, vocabulary)
    mentions = object_mentions(samples, vocabulary)
    counts = {**pointing.pop("counts"), **mentions.pop("counts")}
    return {**pointing, **mentions, "counts": counts}
