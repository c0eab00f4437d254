"""Checkpoint folders: round trips, and clear refusals of anything broken or unsafe."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from captioner import Captioner, CheckpointError
from captioner.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_gives_identical_captions(tmp_path, tiny_model, photo):
    path = tiny_model.save(tmp_path / "full", half=False)
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "vocab.json",
    ]
    loaded = Captioner.load(path)
    assert loaded.vocab == tiny_model.vocab
    a, b = tiny_model.caption(photo), loaded.caption(photo)
    assert a.words == b.words and a.score == pytest.approx(b.score, abs=1e-5)
    np.testing.assert_allclose(a.alphas, b.alphas, atol=1e-6)


def test_fp16_checkpoint_is_half_the_size_and_stable(tmp_path, tiny_checkpoint, photo):
    m1, m2 = Captioner.load(tiny_checkpoint), Captioner.load(tiny_checkpoint)
    assert m1.caption(photo).words == m2.caption(photo).words
    tensors = load_file(f"{tiny_checkpoint}/model.safetensors")
    assert all(t.dtype == torch.float16 for t in tensors.values())
    assert all(k.startswith("decoder.") for k in tensors)  # frozen encoder: weights not stored


def test_config_rebuilds_the_model(tiny_checkpoint):
    config = json.loads(open(f"{tiny_checkpoint}/config.json").read())
    assert config["encoder"] == {"name": "efficientnet-lite2", "fine_tune": False}
    assert config["decoder"]["decoder_dim"] == 64 and config["decoder"]["encoder_dim"] == 1280


def copy_ckpt(src, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("missing", ["config.json", "vocab.json", "model.safetensors"])
def test_missing_file_is_named(tmp_path, tiny_checkpoint, missing):
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path)
    (ckpt / missing).unlink()
    with pytest.raises(CheckpointError, match=missing.replace(".", r"\.")):
        Captioner.load(ckpt)


def test_unknown_encoder(tmp_path, tiny_checkpoint):
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["encoder"]["name"] = "alexnet"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown encoder 'alexnet'"):
        Captioner.load(ckpt)


def test_vocabulary_that_does_not_match_the_weights(tmp_path, tiny_checkpoint):
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path)
    words = json.loads((ckpt / "vocab.json").read_text())["itos"]
    (ckpt / "vocab.json").write_text(json.dumps({"itos": words + ["zebra"]}))
    with pytest.raises(CheckpointError, match="vocab.json.*words"):
        Captioner.load(ckpt)


def test_shape_mismatch_names_the_tensor(tmp_path, tiny_checkpoint):
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path)
    tensors = load_file(str(ckpt / "model.safetensors"))
    tensors["decoder.init_h.weight"] = torch.zeros(3, 3, dtype=torch.float16)
    save_file(tensors, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match="init_h.weight"):
        Captioner.load(ckpt)


def test_corrupted_weights_file(tmp_path, tiny_checkpoint):
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path)
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        Captioner.load(ckpt)


def test_pickle_is_refused_and_never_run(tmp_path, tiny_checkpoint):
    """A pickled 'weights' file that would run code when unpickled is refused unread."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    ckpt = copy_ckpt(tiny_checkpoint, tmp_path)
    (ckpt / "model.safetensors").write_bytes(pickle.dumps({"decoder.fc.weight": Exploit()}))
    with pytest.raises(CheckpointError, match="safetensors"):
        Captioner.load(ckpt)
    assert not marker.exists()
    # A .pt file given as the checkpoint is refused as well.
    torch.save({"x": 1}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="folder"):
        Captioner.load(tmp_path / "model.pt")


def test_bad_json_config(tmp_path, tiny_checkpoint):
    ckpt = copy_ckpt(tiny_checkpoint, tmp_path)
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json.*JSON"):
        load_checkpoint(ckpt)


def test_missing_default_checkpoint_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTIONER_CHECKPOINT", str(tmp_path / "nothing"))
    with pytest.raises(CheckpointError, match="no default model"):
        Captioner.load()


def test_atomic_save_replaces_old_checkpoint(tmp_path, tiny_model):
    path = tmp_path / "ck"
    tiny_model.save(path, extra={"n": 1})
    tiny_model.save(path, extra={"n": 2})
    assert json.loads((path / "config.json").read_text())["extra"] == {"n": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temp folders left behind


def test_saving_over_a_checkpoint_keeps_its_other_files_but_not_stale_training_state(
    tmp_path, tiny_model
):
    path = tmp_path / "ck"
    data = tiny_model.checkpoint_data({"n": 1})
    data.training_tensors = {"step": torch.zeros(1)}
    save_checkpoint(path, data)
    (path / "README.md").write_text("# my model card\n")
    (path / "figures").mkdir()
    (path / "figures" / "curve.txt").write_text("1 2 3")
    tiny_model.save(path, extra={"n": 2})  # weights only, as shipped
    assert (path / "README.md").read_text() == "# my model card\n"
    assert (path / "figures" / "curve.txt").read_text() == "1 2 3"
    assert not (
        path / "training.safetensors"
    ).exists()  # the old optimizer state is not carried over
    assert load_checkpoint(path).extra == {"n": 2}


def test_deep_output_travels_in_the_config(tmp_path, photo):
    from tests.conftest import make_tiny_captioner

    model = make_tiny_captioner(deep_output=True)
    path = model.save(tmp_path / "deep", half=False)
    assert json.loads((path / "config.json").read_text())["decoder"]["deep_output"] is True
    loaded = Captioner.load(path)
    assert loaded.decoder.config.deep_output
    assert loaded.caption(photo, beam_size=3).words == model.caption(photo, beam_size=3).words


def test_config_without_deep_output_loads_as_an_older_checkpoint(tmp_path, tiny_checkpoint):
    ckpt = tmp_path / "old"
    shutil.copytree(tiny_checkpoint, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    del config["decoder"]["deep_output"]
    (ckpt / "config.json").write_text(json.dumps(config))
    assert not Captioner.load(ckpt).decoder.config.deep_output
    config["decoder"]["deep_output"] = "yes"
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="deep_output must be true or false"):
        Captioner.load(ckpt)


def test_decoding_setting_travels_with_the_model(tmp_path, tiny_checkpoint, photo):
    model = Captioner.load(tiny_checkpoint)
    assert model.no_repeat_ngram == 0  # saved before the setting existed: off
    model.no_repeat_ngram = 2
    path = model.save(tmp_path / "norepeat", half=False)
    loaded = Captioner.load(path)
    assert loaded.no_repeat_ngram == 2
    assert loaded.caption(photo).words == model.caption(photo).words
    assert (
        loaded.caption(photo, no_repeat_ngram=0).words
        == model.caption(photo, no_repeat_ngram=0).words
    )
    config = json.loads((path / "config.json").read_text())
    for bad in (-1, "2", True, 1001):
        config["no_repeat_ngram"] = bad
        (path / "config.json").write_text(json.dumps(config))
        with pytest.raises(CheckpointError, match="no_repeat_ngram"):
            Captioner.load(path)
