"""English reference captions for a scene, written from its object names and boxes.

Each scene gets several different sentences in the style of COCO's references ("a lion to the
left of a green bus", "two pears on the grass"). Every sentence names every object, so a model
trained on them learns to mention all of them, and we record which token names which object
(its head noun), which lets tests and attention checks find the word for each box.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..vocab import SLOT, SLOT_PLURAL

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive

_NUMBERS = {2: "two", 3: "three"}
_RELATION_WORDS = {
    "left": "to the left of",
    "right": "to the right of",
    "above": "above",
    "below": "below",
}
_SLOT = re.compile(r"\{([A-C])(?:\.(\w+))?\}(,?)")


@dataclass(frozen=True)
class Group:
    """All copies of one kind of object in a scene; captions name them together ("two pears")."""

    name: str
    plural: str
    head: str
    head_plural: str
    boxes: tuple[Box, ...]
    objects: tuple[int, ...]  # indices of the copies in the scene's object list
    slot: bool = False  # training tokens name it with `<obj>`/`<objs>` (the classifier names it)

    @property
    def count(self) -> int:
        return len(self.objects)


@dataclass(frozen=True)
class Sentence:
    """A caption: lowercase word tokens, the display text, and (object index, token index) pairs."""

    tokens: tuple[str, ...]
    raw: str
    mentions: tuple[tuple[int, int], ...]


def indefinite_article(phrase: str) -> str:
    """Pick "a" or "an" by how the first word sounds, with the usual spelling exceptions."""
    word = phrase.split()[0].lower()
    if word.startswith(("uni", "use", "eu", "one")):
        return "a"
    if word.startswith(("hour", "honest", "heir")):
        return "an"
    return "an" if word[0] in "aeiou" else "a"


def _last_index(words: Sequence[str], word: str) -> int:
    return len(words) - 1 - list(reversed(words)).index(word)


def noun_phrase(group: Group, form: str, slot: bool = False) -> tuple[list[str], int | None]:
    """Words for a group in one grammatical form, and where its head noun is among them.

    Forms: "a" (a lion / two lions), "the" (the lion / the two lions), "bare" (lion / lions),
    "pl" (lions, for "a pair of lions"), "be" (is / are; names nothing). With `slot`, the name
    is the slot word `<obj>` / `<objs>` and the article "a" (the name, and so its article, is
    only known once the classifier has chosen it).
    """
    singular = group.count == 1
    name = group.name.split() if singular else group.plural.split()
    head = _last_index(name, group.head if singular else group.head_plural)
    if slot:
        name, head = [SLOT if singular else SLOT_PLURAL], 0
    if form == "be":
        return (["is"] if singular else ["are"]), None
    if form == "bare":
        return name, head
    if form == "pl":
        if slot:
            return [SLOT_PLURAL], 0
        plural = group.plural.split()
        return plural, _last_index(plural, group.head_plural)
    if form == "a":
        article = "a" if slot else indefinite_article(group.name)
        lead = [article] if singular else [_NUMBERS[group.count]]
    elif form == "the":
        lead = ["the"] if singular else ["the", _NUMBERS[group.count]]
    else:
        raise ValueError(f"unknown noun phrase form {form!r}")
    return lead + name, head + len(lead)


def box_relation(a: Box, b: Box) -> str | None:
    """Where box a is relative to box b: "left", "right", "above", "below", or None if tangled.

    The axis with the larger centre offset wins; the boxes must also be (almost) apart on it.
    """
    dx = (b[0] + b[2] - a[0] - a[2]) / 2
    dy = (b[1] + b[3] - a[1] - a[3]) / 2
    if abs(dx) >= abs(dy):
        gap = b[0] - a[2] if dx > 0 else a[0] - b[2]
        slack = 0.25 * min(a[2] - a[0], b[2] - b[0])
        if dx == 0 or gap < -slack:
            return None
        return "left" if dx > 0 else "right"
    gap = b[1] - a[3] if dy > 0 else a[1] - b[3]
    if gap < -0.25 * min(a[3] - a[1], b[3] - b[1]):
        return None
    return "above" if dy > 0 else "below"


def group_relation(a: Group, b: Group) -> str | None:
    """A relation that holds between every copy in a and every copy in b, else None."""
    found = {box_relation(x, y) for x in a.boxes for y in b.boxes}
    return found.pop() if len(found) == 1 else None


def position_phrases(box: Box, size: int) -> tuple[str, ...]:
    """Where in the picture a single object sits ("in the top left corner")."""
    cx, cy = (box[0] + box[2]) / (2 * size), (box[1] + box[3]) / (2 * size)
    h = "left" if cx < 0.35 else "right" if cx > 0.65 else None
    v = "top" if cy < 0.35 else "bottom" if cy > 0.65 else None
    if h and v:
        return (f"in the {v} {h} corner of the picture", f"in the {v} {h} corner")
    if h:
        return (f"on the {h} side of the picture", f"on the {h} side of the image")
    if v:
        return (f"at the {v} of the picture", f"near the {v} of the image")
    return ("in the middle of the picture", "in the center of the image")


def realise(template: str, slots: dict[str, int], groups: Sequence[Group]) -> Sentence:
    """Fill a template such as "{A} to the left of {B}" with the groups' words."""
    words: list[str] = []  # what the sentence says
    token_words: list[str] = []  # what a model learns to say: slot words for slot groups
    mentions: list[tuple[int, int]] = []
    for part in template.split():
        match = _SLOT.fullmatch(part)
        if match is None:
            words.append(part)
            token_words.append(part)
            continue
        letter, form, comma = match.groups()
        group = groups[slots[letter]]
        phrase, _ = noun_phrase(group, form or "a")
        said, head = noun_phrase(group, form or "a", slot=group.slot)
        if head is not None:
            mentions.extend((obj, len(token_words) + head) for obj in group.objects)
        words.extend(phrase)
        token_words.extend(said)
        if comma:
            words[-1] += ","
    raw = " ".join(words)
    tokens = tuple(w.rstrip(",").lower() for w in token_words)
    return Sentence(tokens, raw[0].upper() + raw[1:] + ".", tuple(sorted(mentions)))


