"""Checkpoints from strangers: reading one never runs code, never leaves its folder, never blows up.

Every refusal is a `CheckpointError` whose message names the offending file.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import captioner.checkpoint as checkpoint_module
from captioner import Captioner, CheckpointError
from captioner.checkpoint import load_checkpoint

NAMES = ("config.json", "vocab.json", "model.safetensors", "training.safetensors")


@pytest.fixture
def ckpt(tmp_path, tiny_checkpoint) -> Path:
    """A fresh copy of the tiny checkpoint, with an optimizer file as training runs write."""
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, dst)
    save_file({"optimizer.0.exp_avg": torch.zeros(3)}, str(dst / "training.safetensors"))
    return dst


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def edit_tensors(ckpt: Path, change) -> None:
    tensors = load_file(str(ckpt / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(ckpt / "model.safetensors"))


def refused(ckpt: Path, file: str, match: str = "") -> str:
    """Load `ckpt`, expect a CheckpointError naming `file` (and matching `match`); return the message."""
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ckpt)
    message = str(info.value)
    assert file in message, message
    if match:
        assert re.search(match, message), message
    return message


class Payload:
    """Unpickling this creates `marker`: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any unpickling during the test fails loudly (torch.load, pickle.load(s))."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint loader unpickled something")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)


# ---------------------------------------------------------------------------- code execution


@pytest.mark.parametrize("where", ["model.safetensors", "vocab.json", "config.json"])
@pytest.mark.parametrize("protocol", [0, 5])
def test_pickle_bombs_are_refused_and_never_run(ckpt, tmp_path, no_unpickling, where, protocol):
    marker = tmp_path / "pwned"
    (ckpt / where).write_bytes(pickle.dumps({"x": Payload(marker)}, protocol=protocol))
    refused(ckpt, where)
    assert not marker.exists()


def test_legacy_pt_files_are_never_read(ckpt, tmp_path, no_unpickling):
    """A folder that holds a torch.save'd model.pt instead of safetensors, or a .pt given as the checkpoint."""
    marker = tmp_path / "pwned"
    data = pickle.dumps({"decoder.fc.weight": Payload(marker)})
    (ckpt / "model.safetensors").unlink()
    (ckpt / "model.pt").write_bytes(data)
    (ckpt / "pytorch_model.bin").write_bytes(data)
    refused(ckpt, "model.safetensors", "missing")
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(ckpt / "model.pt")
    assert not marker.exists()


def test_captioner_load_refuses_a_pickle_and_runs_nothing(ckpt, tmp_path):
    marker = tmp_path / "pwned"
    (ckpt / "model.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        Captioner.load(ckpt)
    assert not marker.exists()


# ---------------------------------------------------------------------------- disagreement


def _decoder(**values):
    return lambda cfg: cfg["decoder"].update(values)


DISAGREEMENTS = {
    "vocab has one word more": (
        "vocab.json",
        lambda c: edit_json(c / "vocab.json", lambda v: v["itos"].append("zebra")),
        "words",
    ),
    "config vocab_size differs": (
        "vocab.json",
        lambda c: edit_json(c / "config.json", _decoder(vocab_size=99)),
        "vocab_size=99",
    ),
    "config decoder_dim differs": (
        "model.safetensors",
        lambda c: edit_json(c / "config.json", _decoder(decoder_dim=128)),
        "shape mismatch",
    ),
    "config encoder_dim differs": (
        "config.json",
        lambda c: edit_json(c / "config.json", _decoder(encoder_dim=2048)),
        "encoder_dim",
    ),
    "config names another encoder": (
        "config.json",
        lambda c: edit_json(c / "config.json", lambda cfg: cfg["encoder"].update(name="resnet101")),
        "channels",
    ),
    "config says fine-tuned, no encoder tensors": (
        "model.safetensors",
        lambda c: edit_json(c / "config.json", lambda cfg: cfg["encoder"].update(fine_tune=True)),
        "fine-tuned",
    ),
    "a tensor is missing": (
        "model.safetensors",
        lambda c: edit_tensors(c, lambda t: t.pop("decoder.fc.weight")),
        "missing.*fc.weight",
    ),
    "a tensor is reshaped": (
        "model.safetensors",
        lambda c: edit_tensors(
            c, lambda t: t.update({"decoder.init_h.weight": torch.zeros(3, 3, dtype=torch.float16)})
        ),
        "init_h",
    ),
    "an unknown tensor": (
        "model.safetensors",
        lambda c: edit_tensors(
            c, lambda t: t.update({"evil.x": torch.zeros(1, dtype=torch.float16)})
        ),
        "evil.x",
    ),
    "an unknown decoder tensor": (
        "model.safetensors",
        lambda c: edit_tensors(
            c, lambda t: t.update({"decoder.extra": torch.zeros(1, dtype=torch.float16)})
        ),
        "decoder.extra|extra",
    ),
    "negative sizes": (
        "config.json",
        lambda c: edit_json(c / "config.json", _decoder(attention_dim=-5)),
        "sizes",
    ),
    "fractional sizes": (
        "config.json",
        lambda c: edit_json(c / "config.json", _decoder(embed_dim=1.5)),
        "sizes",
    ),
    "dropout of 5": (
        "config.json",
        lambda c: edit_json(c / "config.json", _decoder(dropout=5)),
        "sizes",
    ),
    "an unknown decoder setting": (
        "config.json",
        lambda c: edit_json(c / "config.json", _decoder(weights="../../etc/passwd")),
        "malformed",
    ),
    "no decoder section": (
        "config.json",
        lambda c: edit_json(c / "config.json", lambda cfg: cfg.pop("decoder")),
        "malformed",
    ),
    "a caption limit of a billion words": (
        "config.json",
        lambda c: edit_json(c / "config.json", lambda cfg: cfg.update(max_len=10**9)),
        "max_len",
    ),
    "another format": (
        "config.json",
        lambda c: edit_json(c / "config.json", lambda cfg: cfg.update(format="pt")),
        "format",
    ),
}


@pytest.mark.parametrize("case", list(DISAGREEMENTS))
def test_files_that_disagree_are_refused_naming_the_file(ckpt, case):
    file, change, match = DISAGREEMENTS[case]
    change(ckpt)
    refused(ckpt, file, match)


def test_a_config_claiming_a_huge_decoder_allocates_nothing(ckpt):
    """decoder_dim=10**6 would be 16 TB of LSTM weights (and ~10 GB touched before failing)."""
    edit_json(ckpt / "config.json", _decoder(decoder_dim=10**6, attention_dim=10**5))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="model.safetensors.*shape mismatch"):
        Captioner.load(ckpt)
    assert time.perf_counter() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KB


