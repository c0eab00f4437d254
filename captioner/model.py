"""`Captioner`: encoder + decoder + vocabulary behind one call, `caption(images)`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .beam import beam_search
from .checkpoint import (
    WEIGHTS,
    CheckpointData,
    CheckpointError,
    is_checkpoint,
    load_checkpoint,
    load_state_checked,
    save_checkpoint,
)
from .decoder import Decoder, DecoderConfig
from .encoders import GRID, Encoder
from .images import ImageInput, load_image
from .names import NameChoice, fill_slots, fix_articles, imagenet_names, name_slots
from .packed import InferenceDecoder
from .vocab import SLOTS, Vocabulary


@dataclass
class Caption:
    """A generated caption with the attention behind each word.

    `sources[t]` says where word t came from: "decoder" (the language model's vocabulary) or
    "classifier" (an object slot named by the encoder's ImageNet head on that step's attended
    context; `names[t]` then holds its top 3 names with probabilities, else it is empty).
    A classifier word may be several words long ("cup of coffee"): one entry per attention map.
    """

    words: list[str]
    alphas: np.ndarray  # (len(words), 14, 14), each map sums to 1
    score: float  # the beam's ranking score (log-probability unless length-normalised)
    image: object = None  # the RGB PIL image that was captioned, for drawing the attention
    sources: list[str] | None = None  # None: every word from the decoder
    names: list[list[NameChoice]] | None = None
    # hard attention: each word's chosen grid cell (row * 14 + column), the most likely one of
    # its attention; with `hard_decoding="argmax"` the word was made from that cell's vector
    # alone, with "expected" from the attention-weighted mean. `alphas` stays the distribution.
    # None: soft attention.
    cells: list[int] | None = None

    def __post_init__(self) -> None:
        if self.sources is None:
            self.sources = ["decoder"] * len(self.words)
        if self.names is None:
            self.names = [[] for _ in self.words]

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def to_dict(self) -> dict:
        """JSON-friendly form: words, text, score, word sources, names and the attention."""
        return {
            "caption": self.text,
            "words": self.words,
            "score": self.score,
            "sources": self.sources,
            "names": [[c.to_dict() for c in choices] for choices in self.names],
            "alphas": np.round(self.alphas, 5).tolist(),
            **({} if self.cells is None else {"cells": self.cells}),
        }


def default_checkpoint_dir() -> Path:
    """Where the default model is: `$CAPTIONER_CHECKPOINT` if set; else `checkpoints/default`
    of the repository this package runs from (a checkout, or an editable install); else the
    copy inside an installed package (`pip install .` puts it in `captioner/checkpoints/`)."""
    env = os.environ.get("CAPTIONER_CHECKPOINT")
    if env:
        return Path(env)
    package = Path(__file__).resolve().parent
    checkout = package.parent / "checkpoints" / "default"
    installed = package / "checkpoints" / "default"
    return installed if not is_checkpoint(checkout) and is_checkpoint(installed) else checkout


class Captioner:
    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        vocab: Vocabulary,
        max_len: int = 20,
        no_repeat_ngram: int = 0,
    ):
        if decoder.config.vocab_size != len(vocab):
            raise ValueError(
                f"decoder has {decoder.config.vocab_size} outputs, vocabulary {len(vocab)} words"
            )
        if decoder.config.encoder_dim != encoder.spec.channels:
            raise ValueError(
                f"decoder expects {decoder.config.encoder_dim} channels, "
                f"{encoder.name} gives {encoder.spec.channels}"
            )
        self.encoder = encoder.eval()
        self.decoder = decoder.eval()
        self.vocab = vocab
        self.max_len = max_len  # decoding defaults, saved with the model
        self.no_repeat_ngram = no_repeat_ngram
        self.extra: dict = {}
        self._packed = InferenceDecoder()  # the decoder's packed copy for CPU beam search

    @classmethod
    def create(
        cls,
        encoder_name: str,
        vocab: Vocabulary,
        pretrained: bool = True,
        encoder_weights: str | None = None,
        fine_tune: bool = False,
        max_len: int = 20,
        no_repeat_ngram: int = 0,
        **decoder_kwargs: Any,
    ) -> Captioner:
        """A new, untrained decoder on top of a (pretrained) encoder."""
        encoder = Encoder(
            encoder_name, pretrained=pretrained, weights_path=encoder_weights, fine_tune=fine_tune
        )
        config = DecoderConfig(
            vocab_size=len(vocab), encoder_dim=encoder.spec.channels, **decoder_kwargs
        )
        return cls(
            encoder, Decoder(config), vocab, max_len=max_len, no_repeat_ngram=no_repeat_ngram
        )

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        encoder_weights: str | None = None,
        pretrained_encoder: bool = True,
        encoder_runtime: str = "torch",
        hard_decoding: str | None = None,
    ) -> Captioner:
        """Load a checkpoint folder (default: `default_checkpoint_dir()`).

        Encoder weights come from the checkpoint where it was fine-tuned, else from the encoder's
        pretrained source or `encoder_weights`. `encoder_runtime="onnxruntime"` runs the encoder
        with ONNX Runtime on a CPU (faster; optional package; see `Encoder.set_runtime`).
        `hard_decoding` ("argmax" or "expected"): a hard-attention model's context when
        captioning, instead of the checkpoint's setting (soft models have no such choice).
        """
        if path is None:
            path = default_checkpoint_dir()
            if not Path(path).is_dir():
                raise CheckpointError(
                    f"no default model at {path}; train one (see README, 'The default model') "
                    f"or name a checkpoint folder"
                )
        path = Path(path)
        data = load_checkpoint(path)
        encoder = Encoder(
            data.encoder,
            pretrained=pretrained_encoder and not data.fine_tune,
            weights_path=encoder_weights,
            fine_tune=data.fine_tune,
        )
        if hard_decoding is not None:
            data.decoder_config = dataclasses.replace(
                data.decoder_config, hard_decoding=hard_decoding
            )  # checked: an unknown rule is a ValueError
        decoder = Decoder(data.decoder_config)
        load_state_checked(decoder, data.decoder_state, path / WEIGHTS)
        if data.encoder_state:
            load_state_checked(encoder, data.encoder_state, path / WEIGHTS, strict=False)
        encoder.set_runtime(encoder_runtime)  # after its weights are final: they are exported
        model = cls(
            encoder, decoder, data.vocab, max_len=data.max_len, no_repeat_ngram=data.no_repeat_ngram
        )
        model.extra = data.extra
        return model

    def add_words(
        self, words: Sequence[str], like: dict[str, Sequence[str]] | None = None
    ) -> list[str]:
        """Append the `words` the vocabulary lacks (the decoder grows with it); returns them.

        `like[w]`: existing words whose decoder rows new word w starts from (their mean).
        """
        vocab = self.vocab.extended(words)
        added = vocab.itos[len(self.vocab) :]
        like = like or {}
        self.decoder.add_words(
            [[self.vocab.stoi[x] for x in like.get(w, ()) if x in self.vocab.stoi] for w in added]
        )
        self.vocab = vocab
        return added

    def checkpoint_data(self, extra: dict | None = None) -> CheckpointData:
        return CheckpointData(
            encoder=self.encoder.name,
            fine_tune=self.encoder.fine_tune,
            decoder_config=self.decoder.config,
            vocab=self.vocab,
            decoder_state=self.decoder.state_dict(),
            encoder_state=self.encoder.fine_tuned_state_dict(),
            max_len=self.max_len,
            no_repeat_ngram=self.no_repeat_ngram,
            extra=self.extra if extra is None else extra,
        )

    def save(self, path: str | Path, half: bool = True, extra: dict | None = None) -> Path:
        return save_checkpoint(path, self.checkpoint_data(extra), half=half)

    @property
    def open_vocabulary(self) -> bool:
        """Whether its object words come from the encoder's ImageNet classifier (slot words)."""
        return any(w in self.vocab.stoi for w in SLOTS)

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def to(self, device: str | torch.device) -> Captioner:
        self.encoder.to(device)
        self.decoder.to(device)
        return self

    def inference_decoder(self) -> Decoder:
        """The decoder that beam search runs: its CPU-packed copy where packing is exact
        (`captioner.packed`), else the decoder itself."""
        return self._packed(self.decoder)

    @torch.no_grad()
    def encode(self, images: Sequence) -> torch.Tensor:
        """RGB PIL images -> annotation vectors (B, 196, C)."""
        x = self.encoder.preprocess(images).to(self.device)  # (B, 3, S, S)
        return self.encoder(x)  # (B, 196, C)

    @torch.no_grad()
    def decode(
        self,
        features: torch.Tensor,
        beam_size: int = 3,
        max_len: int | None = None,
        length_penalty: float = 0.0,
        no_repeat_ngram: int | None = None,
        images: Sequence | None = None,
    ) -> list[Caption]:
        """Beam search over features (B, 196, C); `max_len`/`no_repeat_ngram` None: the model's.

        `images`: the B pictures the features came from, kept in each `Caption` for drawing."""
        slots = [self.vocab.stoi[w] for w in SLOTS if w in self.vocab.stoi]
        hard = self.decoder.config.attention == "hard"
        hyps = beam_search(
            self.inference_decoder(),
            features,
            self.vocab.start,
            self.vocab.end,
            beam_size=beam_size,
            max_len=max_len or self.max_len,
            length_penalty=length_penalty,
            banned=(self.vocab.start, self.vocab.pad),
            no_repeat_ngram=(self.no_repeat_ngram if no_repeat_ngram is None else no_repeat_ngram),
            repeat_exempt=slots,
        )
        words = [[self.vocab.itos[i] for i in h.tokens] for h in hyps]
        choices = [[[] for _ in w] for w in words]
        sources = [["decoder"] * len(w) for w in words]
        if slots:
            # its decoder learned "a" before every slot, so its own "a"/"an" can be wrong; the
            # articles of slot words come from the name table as they are filled in
            words = [fix_articles(w) for w in words]
        steps = [[t for t, w in enumerate(ws) if w in SLOTS] for ws in words]
        if any(steps):
            # the decoder said "an object here": the encoder's classifier names what it looked at
            if not self.encoder.has_classifier:
                raise RuntimeError(
                    f"this model names objects with {self.encoder.name}'s ImageNet "
                    "classifier, which was not loaded (no pretrained weights)"
                )
            names = imagenet_names()
            # the context each word came from: one cell (a hard model decoding with "argmax"),
            # else the attention-weighted mean
            looked = [
                torch.nn.functional.one_hot(h.alphas.argmax(1), h.alphas.size(1)).float()
                if self.decoder.location_rule == "argmax"
                else h.alphas
                for h in hyps
            ]  # (T, P) each
            named = name_slots(self.encoder, names, looked, features, steps)
            for b, ws in enumerate(words):
                filled, keep = fill_slots(ws, named[b], names)
                for t, opts in zip(steps[b], named[b]):
                    choices[b][t], sources[b][t] = opts, "classifier"
                words[b] = filled
                if not all(keep):  # a phrase left out: its attention and records go with it
                    sources[b] = [x for x, k in zip(sources[b], keep) if k]
                    choices[b] = [x for x, k in zip(choices[b], keep) if k]
                    hyps[b].alphas = hyps[b].alphas[torch.tensor(keep)]
        images = [None] * len(hyps) if images is None else images
        return [
            Caption(
                words=w,
                alphas=h.alphas.reshape(-1, GRID, GRID).numpy().astype(np.float32),
                score=float(h.score),
                image=im,
                sources=src,
                names=ch,
                cells=h.alphas.argmax(dim=1).tolist() if hard else None,
            )
            for w, h, src, ch, im in zip(words, hyps, sources, choices, images, strict=True)
        ]

    def caption(
        self,
        images: ImageInput | Sequence[ImageInput],
        beam_size: int = 3,
        max_len: int | None = None,
        length_penalty: float = 0.0,
        batch_size: int = 16,
        no_repeat_ngram: int | None = None,
    ) -> Caption | list[Caption]:
        """Caption one image (returns a Caption) or a list of them (returns a list).

        Accepts paths, bytes, PIL images and numpy arrays; raises `ImageError` for bad input.
        """
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        pil = [load_image(im) for im in items]
        out: list[Caption] = []
        for i in range(0, len(pil), batch_size):
            chunk = pil[i : i + batch_size]
            out.extend(
                self.decode(
                    self.encode(chunk),
                    beam_size,
                    max_len,
                    length_penalty,
                    no_repeat_ngram,
                    images=chunk,
                )
            )
        return out[0] if single else out