Frame = tuple[float, str, str]  # (how typical, family, template)


def _generic_templates(places: Sequence[str]) -> list[Frame]:
    """Sentence frames around the list of everything in the scene (<L>), for any scene."""
    frames = [
        (3.0, "list", "<L>"),
        (2.0, "prefix", "a picture of <L>"),
        (1.5, "prefix", "a photo of <L>"),
        (1.0, "prefix", "an image of <L>"),
        (0.6, "prefix", "this is a picture of <L>"),
        (0.6, "prefix", "an image showing <L>"),
        (0.4, "prefix", "a view of <L>"),
        (1.0, "there", "there <be> <L> in the picture"),
        (0.6, "there", "there <be> <L>"),
    ]
    for place in places:
        share = 1.0 / len(places)
        frames += [
            (3.0 * share, "place", f"<L> {place}"),
            (0.8 * share, "place", f"there <be> <L> {place}"),
            (0.8 * share, "place", f"a picture of <L> {place}"),
        ]
    return frames


def _single_group_templates(group: Group, size: int) -> list[Frame]:
    if group.count == 1:
        frames = [
            (0.8, "prefix", "a close up of {A}"),
            (0.6, "single", "a single {A.bare}"),
            (0.5, "single", "{A} by itself"),
        ]
        for k, where in enumerate(position_phrases(group.boxes[0], size)):
            frames += [
                (1.5 / (k + 1), "position", f"{{A}} {where}"),
                (0.5 / (k + 1), "position", f"{{A.the}} is {where}"),
            ]
        return frames
    frames = []
    if group.count == 2:
        between = box_relation(group.boxes[0], group.boxes[1])
        if between in ("left", "right"):
            frames += [
                (1.2, "arrangement", "{A} side by side"),
                (1.2, "arrangement", "{A} next to each other"),
            ]
        elif between in ("above", "below"):
            frames += [(1.2, "arrangement", "{A} one above the other")]
        if not group.plural.startswith("pairs "):
            frames.append((0.8, "count", "a pair of {A.pl}"))
    else:
        frames += [(1.0, "count", "a group of {A}"), (0.6, "arrangement", "{A} together")]
    return frames


