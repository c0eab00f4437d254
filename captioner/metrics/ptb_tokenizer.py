"""What Stanford's PTBTokenizer (-lowerCase -preserveLines) and coco-caption's punctuation filter
do to a caption, in pure Python: scores are then the same with and without Java, and no JVM starts
just to split words. tests/test_metrics.py checks it against the Java tokenizer where Java exists.
"""

from __future__ import annotations

import re

# coco-caption removes these tokens after tokenising. Its list also names -LRB- -RRB- -LCB- -RCB-,
# but in upper case while the tokens are lower case by then, so brackets survive as "-lrb-" etc.;
# we keep that quirk, or our scores would differ from coco-caption's on captions with brackets.
_DROPPED = frozenset({"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"})
_BRACKETS = {
    "(": " -lrb- ",
    ")": " -rrb- ",
    "[": " -lsb- ",
    "]": " -rsb- ",
    "{": " -lcb- ",
    "}": " -rcb- ",
}
_CLITICS = frozenset({"'s", "'re", "'ve", "'ll", "'d", "'m", "n't", "'t"})
_ABBREVIATIONS = frozenset(
    {
        "mr.",
        "mrs.",
        "ms.",
        "dr.",
        "st.",
        "jr.",
        "sr.",
        "prof.",
        "etc.",
        "vs.",
        "inc.",
        "ltd.",
        "co.",
        "corp.",
        "mt.",
        "ave.",
    }
)
_TAGS = frozenset(_BRACKETS[b].strip() for b in _BRACKETS)
_SPLIT_WORDS = {
    "cannot": "can not",
    "gonna": "gon na",
    "gotta": "got ta",
    "wanna": "wan na",
    "gimme": "gim me",
    "lemme": "lem me",
    "'tis": "'t is",
    "'twas": "'t was",
}

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
    if (
        len(token) > 1
        and token.endswith(".")
        and token not in _ABBREVIATIONS
        and "." not in token[:-1]
    ):
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