# ---------------------------------------------------------------------------- corruption


def _header_claiming(size: int) -> bytes:
    return size.to_bytes(8, "little") + b"{}"


CORRUPTIONS = {
    "truncated weights": (
        "model.safetensors",
        lambda c: (c / "model.safetensors").write_bytes(
            (c / "model.safetensors").read_bytes()[:-100]
        ),
        "safetensors",
    ),
    "random weights": (
        "model.safetensors",
        lambda c: (c / "model.safetensors").write_bytes(
            np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes()
        ),
        "safetensors",
    ),
    "empty weights": (
        "model.safetensors",
        lambda c: (c / "model.safetensors").write_bytes(b""),
        "safetensors",
    ),
    "header claiming 2**60 bytes": (
        "model.safetensors",
        lambda c: (c / "model.safetensors").write_bytes(_header_claiming(2**60)),
        "safetensors",
    ),
    "integer weights": (
        "model.safetensors",
        lambda c: edit_tensors(
            c, lambda t: t.update({"decoder.fc.weight": t["decoder.fc.weight"].to(torch.int8)})
        ),
        "fc.weight.*int8",
    ),
    "boolean weights": (
        "model.safetensors",
        lambda c: edit_tensors(
            c, lambda t: t.update({"decoder.fc.bias": t["decoder.fc.bias"] > 0})
        ),
        "fc.bias.*bool",
    ),
    "a NaN weight": (
        "model.safetensors",
        lambda c: edit_tensors(
            c, lambda t: t["decoder.fc.weight"].view(-1)[7:8].fill_(float("nan"))
        ),
        "fc.weight.*NaN",
    ),
    "an infinite weight": (
        "model.safetensors",
        lambda c: edit_tensors(
            c, lambda t: t["decoder.init_c.bias"].view(-1)[0:1].fill_(float("inf"))
        ),
        "init_c.bias.*infinite",
    ),
    "truncated optimizer state": (
        "training.safetensors",
        lambda c: (c / "training.safetensors").write_bytes(
            (c / "training.safetensors").read_bytes()[:20]
        ),
        "safetensors",
    ),
    "config not UTF-8": (
        "config.json",
        lambda c: (c / "config.json").write_bytes(b"\xff\xfe{}"),
        "JSON",
    ),
    "config a list": ("config.json", lambda c: (c / "config.json").write_text("[1, 2]"), "object"),
    "config nested 100000 deep": (
        "config.json",
        lambda c: (c / "config.json").write_text("[" * 100_000 + "]" * 100_000),
        "JSON",
    ),
    "vocab nested 100000 deep": (
        "vocab.json",
        lambda c: (c / "vocab.json").write_text('{"itos": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        "vocab",
    ),
    "vocab lists a word twice": (
        "vocab.json",
        lambda c: edit_json(c / "vocab.json", lambda v: v["itos"].__setitem__(-1, v["itos"][-2])),
        "twice",
    ),
    "vocab of numbers": (
        "vocab.json",
        lambda c: edit_json(c / "vocab.json", lambda v: v["itos"].__setitem__(-1, 5)),
        "strings",
    ),
    "vocab without specials": (
        "vocab.json",
        lambda c: edit_json(c / "vocab.json", lambda v: v["itos"].reverse()),
        "start with",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupted_files_are_refused_naming_the_file(ckpt, case):
    file, change, match = CORRUPTIONS[case]
    change(ckpt)
    refused(ckpt, file, match)


@pytest.mark.parametrize("file", ["config.json", "vocab.json"])
def test_huge_json_is_refused_before_parsing(ckpt, file, monkeypatch):
    """A valid but 5 MB file: refused by its size alone, json.loads never sees it."""
    edit_json(ckpt / file, lambda d: d.update(padding="x" * (5 << 20)))
    parsed = []
    real_loads = json.loads
    monkeypatch.setattr(
        json, "loads", lambda s, *a, **k: parsed.append(len(s)) or real_loads(s, *a, **k)
    )
    refused(ckpt, file, "too large")
    assert not any(n > 1 << 20 for n in parsed)


def test_a_pipe_named_like_a_file_does_not_hang(ckpt):
    (ckpt / "config.json").unlink()
    os.mkfifo(ckpt / "config.json")  # reading it would block forever
    start = time.perf_counter()
    refused(ckpt, "config.json", "missing")
    assert time.perf_counter() - start < 5


# ---------------------------------------------------------------------------- the folder's edge

_opened: list | None = None  # paths the audit hook records while a test listens


def _audit(event, args):
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it records only while _opened is a list


def test_only_the_fixed_files_inside_the_folder_are_opened(ckpt, tmp_path, monkeypatch):
    global _opened
    secret = tmp_path / "secret.safetensors"
    shutil.copy(ckpt / "model.safetensors", secret)
    edit_json(
        ckpt / "config.json",
        lambda cfg: cfg.update(
            weights="../secret.safetensors",
            vocab="/etc/passwd",
            model=str(secret),
            files=["/proc/self/environ"],
            extra={"path": "../../etc/shadow", "include": "/etc/hosts"},
        ),
    )
    real_load_file = checkpoint_module.load_file
    rust_opened = []  # safetensors opens files in Rust, where no Python audit event fires
    monkeypatch.setattr(
        checkpoint_module,
        "load_file",
        lambda p, *a, **k: rust_opened.append(os.fsdecode(p)) or real_load_file(p, *a, **k),
    )
    load_checkpoint(ckpt)  # warm up: any lazy imports open their files now, not below
    rust_opened.clear()
    _opened = []
    try:
        data = load_checkpoint(ckpt)
        opened = _opened + rust_opened
    finally:
        _opened = None
    assert data.extra["path"] == "../../etc/shadow"  # kept as data, never followed
    folder = ckpt.resolve()
    for path in opened:
        real = Path(path).resolve()
        assert real.parent == folder and real.name in NAMES, f"opened {path}"
    assert {Path(p).name for p in opened} == set(NAMES)


@pytest.mark.parametrize("file", NAMES)
def test_a_link_out_of_the_folder_is_refused(ckpt, tmp_path, file):
    """The link's target is a perfectly good file: only where it lives is wrong."""
    outside = tmp_path / "elsewhere" / file
    outside.parent.mkdir()
    shutil.move(ckpt / file, outside)
    (ckpt / file).symlink_to(outside)
    refused(ckpt, file, "outside")
    # A relative link that climbs out is the same thing.
    (ckpt / file).unlink()
    (ckpt / file).symlink_to(Path("..") / "elsewhere" / file)
    refused(ckpt, file, "outside")


def test_links_inside_the_folder_and_a_linked_folder_are_fine(ckpt, tmp_path):
    (ckpt / "v1").mkdir()
    shutil.move(ckpt / "model.safetensors", ckpt / "v1" / "model.safetensors")
    (ckpt / "model.safetensors").symlink_to(Path("v1") / "model.safetensors")
    load_checkpoint(ckpt)
    (tmp_path / "default").symlink_to(ckpt)  # checkpoints/default -> runs/x/best
    assert load_checkpoint(tmp_path / "default").vocab is not None
