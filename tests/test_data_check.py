"""The data check before long work, on small real layouts made here: a wrong image folder ends
train, features and evaluate in one sentence; missing and unreadable images; expected errors
as one `error:` line; `check-data`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest
from PIL import Image

from captioner.checkpoint import load_checkpoint
from captioner.cli import main_cli
from captioner.data.check import check_images, data_report
from captioner.data.karpathy import DataError, load_karpathy, split_records
from captioner.vocab import Vocabulary

ROOT = Path(__file__).resolve().parent.parent
WORDS = "a dog cat runs on the grass red ball with".split()
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


def flickr_layout(
    root: Path,
    counts=(("train", 6), ("val", 2), ("test", 2)),
    folder="Flicker8k_Dataset",
    filepath: str | None = None,
) -> Path:
    """A Flickr8k-style layout: root/dataset_flickr8k.json, its photos in root/`folder`/ beside it
    (in root/`folder`/`filepath`/ and named by `filepath` in the JSON, as COCO's are, if given)."""
    photos = root / folder / (filepath or "")
    photos.mkdir(parents=True)
    entries = []
    for split, n in counts:
        for _ in range(n):
            i = len(entries)
            name = f"{1000 + i}_{split}.jpg"
            Image.new("RGB", (32, 24), (37 * i % 256, 90, 160)).save(photos / name)
            tokens = [WORDS[(i + j) % len(WORDS)] for j in range(4 + i % 3)]
            entry = {
                "filename": name,
                "imgid": i,
                "split": split,
                "sentences": [{"tokens": tokens, "raw": " ".join(tokens)}, {"raw": "A dog."}],
            }
            if filepath:
                entry["filepath"] = filepath
            entries.append(entry)
    path = root / "dataset_flickr8k.json"
    path.write_text(json.dumps({"images": entries}))
    return path


@pytest.fixture
def cli(monkeypatch, capsys):
    """`python -m captioner ARGS` in this process: (exit status, stdout, stderr lines)."""
    monkeypatch.setattr("captioner.runtime.tune_malloc", lambda: True)

    def run(*argv):
        status = main_cli([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err.strip().splitlines()

    return run


# --- a wrong image folder: one sentence, status 2, before any long work ------------------------


def test_train_without_images_ends_in_seconds_with_one_sentence_and_no_checkpoint(tmp_path):
    """The issue's run: a Flickr8k layout trained without --images, as a user types it."""
    flickr_layout(tmp_path / "data" / "x")
    start = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "captioner",
            "train",
            "--data",
            "data/x/dataset_flickr8k.json",
            "--out",
            "runs/x",
            "--epochs",
            "2",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr[-3000:]
    assert time.perf_counter() - start < 60
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(
        "error: data/x/dataset_flickr8k.json: all 6 train images and all 2 val "
        "images are missing (tried data/x/1000_train.jpg, data/x/1001_train.jpg"
    )
    assert lines[0].endswith("pass --images data/x/Flicker8k_Dataset")
    assert not (tmp_path / "runs").exists()  # no run folder, no checkpoint of nonsense


def test_features_and_evaluate_stop_on_the_same_mistake(tmp_path, cli):
    data = flickr_layout(tmp_path)
    status, out, err = cli("features", "--data", data, "--out", tmp_path / "cache")
    assert status == 2 and len(err) == 1 and not (tmp_path / "cache").exists()
    assert "all 6 train images, all 2 val images and all 2 test images are missing" in err[0]
    assert err[0].endswith(f"pass --images {tmp_path / 'Flicker8k_Dataset'}")
    # the check comes before the model: a checkpoint that does not exist is never reached
    status, out, err = cli(
        "evaluate",
        "--data",
        data,
        "--split",
        "test",
        "--json",
        "--checkpoint",
        tmp_path / "no-model",
    )
    assert status == 2 and out == "" and len(err) == 1
    assert "all 2 test images are missing" in err[0] and "--images" in err[0]


def test_coco_filepath_folders_are_named_in_the_fix(tmp_path):
    root = tmp_path / "data" / "mine"
    data = flickr_layout(root, counts=(("val", 3),), folder="coco", filepath="val2014")
    records = split_records(load_karpathy(data), "val")
    assert records[0].path == root / "val2014" / "1000_val.jpg"
    with pytest.raises(DataError, match=f"pass --images {root / 'coco'}$"):
        check_images({"val": records}, data)
    shutil.move(root / "coco", tmp_path / "far" / "away")  # not near the JSON: no folder to name
    with pytest.raises(
        DataError,
        match="the folder that holds the JSON's `filepath` folders "
        r"\(here val2014/; for COCO, the one with train2014/",
    ):
        check_images({"val": records}, data)
    found = split_records(load_karpathy(data, tmp_path / "far" / "away"), "val")
    assert check_images({"val": found}, data) == set()


# --- a few missing images: summarised; more than 1% stops unless --allow-missing ----------------


def test_missing_images_are_summarised_in_one_line_and_allowed_only_deliberately(tmp_path, capsys):
    data = flickr_layout(tmp_path)
    (tmp_path / "Flicker8k_Dataset" / "1001_train.jpg").unlink()
    records = load_karpathy(data, tmp_path / "Flicker8k_Dataset")
    splits = {s: split_records(records, s) for s in ("train", "val")}
    with pytest.raises(DataError) as e:
        check_images(splits, data, tmp_path / "Flicker8k_Dataset")
    assert "1 of the 6 train images (16.7%, more than the 1% allowed) are missing" in str(e.value)
    assert "or go on without them with --allow-missing" in str(e.value)
    assert check_images(splits, data, tmp_path / "Flicker8k_Dataset", allow_missing=True) == {1}
    assert check_images(splits, data, tmp_path / "Flicker8k_Dataset", max_missing=0.2) == {1}
    err = capsys.readouterr().err.splitlines()
    assert (
        err
        == [
            f"images found: train 5 of 6, val 2 of 2; 1 missing, left out "
            f"(e.g. {tmp_path / 'Flicker8k_Dataset' / '1001_train.jpg'})"
        ]
        * 2
    )
    for name in ("1006_val.jpg", "1007_val.jpg"):  # a split with no image at all: never allowed
        (tmp_path / "Flicker8k_Dataset" / name).unlink()
    with pytest.raises(DataError, match="all 2 val images are missing"):
        check_images(splits, data, tmp_path / "Flicker8k_Dataset", allow_missing=True)


def test_train_with_allow_missing_leaves_the_missing_images_out(shapes_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shapes_data.parent, data)
    gone = next(
        r
        for r in json.loads((data / "captions.json").read_text())["images"]
        if r["split"] == "train"
    )
    (data / "images" / gone["filename"]).unlink()
    base = [
        sys.executable,
        "-m",
        "captioner",
        "train",
        "--data",
        str(data / "captions.json"),
        "--out",
        str(tmp_path / "run"),
        "--cache",
        str(tmp_path / "cache"),
        "--epochs",
        "1",
        *TINY,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--allow-missing" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()
    r = subprocess.run(
        [*base, "--allow-missing"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "images found: train 17 of 18, val 4 of 4; 1 missing, left out" in r.stderr
    assert "skipping" not in r.stderr  # summarised once, not warned again per file
    meta = json.loads((tmp_path / "cache" / "efficientnet-lite2-train.json").read_text())
    assert meta["bad_ids"] == [gone["imgid"]]
    assert load_checkpoint(tmp_path / "run" / "last").extra["train_state"]["epoch"] == 1


# --- evaluate: a status of its own when nothing, or too much, could be scored -------------------


def test_evaluate_exit_statuses(tmp_path, tiny_checkpoint, cli):
    data = flickr_layout(tmp_path, counts=(("test", 3),), folder="images")
    photos = tmp_path / "images"
    common = [
        "evaluate",
        "--data",
        data,
        "--checkpoint",
        tiny_checkpoint,
        "--json",
        "--no-meteor",
        "--beam-size",
        "1",
        "--max-len",
        "4",
    ]
    status, out, err = cli(*common)
    assert status == 0 and json.loads(out)["n_images"] == 3

    (photos / "1002_test.jpg").unlink()
    status, out, err = cli(*common, "--allow-missing")
    result = json.loads(out)
    assert status == 1 and result["n_images"] == 2 and result["counts"]["skipped"] == 1
    tried = tmp_path / "1002_test.jpg"  # the first place looked at: beside the JSON
    assert result["skipped"][0] == {
        "id": 2,
        "image": str(tried),
        "error": f"{tried}: no such file.",
    }
    assert err[0] == f"images found: test 2 of 3; 1 missing, left out (e.g. {tried})"
    assert not any(line.startswith("skipped:") for line in err)  # no line per missing file

    (photos / "1000_test.jpg").write_bytes(b"<html>not a picture</html>")
    status, out, err = cli(*common, "--max-images", "2")  # 1 of 2 unreadable: too many
    assert status == 3 and json.loads(out)["n_images"] == 1  # the scores of the rest, then why
    assert err[-1].startswith(
        "error: 1 of the 2 images of split 'test' (50.0%, more than the 1% "
        "allowed) could not be read and were skipped"
    )

    (photos / "1001_test.jpg").write_bytes(b"")
    status, out, err = cli(*common, "--max-images", "2")
    assert status == 3 and out == ""
    assert err[-1].startswith(
        "error: no image of split 'test' could be scored: none of the 2 could "
        "be read (e.g. 1000_test.jpg: not an image file Pillow can read.)"
    )
    assert "check-data" in err[-1]


# --- expected errors: one line, no traceback; unexpected ones keep theirs ----------------------


def test_expected_errors_are_one_line(tmp_path, cli, monkeypatch, shapes_data):
    status, _, err = cli("train", "--data", tmp_path / "nope.json", "--out", tmp_path / "run")
    assert status == 2 and len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'nope.json'}: ")
    (tmp_path / "bad.json").write_text('{"images": [')
    status, _, err = cli("check-data", "--data", tmp_path / "bad.json")
    assert status == 2 and err == [
        f"error: {tmp_path / 'bad.json'}: not a Karpathy split file "
        f"(Expecting value: line 1 column 13 (char 12))"
    ]
    status, _, err = cli(
        "features",
        "--data",
        shapes_data,
        "--splits",
        "train",
        "--out",
        tmp_path / "cache",
        "--encoder-weights",
        tmp_path / "none.pth",
    )
    assert (
        status == 2 and err[-1] == f"error: encoder weights file not found: {tmp_path / 'none.pth'}"
    )
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{not json")
    status, _, err = cli(
        "train", "--data", shapes_data, "--out", tmp_path / "run", "--init-from", tmp_path / "ckpt"
    )
    assert (
        status == 2
        and err[-1].startswith("error: cannot start from")
        and "not valid JSON" in err[-1]
    )
    for command in ("train", "features"):
        status, _, err = cli(
            command, "--data", shapes_data, "--out", tmp_path / "run", "--encoder", "resnet1O1"
        )
        assert status == 2 and err == [
            "error: unknown encoder 'resnet1O1'; known: resnet50, resnet101, "
            "resnet152, efficientnet-lite2"
        ]
    assert not (tmp_path / "run").exists()

    # Unexpected errors still show their traceback.
    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("captioner.data.check.data_report", boom)
    with pytest.raises(RuntimeError, match="a bug"):
        cli("check-data", "--data", shapes_data)


def test_resnet101_without_network_is_one_line(shapes_data, tmp_path, cli, monkeypatch):
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    status, _, err = cli(
        "train",
        "--data",
        shapes_data,
        "--out",
        tmp_path / "run",
        "--encoder",
        "resnet101",
        "--epochs",
        "1",
    )
    assert status == 2 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith(
        "error: could not get ImageNet weights for resnet101 from torchvision"
    )
    assert err[-1].endswith(
        "--encoder-weights PATH (a torchvision resnet101 state_dict, .pth or .safetensors)."
    )
    assert err[:-1] == ["images found: train 18 of 18, val 6 of 6"]
    assert not (tmp_path / "run").exists()


# --- check-data --------------------------------------------------------------------------------


def test_check_data_reports_what_a_user_needs_before_training(tmp_path, cli):
    data = flickr_layout(tmp_path)
    photos = tmp_path / "Flicker8k_Dataset"
    (photos / "1002_train.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    doc = json.loads(data.read_text())
    doc["images"].append({**doc["images"][0], "split": "test"})  # a training image again, in test
    data.write_text(json.dumps(doc))

    status, out, err = cli(
        "check-data", "--data", data, "--images", photos, "--min-word-freq", "3", "--json"
    )
    report = json.loads(out)
    assert status == 0 and report["problems"] == []
    train_images = report["splits"]["train"]
    assert train_images == {**train_images, "images": 6, "found": 6, "missing": 0, "unreadable": 1}
    assert train_images["unreadable_examples"][0].startswith(
        "1002_train.jpg: the image data is broken or truncated"
    )
    assert report["splits"]["test"] == {**report["splits"]["test"], "images": 3, "found": 3}
    assert report["captions"] == {
        "total": 22,
        "per_image": {"min": 2, "p50": 2, "max": 2},
        "images_without": 0,
    }
    lengths = sorted(
        [len(s["tokens"]) if "tokens" in s else 2 for e in doc["images"] for s in e["sentences"]]
    )
    assert (
        report["caption_words"]["min"] == lengths[0]
        and report["caption_words"]["max"] == lengths[-1]
    )
    train = [
        s.get("tokens") or ["a", "dog"]
        for e in doc["images"]
        if e["split"] == "train"
        for s in e["sentences"]
    ]
    vocab = Vocabulary.build(train, 3)
    assert report["vocabulary"]["words"] == len(vocab) - 4 > 0
    tokens = [t for c in train for t in c]
    assert report["vocabulary"]["unk_share"]["train"] == pytest.approx(
        sum(t not in vocab.stoi for t in tokens) / len(tokens), abs=1e-4
    )
    assert report["duplicates"] == {
        "image_ids": [0],
        "n_image_ids": 1,
        "image_files": 1,
        "across_splits": 1,
    }
    assert any("1 unreadable images" in w for w in report["warnings"])
    assert any("in two splits" in w for w in report["warnings"])

    status, out, err = cli("check-data", "--data", data, "--images", photos, "--min-word-freq", "3")
    assert status == 0 and out.splitlines()[-1] == "no problems: ready to train"
    assert "  train        6 found        0 missing        1 unreadable" in out


def test_check_data_exits_non_zero_on_problems_that_stop_training(tmp_path, cli):
    data = flickr_layout(tmp_path, counts=(("train", 4), ("test", 2)))
    status, out, _ = cli("check-data", "--data", data, "--min-word-freq", "50", "--no-decode")
    problems = [line for line in out.splitlines() if line.startswith("problem: ")]
    assert status == 1 and out.splitlines()[-1].startswith(f"{len(problems)} problems")
    assert problems[0].startswith(
        "problem: no images in the val split (training needs train and val"
    )
    assert problems[1].startswith("problem: train: 4 of 4 images missing (100.0%; e.g. ")
    assert problems[1].endswith(f"pass --images {tmp_path / 'Flicker8k_Dataset'}")
    assert problems[-1] == (
        "problem: no word occurs 50 times in the training captions: the "
        "vocabulary would be empty (lower --min-word-freq)"
    )
    report = data_report(data, tmp_path / "Flicker8k_Dataset", min_word_freq=1, progress=False)
    assert report["problems"] == [
        "no images in the val split (training needs train and val; splits here: train, test)"
    ]
