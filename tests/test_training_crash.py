"""Kill training for real (SIGKILL) at random moments: RUN/last always loads, --resume goes on.

A tiny run (8 shapes scenes, 16/16/32 dims, cached features, `--save-every 1`) spends most of
its time writing checkpoints, so the kills land in the middle of saves as often as not.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import captioner.checkpoint as checkpoint_module
from captioner import Captioner
from captioner.checkpoint import TRAINING, load_checkpoint, save_checkpoint
from captioner.data.features import cache_features
from captioner.data.karpathy import load_karpathy, split_records
from captioner.scenes.dataset import generate_scenes
from captioner.scenes.shapes import shape_sources

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 2
KILLS = 2
TINY = [
    "--embed-dim",
    "16",
    "--attention-dim",
    "16",
    "--decoder-dim",
    "32",
    "--min-word-freq",
    "1",
    "--batch-size",
    "8",
    "--dropout",
    "0",
    "--val-beam-size",
    "1",
    "--epochs",
    str(EPOCHS),
    "--save-every",
    "1",
    "--patience",
    "100",
]
# One thread: on a busy 2-core box two OpenMP threads spin-wait for each other.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tiny_model):
    """8 scenes (6 train, 2 val) and their encoder features, cached once for every run."""
    root = tmp_path_factory.mktemp("crash")
    generate_scenes(
        root / "data",
        8,
        seed=3,
        sources=shape_sources(),
        size=96,
        split_fractions=(0.75, 0.25, 0.0),
        progress=False,
    )
    data = root / "data" / "captions.json"
    records = load_karpathy(data)
    for split in ("train", "val"):
        cache_features(tiny_model.encoder, split_records(records, split), root / "cache", split)
    return data, root / "cache"


def train(data: Path, cache: Path, out: Path, resume: bool) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "captioner",
        "train",
        "--data",
        str(data),
        "--cache",
        str(cache),
        "--out",
        str(out),
        *TINY,
    ] + (["--resume"] if resume else [])
    return subprocess.Popen(
        args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def position(last: Path) -> tuple[int, int] | None:
    """(epoch, step) that RUN/last holds now, or None while there is none."""
    try:
        state = json.loads((last / "config.json").read_text())["extra"]["train_state"]
    except (OSError, ValueError, KeyError):
        return None
    return state["epoch"], state["step"]


def saving(out: Path) -> list[Path]:
    """The temporary folders of saves in progress (or killed): `.last.<random>`."""
    return [p for p in out.glob(".last.*") if p.name != ".last.old"]


def listing(out: Path) -> tuple:
    """RUN's `last`-ish names and RUN/last's: any save of last/, atomic or not, changes it at once."""

    def names(folder: Path) -> list[str]:
        try:
            return sorted(os.listdir(folder))
        except FileNotFoundError:
            return []

    return tuple(n for n in names(out) if n.startswith((".last", "last"))), tuple(
        names(out / "last")
    )


def assert_complete(last: Path, reload: bool) -> tuple[int, int]:
    """Every file of RUN/last is whole: the loader reads and cross-checks them all."""
    data = load_checkpoint(last)
    assert last.is_dir()
    names = sorted(p.name for p in last.iterdir())
    assert names == sorted(["config.json", "vocab.json", "model.safetensors", TRAINING]), names
    assert data.training_tensors and data.extra["optimizer"]["param_groups"]
    if reload:
        model = Captioner.load(last)
        assert model.decoder.config.decoder_dim == 32
    state = data.extra["train_state"]
    return state["epoch"], state["step"]


def run_and_kill(
    data: Path, cache: Path, out: Path, resume: bool, at_save: bool, rng: random.Random
) -> str:
    """Start training, let it save past where it started, then SIGKILL it; returns its stderr.

    `at_save`: the kill comes the moment a save of last/ begins writing; else after a random
    0-0.4 s, wherever the run is then (a step, a save, validation).
    """
    last = out / "last"
    before = position(last)
    proc = train(data, cache, out, resume)
    try:
        deadline = time.monotonic() + 60
        while position(last) in (None, before) and proc.poll() is None:
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.02)
        assert proc.poll() is None, f"training ended early: {proc.communicate()[1][-2000:]}"
        if at_save:
            calm, deadline = listing(out), time.monotonic() + 5
            while listing(out) == calm and time.monotonic() < deadline:
                time.sleep(0)  # no nap: a save lasts a few milliseconds
        else:
            time.sleep(rng.uniform(0.0, 0.4))
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    if resume:  # the resumed run said where it started, and it was what was on disk
        assert f"resuming from {last}: epoch {before[0]}, step {before[1]}" in err, err[-2000:]
    return err


def test_sigkill_at_random_moments_then_resume(dataset, tmp_path):
    data, cache = dataset
    out = tmp_path / "run"
    last = out / "last"
    rng = random.Random(20240601)
    seen: list[tuple[int, int]] = []
    interrupted_saves = 0  # kills that landed inside a save of last/
    plan = [False, True] * (KILLS // 2) + [False] * (KILLS % 2)  # random moment, then at a save
    while plan:
        at_save = plan.pop(0)
        before = position(last)
        run_and_kill(data, cache, out, resume=before is not None, at_save=at_save, rng=rng)
        if saving(out):  # a killed save leaves its temporary folder; the next save removes it
            interrupted_saves += 1
        elif at_save and not plan and interrupted_saves == 0 and len(seen) < KILLS + 1:
            plan.append(True)  # this machine was too slow to catch one: try again, twice at most
        now = assert_complete(last, reload=not plan)
        assert before is None or now > before, (before, now)  # progress kept, not restarted
        seen.append(now)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert interrupted_saves >= 1, "no kill landed in the middle of a save"

    before = position(last)
    proc = train(data, cache, out, resume=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert f"resuming from {last}: epoch {before[0]}, step {before[1]}" in err
    assert assert_complete(last, reload=True) == (EPOCHS, 0)
    history = load_checkpoint(last).extra["train_state"]["history"]
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    Captioner.load(out / "best")
    assert saving(out) == []  # no temporary folder of a killed save is left behind


def test_a_save_killed_between_its_two_renames_still_leaves_a_checkpoint(
    tmp_path, tiny_checkpoint, monkeypatch
):
    """The one moment a folder swap leaves no `last/`: loading falls back to the whole old one."""
    data = load_checkpoint(tiny_checkpoint)
    last = tmp_path / "run" / "last"
    save_checkpoint(last, data)
    data.extra = {"train_state": {"epoch": 1, "step": 5}}
    real_replace = os.replace
    calls = []

    def dies_after_first(src, dst):
        real_replace(src, dst)
        calls.append(dst)
        raise SystemExit("killed")  # as SIGKILL would, right after last/ was moved aside

    monkeypatch.setattr(checkpoint_module.os, "replace", dies_after_first)
    with pytest.raises(SystemExit):
        save_checkpoint(last, data)
    monkeypatch.setattr(checkpoint_module.os, "replace", real_replace)
    assert not last.exists() and calls  # the crash window
    loaded = load_checkpoint(last)  # the previous checkpoint, whole
    assert loaded.extra == {} and loaded.vocab == data.vocab
    Captioner.load(last)
    save_checkpoint(last, data)  # the next save puts things right
    assert load_checkpoint(last).extra == data.extra
