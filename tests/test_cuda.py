"""The GPU paths: the same captions and features on CUDA as on the CPU, and training under
torchrun (one process: NCCL needs a GPU per process, so two GPUs to run it). Skipped where no
CUDA device is present (as in CI); on a GPU machine run
`python -m pytest tests/test_cuda.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from captioner import Captioner
from captioner.data.features import cache_features
from captioner.data.karpathy import load_karpathy, split_records

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

ROOT = Path(__file__).resolve().parent.parent


def test_default_model_gives_the_same_captions_on_cuda(photo):
    from skimage import data

    images = [photo, data.coffee(), data.chelsea()]
    on_cpu = Captioner.load().caption(images)
    model = Captioner.load().to("cuda")
    assert model.device.type == "cuda"
    on_gpu = model.caption(images)
    assert model.inference_decoder() is model.decoder  # FBGEMM packing is for the CPU only
    for a, b in zip(on_cpu, on_gpu):
        assert a.words == b.words
        assert isinstance(b.alphas, np.ndarray) and b.alphas.shape == a.alphas.shape
        # cuDNN may use TF32 convolutions: close, not bit-equal
        assert np.abs(b.alphas - a.alphas).max() < 0.1 and np.abs(b.alphas - a.alphas).mean() < 1e-3
        assert b.score == pytest.approx(a.score, abs=0.05)


def test_features_cached_on_cuda_match_the_cpu(shapes_data, tmp_path):
    model = Captioner.load()
    records = split_records(load_karpathy(shapes_data), "val")
    on_cpu, _ = cache_features(model.encoder, records, tmp_path / "cpu", "val", device="cpu")
    on_gpu, _ = cache_features(model.encoder, records, tmp_path / "gpu", "val", device="cuda")
    assert on_gpu.shape == on_cpu.shape == (len(records), 196, 1280)
    diff = np.abs(np.asarray(on_gpu, np.float32) - np.asarray(on_cpu, np.float32))
    scale = np.abs(np.asarray(on_cpu, np.float32)).max()
    assert scale > 1 and diff.max() < 0.05 * scale and diff.mean() < 0.005


def test_training_under_torchrun_then_fine_tuning_on_cuda(shapes_data, tmp_path):
    out = tmp_path / "run"
    tiny = [
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
        "--device",
        "cuda",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1"]
    proc = subprocess.run(
        [
            *torchrun,
            "-m",
            "captioner",
            "train",
            "--data",
            str(shapes_data),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--alpha-box",
            "1.0",
            *tiny,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1] and np.isfinite(log[0]["loss"])

    # the paper's second stage: the encoder's last stages train too, encoding on the fly
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "captioner",
            "train",
            "--data",
            str(shapes_data),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--resume",
            "--fine-tune",
            *tiny[8:],
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = Captioner.load(out / "last")  # saved from the GPU, loads on the CPU
    assert model.device.type == "cpu" and model.encoder.fine_tune
    assert model.caption(str(shapes_data.parent / "images" / "000000.png")).words