def _pair_templates(a: Group, b: Group, places: Sequence[str]) -> list[Frame]:
    frames = [(0.8, "with", "{A} with {B}"), (0.4, "with", "{A} near {B}")]
    rel = group_relation(a, b)
    if rel is not None:
        words = _RELATION_WORDS[rel]
        frames += [
            (3.5, "relation", f"{{A}} {words} {{B}}"),
            (0.8, "relation", f"{{A.the}} {{A.be}} {words} {{B.the}}"),
        ]
        frames += [
            (1.0 / len(places), "relation", f"{{A}} {words} {{B}} {place}") for place in places
        ]
    if rel in ("left", "right"):
        frames += [
            (1.5, "next", "{A} next to {B}"),
            (0.6, "next", "{A} beside {B}"),
            (0.6, "next", "{A} and {B} side by side"),
        ]
    return frames


def _triple_templates(a: Group, b: Group, c: Group) -> list[Frame]:
    frames = [(0.6, "with", "{A} with {B} and {C}")]
    ab, ac, bc = group_relation(a, b), group_relation(a, c), group_relation(b, c)
    if ab is not None and ab == ac:
        frames.append((2.0, "relation", f"{{A}} {_RELATION_WORDS[ab]} {{B}} and {{C}}"))
    if ab == "left" and bc == "left":
        frames += [
            (1.5, "arrangement", "from left to right <L>"),
            (0.8, "arrangement", "<L> in a row"),
        ]
    if ab == "above" and bc == "above":
        frames.append((1.2, "arrangement", "from top to bottom <L>"))
    if ac in ("left", "right") and bc in ("left", "right"):
        frames.append((0.8, "next", "{A} and {B} next to {C}"))
    return frames


def _reading_order(groups: Sequence[Group]) -> tuple[int, ...]:
    """Left to right by each group's leftmost copy: the order people tend to list things in."""
    return tuple(sorted(range(len(groups)), key=lambda g: min(box[0] for box in groups[g].boxes)))


def candidate_sentences(
    groups: Sequence[Group], size: int, places: Sequence[str] = ()
) -> list[tuple[float, str, Sentence]]:
    """Every distinct sentence we could write for the scene, with how typical it is and its family."""
    if not 1 <= len(groups) <= 3:
        raise ValueError(f"scenes have 1 to 3 kinds of object, got {len(groups)}")
    letters = "ABC"[: len(groups)]
    list_frame = {1: "{A}", 2: "{A} and {B}", 3: "{A}, {B} and {C}"}[len(groups)]
    primary = _reading_order(groups)
    best: dict[tuple[str, ...], tuple[float, str, Sentence]] = {}
    for order in itertools.permutations(range(len(groups))):
        slots = dict(zip(letters, order))
        ordered = [groups[g] for g in order]
        frames = _generic_templates(places)
        if len(groups) == 1:
            frames += _single_group_templates(ordered[0], size)
        elif len(groups) == 2:
            frames += _pair_templates(ordered[0], ordered[1], places)
        else:
            frames += _triple_templates(*ordered)
        factor = 1.0 if order == primary else 0.6 / (len(groups) - 1)
        for weight, family, frame in frames:
            template = frame.replace("<L>", list_frame).replace("<be>", "{A.be}")
            sentence = realise(template, slots, groups)
            if sentence.tokens not in best or best[sentence.tokens][0] < weight * factor:
                best[sentence.tokens] = (weight * factor, family, sentence)
    return list(best.values())


def describe(
    groups: Sequence[Group],
    size: int,
    rng: np.random.Generator,
    places: Sequence[str] = (),
    count: int = 5,
    repeat_penalty: float = 0.3,
) -> list[Sentence]:
    """`count` different captions, drawn one by one by typicality, so common phrasings tend to
    come first; each pick makes its family ("a picture of ...") less likely, for variety."""
    candidates = candidate_sentences(groups, size, places)
    if len(candidates) < count:
        raise ValueError(f"only {len(candidates)} distinct captions for this scene, need {count}")
    weights = np.array([w for w, _, _ in candidates], dtype=np.float64)
    picked = []
    for _ in range(count):
        k = int(rng.choice(len(candidates), p=weights / weights.sum()))
        picked.append(candidates[k][2])
        family = candidates[k][1]
        for j, (_, other, _) in enumerate(candidates):
            if other == family:
                weights[j] *= repeat_penalty
        weights[k] = 0.0
    return picked
