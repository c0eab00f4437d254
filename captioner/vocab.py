"""Word <-> index mapping with the four special tokens the decoder relies on."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
# Slot words: "an object comes here" (singular / plural); the encoder's ImageNet classifier
# names it from that step's attention (see `names.py`). Ordinary words of a vocabulary.
SLOT, SLOT_PLURAL = "<obj>", "<objs>"
SLOTS = (SLOT, SLOT_PLURAL)

_TOKEN_RE = re.compile(r"<objs?>|[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lowercase word tokens without punctuation, as in the Karpathy split files."""
    return _TOKEN_RE.findall(text.lower())


class Vocabulary:
    """Index 0 is always `<pad>`, so padded caption tensors can be masked by `!= 0`."""

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {list(SPECIALS)}, got {words[:4]}")
        if len(set(words)) != len(words):
            raise ValueError("a vocabulary must not list a word twice")
        self.itos = words
        self.stoi = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, captions: Iterable[Sequence[str]], min_freq: int = 1) -> Vocabulary:
        """Words seen at least `min_freq` times, most frequent first (ties alphabetical)."""
        counts = Counter(w for tokens in captions for w in tokens)
        kept = sorted(
            (w for w, n in counts.items() if n >= min_freq and w not in SPECIALS),
            key=lambda w: (-counts[w], w),
        )
        return cls([*SPECIALS, *kept])

    def extended(self, words: Iterable[str]) -> Vocabulary:
        """This vocabulary with `words` it lacks appended: old indices keep their meaning."""
        return Vocabulary([*self.itos, *(w for w in dict.fromkeys(words) if w not in self.stoi)])

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    @property
    def pad(self) -> int:
        return self.stoi[PAD]

    @property
    def start(self) -> int:
        return self.stoi[START]

    @property
    def end(self) -> int:
        return self.stoi[END]

    @property
    def unk(self) -> int:
        return self.stoi[UNK]

    def encode(self, tokens: Sequence[str], max_len: int | None = None) -> list[int]:
        """`<start> w1 .. wn <end>` as indices, unknown words as `<unk>`; truncated to `max_len` words."""
        if max_len is not None:
            tokens = tokens[:max_len]
        return [self.start, *(self.stoi.get(w, self.unk) for w in tokens), self.end]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words up to the first `<end>`, dropping `<start>` and `<pad>`."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.end:
                break
            if i in (self.start, self.pad):
                continue
            words.append(self.itos[i])
        return words

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"itos": self.itos}, indent=0) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            words = data["itos"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a vocabulary file ({e})") from None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError(f"{path}: 'itos' must be a list of strings")
        try:
            return cls(words)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
