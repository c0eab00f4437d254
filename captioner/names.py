"""Open-vocabulary object words: the encoder's ImageNet classifier names what the attention looked at.

A decoder trained with the slot tokens `<obj>` / `<objs>` says *that* an object comes and looks
at it; the word itself is chosen here, by the encoder's own ImageNet head applied to that step's
attended context sum_i alpha_i a_i (a class-activation read-out of exactly where it looked, as in
novel-object captioning: Neural Baby Talk, Lu et al. 2018; DNOC, Wu et al. 2018). So the map shown
for an object word is literally the evidence for it. The 1000 classes become readable words
through a hand-curated table (`data/imagenet_names.tsv`): fine-grained classes share a basic-level
name ("tabby", "Egyptian cat" -> "cat"), whose probability is the sum of theirs.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from .vocab import SLOT_PLURAL, SLOTS


@dataclass(frozen=True)
class NameChoice:
    """One candidate name for an object word, with the classifier's probability for it."""

    name: str  # basic-level name: "dog"
    probability: float  # summed over the ImageNet classes with this name
    detail: str  # the most probable of those classes, readable: "golden retriever"

    def to_dict(self) -> dict:
        return {"name": self.name, "probability": round(self.probability, 4), "detail": self.detail}


class ImageNetNames:
    """The 1000 ImageNet classes as caption words: name, plural, article, detail, kind per class."""

    def __init__(self, rows: Sequence[dict]):
        if len(rows) != 1000:
            raise ValueError(f"the ImageNet name table needs 1000 rows, got {len(rows)}")
        self.details = [r["detail"] for r in rows]
        self.names: list[str] = []  # distinct basic-level names, in order of first class
        self.plural: dict[str, str] = {}
        self.article: dict[str, str] = {}
        self.kind: dict[str, str] = {}
        self.group: dict[
            str, str
        ] = {}  # the everyday category it is a kind of ("goldfish" -> "fish")
        ids = []
        for r in rows:
            name = r["name"]
            if name not in self.plural:
                self.names.append(name)
                self.plural[name], self.article[name], self.kind[name] = (
                    r["plural"],
                    r["article"],
                    r["kind"],
                )
                self.group[name] = r.get("group") or name
            ids.append(self.names.index(name))
        self.class_to_name = torch.tensor(ids, dtype=torch.long)  # (1000,)
        self.words = set(self.names) | set(self.plural.values())  # every word a slot can become
        self.singular = {p: n for n, p in self.plural.items()}

    @classmethod
    def load(cls, path: str | Path | None = None) -> ImageNetNames:
        path = Path(path) if path else Path(__file__).parent / "data" / "imagenet_names.tsv"
        with open(path, encoding="utf-8", newline="") as f:
            return cls(list(csv.DictReader(f, delimiter="\t")))

    def name_probs(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (N, 1000) -> name probabilities (N, names) and class probabilities (N, 1000)."""
        probs = torch.softmax(logits.float(), dim=-1)  # (N, 1000)
        out = probs.new_zeros(probs.size(0), len(self.names))  # (N, names)
        out.index_add_(1, self.class_to_name.to(probs.device), probs)
        return out, probs

    def choices(
        self, name_probs: torch.Tensor, class_probs: torch.Tensor, k: int = 3
    ) -> list[NameChoice]:
        """The k most probable names of one slot (name_probs (names,), class_probs (1000,))."""
        top = name_probs.topk(k)
        result = []
        for p, n in zip(top.values.tolist(), top.indices.tolist()):
            members = (self.class_to_name.to(class_probs.device) == n).nonzero().view(-1)  # (m,)
            best = int(members[class_probs[members].argmax()])
            result.append(NameChoice(self.names[n], float(p), self.details[best]))
        return result


@lru_cache(maxsize=1)
def imagenet_names() -> ImageNetNames:
    """The shipped table, read once per process."""
    return ImageNetNames.load()


LEADS = ("a", "an", "two", "three")  # what begins a listed thing: "a X", "two Ys"
NUMBERS_AND_ARTICLES = (*LEADS, "the")
CONNECTORS = ("and", "with", "near")
MIN_OTHER = 0.3  # a name other than the classifier's first must be at least this probable


def fill_slots(
    words: Sequence[str], choices: Sequence[Sequence[NameChoice]], names: ImageNetNames
) -> tuple[list[str], list[bool]]:
    """Words with each slot replaced by a name from its `choices` (one list per slot, in order),
    and which of the input words are kept.

    `<objs>` takes the plural; an "a"/"an" just before a slot takes the name's article. A caption
    does not name one thing twice ("a cat and a cat", "a cup of coffee and a cup"): when a slot's
    first name shares a word with a name taken earlier, the decoder announced another object where
    the classifier sees the same one again. The next name serves if the classifier gives it at
    least `MIN_OTHER`; otherwise the slot's phrase is left out where the sentence allows it ("a
    ski [and a dog]"), else the next name serves anyway.
    """
    out = list(words)
    keep = [True] * len(out)
    used: set[str] = set()  # the content words of the names taken so far
    slot_index = 0
    for t, word in enumerate(out):
        if word not in SLOTS:
            continue
        options = choices[slot_index]
        slot_index += 1
        fresh = [c for c in options if not _content_words(c.name) & used]
        pick = options[0] if not used & _content_words(options[0].name) else None
        if pick is None:
            drop = (
                _droppable(out, keep, t)
                if not (fresh and fresh[0].probability >= MIN_OTHER)
                else None
            )
            if (
                drop is not None
                and out[drop[0]] == "and"
                and _items_before(out, keep, drop[0]) >= 2
            ):
                drop = None  # "a X a Y [and a Z]" would lose its "and": name Z instead
            if drop is not None:
                for i in drop:
                    keep[i] = False
                continue
            pick = fresh[0] if fresh else options[0]
        used |= _content_words(pick.name)
        if word == SLOT_PLURAL:
            out[t] = names.plural[pick.name]
        else:
            out[t] = pick.name
            if t > 0 and out[t - 1] in ("a", "an"):
                out[t - 1] = names.article[pick.name]
    return [w for w, k in zip(out, keep) if k], keep


def fix_articles(words: Sequence[str]) -> list[str]:
    """ "a"/"an" as the next word sounds ("an otter", "a rat"): the decoder learned its articles
    from captions whose slot words all take "a", so its own "an" can land before a consonant."""
    from .scenes.phrasing import indefinite_article

    out = list(words)
    for t in range(len(out) - 1):
        if out[t] in ("a", "an"):
            out[t] = indefinite_article(out[t + 1])
    return out


FRAME_WORDS = ("picture", "photo", "image", "close", "view", "pair", "group", "single")


def _items_before(words: Sequence[str], keep: Sequence[bool], end: int) -> int:
    """How many listed things ("a X", "two Ys") the kept words before `end` hold."""
    return sum(
        1
        for k in range(end)
        if keep[k] and words[k] in LEADS and k + 1 < len(words) and words[k + 1] not in FRAME_WORDS
    )


def _droppable(words: Sequence[str], keep: Sequence[bool], t: int) -> list[int] | None:
    """The positions to leave out with the slot at t so that the sentence still reads, or None.

    "X and a <obj>" / "X with a <obj>": the connector, the article and the slot; "a <obj> and Y"
    in a list ("a ski a dog and a shuttle"): the article and the slot.
    """
    start = t - 1 if t > 0 and words[t - 1] in NUMBERS_AND_ARTICLES else t
    before = start - 1
    while before >= 0 and not keep[before]:
        before -= 1
    if before >= 0 and words[before] in CONNECTORS and before > 0:
        return list(range(before, t + 1))
    after = t + 1
    if after < len(words) and words[after] == "and" and before >= 0 and start < t:
        return list(range(start, t + 1))
    return None


def _content_words(name: str) -> set[str]:
    return set(name.split()) - {"of", "a", "an", "the", "and"}


@torch.no_grad()
def name_slots(
    encoder,
    names: ImageNetNames,
    alphas: Sequence[torch.Tensor],
    features: torch.Tensor,
    slot_steps: Sequence[Sequence[int]],
    k: int = 3,
) -> list[list[list[NameChoice]]]:
    """For each caption b, the top-k names at each of its slot steps.

    `alphas[b]` (T_b, P) is caption b's attention, `features` (B, P, E) its image's annotation
    vectors, `slot_steps[b]` the steps whose word is a slot. All slots of the batch are
    classified in one call: contexts (S, E) -> logits (S, 1000).
    """
    contexts, owners = [], []
    for b, steps in enumerate(slot_steps):
        if steps:
            a = alphas[b][list(steps)].to(features.device, features.dtype)  # (s, P)
            contexts.append(a @ features[b])  # (s, E)
            owners += [b] * len(steps)
    result: list[list[list[NameChoice]]] = [[] for _ in slot_steps]
    if not contexts:
        return result
    name_p, class_p = names.name_probs(
        encoder.classify(torch.cat(contexts))
    )  # (S, names), (S, 1000)
    for s, b in enumerate(owners):
        result[b].append(names.choices(name_p[s], class_p[s], k))
    return result
