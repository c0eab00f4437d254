"""Training end to end on a tiny shapes data set: DDP with 2 CPU processes, resume, fine-tune stage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from captioner import Captioner, train
from captioner.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
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
    "--max-val-images",
    "4",
    "--val-beam-size",
    "1",
    "--max-len",
    "8",
]


def run(*args: str, torchrun: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = (
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "captioner"]
        if torchrun
        else [sys.executable, "-m", "captioner"]
    )
    proc = subprocess.run(
        [*cmd, "train", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_ddp_with_two_cpu_processes_then_resume_with_a_new_lr(shapes_data, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    err = run(
        "--data",
        str(shapes_data),
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--epochs",
        "1",
        "--alpha-box",
        "1.0",
        "--coverage",
        "--no-repeat-ngram",
        "2",
        *TINY,
        torchrun=True,
    ).stderr
    assert "distributed training: 2 processes, gloo backend" in err
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1]  # one log line, from rank 0 only
    assert 0 <= log[0]["object_recall"] <= 1  # scenes list objects: grounding is watched too
    state = load_checkpoint(out / "last").extra
    assert (
        state["train_state"]["epoch"] == 1 and state["optimizer"]["param_groups"][0]["lr"] == 4e-4
    )
    assert state["args"]["alpha_box"] == 1.0
    best = load_checkpoint(out / "best").extra
    assert (
        "optimizer" not in best and best["args"]["decoder_dim"] == 32
    )  # ships without training state
    assert Captioner.load(out / "best").decoder.config.coverage
    assert (
        Captioner.load(out / "best").no_repeat_ngram == 2 and best["args"]["no_repeat_ngram"] == 2
    )
    assert (out / "curve.png").stat().st_size > 1000

    err = run(
        "--data",
        str(shapes_data),
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--epochs",
        "2",
        "--resume",
        "--lr",
        "1e-3",
        *TINY[6:],
    ).stderr  # sizes not repeated: the model's own
    assert f"resuming from {out / 'last'}: epoch 1, step 0" in err
    state = load_checkpoint(out / "last").extra
    assert state["args"]["decoder_dim"] == 32 and state["args"]["alpha_box"] == 0.0
    assert state["train_state"]["epoch"] == 2
    assert Captioner.load(out / "last").no_repeat_ngram == 2  # a resumed run keeps its own setting
    assert state["optimizer"]["param_groups"][0]["lr"] == 1e-3
    assert [h["epoch"] for h in state["train_state"]["history"]] == [1, 2]


def test_fine_tune_stage_stores_the_encoder(shapes_data, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    run(
        "--data", str(shapes_data), "--out", str(out), "--cache", str(cache), "--epochs", "1", *TINY
    )
    run(
        "--data",
        str(shapes_data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--resume",
        "--fine-tune",
        *TINY,
    )
    ckpt = load_checkpoint(out / "last")
    assert ckpt.fine_tune and ckpt.encoder_state  # the trained encoder stages travel with it
    assert len(ckpt.extra["optimizer"]["param_groups"]) == 2  # decoder + encoder learning rates
    model = Captioner.load(out / "last")
    assert (
        model.encoder.fine_tune
        and model.caption(str(shapes_data.parent / "images" / "000000.png")).words
    )


def test_init_from_starts_a_new_run_from_a_trained_model(shapes_data, tmp_path):
    first, second, cache = tmp_path / "first", tmp_path / "second", tmp_path / "cache"
    run(
        "--data",
        str(shapes_data),
        "--out",
        str(first),
        "--cache",
        str(cache),
        "--epochs",
        "1",
        "--no-repeat-ngram",
        "2",
        *TINY,
    )
    # learning rate 0: the new run's weights must be exactly the ones it started from
    err = run(
        "--data",
        str(shapes_data),
        "--out",
        str(second),
        "--cache",
        str(cache),
        "--epochs",
        "1",
        "--init-from",
        str(first / "last"),
        "--lr",
        "0",
        *TINY[6:],
    ).stderr
    assert (
        f"starting from {first / 'last'}" in err and "0 of " in err
    )  # same data: no unknown words
    start, new = load_checkpoint(first / "last"), load_checkpoint(second / "last")
    assert new.vocab.itos == start.vocab.itos and new.decoder_config == start.decoder_config
    assert all(
        torch.equal(new.decoder_state[k], start.decoder_state[k]) for k in start.decoder_state
    )
    assert new.no_repeat_ngram == 2  # the model's decoding setting travels with it
    assert new.extra["train_state"]["epoch"] == 1  # a new run: its own epochs, its own history
    assert [h["epoch"] for h in new.extra["train_state"]["history"]] == [1]
    assert new.extra["optimizer"]["param_groups"][0]["lr"] == 0
    assert new.extra["args"]["init_from"] == str(first / "last")


def test_init_from_rejects_resume_and_a_missing_checkpoint(shapes_data, tmp_path, capsys):
    base = ["--data", str(shapes_data), "--out", str(tmp_path / "run"), *TINY]
    parser = train.get_args_parser()
    assert train.main(parser.parse_args([*base, "--init-from", str(tmp_path), "--resume"])) == 2
    assert "cannot go with --resume" in capsys.readouterr().err
    assert train.main(parser.parse_args([*base, "--init-from", str(tmp_path / "nothing")])) == 2
    assert f"cannot start from {tmp_path / 'nothing'}" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last").exists()


def test_an_unreadable_training_image_is_left_out(shapes_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shapes_data.parent, data)
    records = json.loads((data / "captions.json").read_text())["images"]
    broken = next(r for r in records if r["split"] == "train")
    (data / "images" / broken["filename"]).write_bytes(b"not a picture")
    out, cache = tmp_path / "run", tmp_path / "cache"
    # --alpha-box reads every training image's size: it would fail on the broken one if kept
    err = run(
        "--data",
        str(data / "captions.json"),
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--epochs",
        "1",
        "--alpha-box",
        "1.0",
        *TINY,
    ).stderr
    assert f"skipping {data / 'images' / broken['filename']}" in err
    meta = json.loads((cache / "efficientnet-lite2-train.json").read_text())
    assert meta["bad_ids"] == [broken["imgid"]]
    assert load_checkpoint(out / "last").extra["train_state"]["epoch"] == 1


@pytest.mark.parametrize(
    "model", [["--dropout", "0"], ["--dropout", "0.3", "--attention", "hard"]], ids=["soft", "hard"]
)
def test_a_resumed_run_ends_with_the_weights_and_adam_state_of_an_uninterrupted_one(
    shapes_data, tmp_path, model
):
    """One epoch, stop, --resume for the second: bit for bit the run that never stopped, so the
    saved state (Adam's step and moments included) is the state that was saved. With dropout and
    hard attention's draws, the random stream and the REINFORCE baseline go on as well."""
    from safetensors.torch import load_file

    cache = tmp_path / "cache"
    common = ["--data", str(shapes_data), "--cache", str(cache), *model, *TINY]
    run(*common, "--out", str(tmp_path / "straight"), "--epochs", "2")
    run(*common, "--out", str(tmp_path / "stopped"), "--epochs", "1")
    run(*common, "--out", str(tmp_path / "stopped"), "--epochs", "2", "--resume")
    for name in ("model.safetensors", "training.safetensors"):
        straight = load_file(tmp_path / "straight" / "last" / name)
        resumed = load_file(tmp_path / "stopped" / "last" / name)
        assert straight.keys() == resumed.keys() and straight
        different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
        assert not different, f"{name}: {different[:5]}"
    steps = [k for k in straight if k.endswith(".step")]
    assert steps and all(float(straight[k]) > 0 for k in steps)  # Adam's state is really there
    states = [
        load_checkpoint(tmp_path / d / "last").extra["train_state"] for d in ("straight", "stopped")
    ]
    assert states[0].get("hard_baseline") == states[1].get("hard_baseline")
    assert ("hard_baseline" in states[0]) == ("hard" in model)  # a number, for hard attention
