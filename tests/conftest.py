"""Shared fixtures: small models and images made on the spot, no network, no downloads."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from captioner import Captioner, Vocabulary
from captioner.scenes.dataset import generate_scenes
from captioner.scenes.shapes import shape_sources

WORDS = ["a", "red", "green", "circle", "square", "star", "and", "two", "left", "of", "the"]


def free_port() -> int:
    """A loopback port nobody listens on now, for serving the app in a test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tiny_captioner(
    seed: int = 0,
    encoder: str = "efficientnet-lite2",
    max_len: int = 12,
    deep_output: bool = False,
    attention: str = "soft",
) -> Captioner:
    """A random-weight decoder with small sizes over a real (offline) pretrained encoder."""
    torch.manual_seed(seed)
    vocab = Vocabulary.build([WORDS])
    return Captioner.create(
        encoder,
        vocab,
        pretrained=encoder == "efficientnet-lite2",
        embed_dim=32,
        attention_dim=32,
        decoder_dim=64,
        dropout=0.0,
        deep_output=deep_output,
        max_len=max_len,
        attention=attention,
    )


@pytest.fixture(scope="session")
def tiny_model() -> Captioner:
    return make_tiny_captioner()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model) -> str:
    """The tiny model saved as a checkpoint folder (fp16 tensors, as shipped checkpoints are)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    tiny_model.save(path)
    return str(path)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A CC0 photo from scikit-image (the astronaut), as an RGB array."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory) -> Path:
    """24 small shape scenes (18 train, 6 val) as a Karpathy JSON, for training runs."""
    root = tmp_path_factory.mktemp("shapes")
    generate_scenes(
        root,
        count=24,
        seed=5,
        sources=shape_sources(),
        size=128,
        split_fractions=(0.75, 0.25, 0.0),
        progress=False,
    )
    return root / "captions.json"
