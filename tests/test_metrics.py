"""Caption metrics, grounding measures and the evaluate command on a tiny data set made here."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captioner.data.karpathy import ImageRecord, load_karpathy, split_records
from captioner.evaluate import evaluate_captions, get_args_parser, main
from captioner.metrics import (
    GroundingSample,
    bleu4,
    caption_scores,
    meteor_score,
    object_mentions,
    pointing_accuracy,
    ptb_tokenize,
)

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")

REFS = {
    1: ["a red circle left of a green square", "a red circle and a green square"],
    2: ["two blue stars on a white background", "a pair of blue stars"],
    3: ["a yellow star above a black circle", "a black circle under a yellow star"],
}


# --- text metrics ------------------------------------------------------------------------------


def test_identical_captions_score_perfect_bleu_and_positive_cider():
    hyps = {i: refs[0] for i, refs in REFS.items()}
    scores = caption_scores(REFS, hyps, meteor=False)
    assert scores["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert scores["BLEU-1"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ROUGE-L"] == pytest.approx(1.0)
    assert scores["CIDEr"] > 0
    assert scores["METEOR"] is None and scores["missing"] == ["METEOR: not asked for"]
    assert bleu4(REFS, hyps) == pytest.approx(scores["BLEU-4"])


def test_a_wrong_caption_scores_lower():
    good = {i: refs[0] for i, refs in REFS.items()}
    bad = {**good, 1: "a dog runs through the grass"}
    s_good = caption_scores(REFS, good, meteor=False)
    s_bad = caption_scores(REFS, bad, meteor=False)
    for name in ("BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"):
        assert s_bad[name] < s_good[name], name
    assert bleu4(REFS, bad) < bleu4(REFS, good)


def test_scores_ignore_case_and_punctuation():
    hyps = {i: refs[0] for i, refs in REFS.items()}
    shouting = {i: h.upper().replace(" of ", ", of ") + "." for i, h in hyps.items()}
    assert caption_scores(REFS, shouting, meteor=False) == caption_scores(REFS, hyps, meteor=False)


def test_missing_references_are_an_error():
    with pytest.raises(ValueError, match="no reference"):
        caption_scores({1: ["a cat"]}, {1: "a cat", 2: "a dog"}, meteor=False)
    with pytest.raises(ValueError, match="no captions"):
        caption_scores({}, {}, meteor=False)


@pytest.mark.parametrize(
    "raw, tokens",
    [
        ("A man's hat is on the table.", "a man 's hat is on the table"),
        ("Two dogs don't play; they're sleeping!", "two dogs do n't play they 're sleeping"),
        ('He said "hello" -- and left', "he said hello and left"),
        (
            "A T-shirt (red), 3.5 inches at 5:30 p.m.",
            "a t-shirt -lrb- red -rrb- 3.5 inches at 5:30 p.m.",
        ),
        ("The players' uniforms are red ...", "the players uniforms are red"),
    ],
)
def test_ptb_tokenize(raw, tokens):
    assert ptb_tokenize(raw) == tokens
    assert ptb_tokenize(tokens) == tokens  # idempotent: tokenised text may come in again


@needs_java
def test_ptb_tokenize_matches_stanford_ptbtokenizer():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    sentences = [
        "A black dog is running through the grass .",
        "Kids' toys and/or games & #1 $5",
        "Two young girls are playing in the sand , one is wearing a pink swimsuit .",
        'A sign that reads "no parking - tow away zone"',
        "I'm gonna; we'd cannot",
        "A baby (about 1 year old) crawls...",
        "Hello!!! What??",
        "can't won't 1,000 birds",
        "A woman -- wearing a hat - walks.",
        "'quoted' words `like` this, St. Mary's",
    ]
    java = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(sentences)})
    assert [ptb_tokenize(s) for s in sentences] == [java[i][0] for i in range(len(sentences))]


def test_meteor_is_none_without_java(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no java on PATH
    hyps = {i: refs[0] for i, refs in REFS.items()}
    scores = caption_scores(REFS, hyps)
    assert scores["METEOR"] is None
    assert scores["missing"] == ["METEOR: java not found"]
    assert scores["BLEU-4"] == pytest.approx(1.0, abs=1e-6)


def fake_java(folder, script: str) -> None:
    java = folder / "java"
    java.write_text("#!/bin/sh\n" + script + "\n")
    java.chmod(0o755)


def test_meteor_reports_why_java_failed(monkeypatch, tmp_path):
    fake_java(tmp_path, 'echo "Error: Unable to access jarfile meteor-1.5.jar" >&2; exit 1')
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    value, why = meteor_score({1: ["a cat"]}, {1: ["a cat"]}, timeout=30)
    assert value is None and "Unable to access jarfile" in why


def test_meteor_gives_up_on_a_silent_java(monkeypatch, tmp_path):
    fake_java(tmp_path, "exec sleep 60")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    start = time.monotonic()
    value, why = meteor_score({1: ["a cat"]}, {1: ["a cat"]}, timeout=0.5)
    assert value is None and "within" in why
    assert time.monotonic() - start < 10


@needs_java
def test_meteor_gives_up_on_time_instead_of_hanging():
    start = time.monotonic()
    value, why = meteor_score({1: ["a cat"]}, {1: ["a cat"]}, timeout=0.05)
    assert value is None and "within" in why
    assert time.monotonic() - start < 15


# --- grounding ---------------------------------------------------------------------------------

W, H = 280, 140  # 20 x 10 pixels per attention cell
LEFT = {
    "name": "red circle",
    "head": "circle",
    "words": ["circle", "circles"],
    "box": [0, 0, 70, 140],
}
RIGHT = {
    "name": "green square",
    "head": "square",
    "words": ["square", "squares"],
    "box": [210, 0, 280, 140],
}


def peak_at(row: int, col: int) -> np.ndarray:
    """A (14, 14) attention map with all its weight on one cell."""
    alpha = np.zeros((14, 14), dtype=np.float32)
    alpha[row, col] = 1.0
    return alpha


def sample(words: list[str], cols: list[int], objects=(LEFT, RIGHT)) -> GroundingSample:
    return GroundingSample(words, np.stack([peak_at(7, c) for c in cols]), (W, H), list(objects))


def test_pointing_counts_a_peak_inside_the_box_and_not_one_outside():
    inside = pointing_accuracy([sample(["a", "circle"], [0, 1])])
    assert inside["pointing_accuracy"] == 1.0
    assert inside["counts"] == {"object_words": 1, "pointed_words": 1, "pointing_hits": 1}
    outside = pointing_accuracy([sample(["a", "circle"], [0, 12])])  # looks at the square
    assert outside["pointing_accuracy"] == 0.0
    both = pointing_accuracy(
        [sample(["circle", "square"], [1, 12]), sample(["circle", "square"], [12, 12])]
    )
    assert both["pointing_accuracy"] == pytest.approx(3 / 4)


def test_pointing_chance_is_the_box_area_share():
    result = pointing_accuracy([sample(["circle"], [1])])
    assert result["pointing_chance"] == pytest.approx(70 * 140 / (W * H))  # 0.25
    # Two circles: the union of their boxes; overlapping parts count once.
    other = {**LEFT, "box": [35, 0, 105, 70]}
    result = pointing_accuracy([sample(["circle"], [1], objects=(LEFT, other, RIGHT))])
    assert result["pointing_chance"] == pytest.approx((70 * 140 + 35 * 70) / (W * H))


def test_pointing_skips_words_of_absent_objects():
    star = {"name": "star", "head": "star", "words": ["star", "stars"], "box": [0, 0, 10, 10]}
    result = pointing_accuracy(
        [sample(["star", "circle"], [1, 1]), sample(["star"], [1], objects=(star,))]
    )
    assert result["counts"] == {"object_words": 3, "pointed_words": 2, "pointing_hits": 1}
    result = pointing_accuracy([sample(["star", "circle"], [1, 1])], vocabulary={"star", "circle"})
    assert result["counts"] == {"object_words": 2, "pointed_words": 1, "pointing_hits": 1}
    assert pointing_accuracy([sample(["a", "dog"], [0, 0])])["pointing_accuracy"] is None


def test_object_precision_and_recall():
    vocab = {"circle", "circles", "square", "squares", "star", "stars"}
    samples = [
        # names the circle twice and a star that is not there; misses the square
        GroundingSample("a circle and a star and a circle".split(), None, None, [LEFT, RIGHT]),
        # two circles (one head word) and the square, all named
        GroundingSample(
            "two circles and a square".split(),
            None,
            None,
            [LEFT, {**LEFT, "box": [0, 0, 5, 5]}, RIGHT],
        ),
    ]
    result = object_mentions(samples, vocab)
    assert result["counts"] == {
        "object_words": 5,
        "object_words_correct": 4,
        "objects": 4,
        "objects_mentioned": 3,
    }
    assert result["object_precision"] == pytest.approx(4 / 5)
    assert result["object_recall"] == pytest.approx(3 / 4)


# --- evaluate ----------------------------------------------------------------------------------


def test_evaluate_captions_on_precomputed_features(tiny_model):
    records = [
        ImageRecord(id=k, path=Path(f"{k}.png"), split="test", captions=[], references=REFS[k])
        for k in REFS
    ]
    features = torch.rand(3, 196, 1280).half()  # (B, 196, C) as cached: fp16
    result = evaluate_captions(
        tiny_model,
        [([1, 2], features[:2]), ([3], features[2:])],
        records,
        beam_size=2,
        max_len=5,
        meteor=False,
    )
    assert result["n_images"] == 3 and len(result["captions"]) == 3
    assert 0.0 <= result["BLEU-4"] <= 1.0
    assert result["pointing_accuracy"] is None and result["object_recall"] is None


def make_dataset(root) -> str:
    """3 scenes (shapes on a white background) with objects in Karpathy format, + 1 broken file."""
    images = root / "images"
    images.mkdir()
    red, green = (214, 36, 36), (40, 160, 60)
    scenes = [
        (
            "a red circle left of a green square",
            [
                ("red circle", "circle", red, (8, 20, 40, 52)),
                ("green square", "square", green, (60, 16, 92, 48)),
            ],
        ),
        ("a green square", [("green square", "square", green, (30, 20, 70, 60))]),
        (
            "two red circles",
            [
                ("red circle", "circle", red, (4, 4, 30, 30)),
                ("red circle", "circle", red, (60, 40, 90, 70)),
            ],
        ),
    ]
    entries = []
    for k, (text, objs) in enumerate(scenes):
        im = Image.new("RGB", (96, 80), (255, 255, 255))
        objects = []
        for name, head, colour, box in objs:
            im.paste(colour, box)
            objects.append(
                {
                    "name": name,
                    "head": head,
                    "words": [head, head + "s"],
                    "box": list(box),
                    "mentions": 1,
                }
            )
        im.save(images / f"scene{k}.png")
        entries.append(
            {
                "filename": f"scene{k}.png",
                "imgid": k,
                "split": "test",
                "objects": objects,
                "sentences": [{"raw": text.capitalize() + ".", "tokens": text.split()}],
            }
        )
    (images / "broken.png").write_bytes(b"not a png")
    entries.append(
        {
            "filename": "broken.png",
            "imgid": 3,
            "split": "test",
            "objects": [],
            "sentences": [{"raw": "nothing", "tokens": ["nothing"]}],
        }
    )
    entries.append(
        {
            "filename": "train0.png",
            "imgid": 4,
            "split": "train",
            "objects": [
                {"name": "star", "head": "star", "words": ["star", "stars"], "box": [0, 0, 4, 4]}
            ],
            "sentences": [{"raw": "a star", "tokens": ["a", "star"]}],
        }
    )
    path = root / "captions.json"
    path.write_text(json.dumps({"images": entries}))
    return str(path)


def test_karpathy_loader_resolves_paths(tmp_path):
    data = make_dataset(tmp_path)
    records = split_records(load_karpathy(data), "test")
    assert [r.id for r in records] == [0, 1, 2, 3]
    assert records[0].path == tmp_path / "images" / "scene0.png"
    assert records[0].references == ["A red circle left of a green square."]
    assert str(load_karpathy(data, images_dir="/elsewhere")[0].path) == "/elsewhere/scene0.png"
    with pytest.raises(ValueError, match="no images in split 'val'"):
        split_records(records, "val")


def test_evaluate_cli_end_to_end(tmp_path, tiny_checkpoint, capsys):
    data = make_dataset(tmp_path)
    out = tmp_path / "out" / "captions.json"
    args = get_args_parser().parse_args(
        [
            "--checkpoint",
            tiny_checkpoint,
            "--data",
            data,
            "--json",
            "--beam-size",
            "2",
            "--batch-size",
            "2",
            "--max-len",
            "6",
            "--no-meteor",
            "--out",
            str(out),
        ]
    )
    assert main(args) == 3  # 1 of 4 images unreadable: more than 1%; the scores are of the rest
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert "broken.png" in captured.err and "1 of the 4 images of split 'test'" in captured.err
    for key in (
        "BLEU-1",
        "BLEU-2",
        "BLEU-3",
        "BLEU-4",
        "METEOR",
        "ROUGE-L",
        "CIDEr",
        "pointing_accuracy",
        "pointing_chance",
        "object_precision",
        "object_recall",
        "counts",
        "n_images",
        "beam_size",
        "seconds",
        "missing",
    ):
        assert key in result, key
    assert result["n_images"] == 3 and result["beam_size"] == 2 and result["seconds"] > 0
    assert result["counts"]["skipped"] == 1 and result["counts"]["objects"] == 4
    for name in ("BLEU-1", "BLEU-4", "ROUGE-L"):
        assert 0.0 <= result[name] <= 1.0
    assert result["CIDEr"] >= 0.0 and result["METEOR"] is None
    for name in ("pointing_accuracy", "pointing_chance", "object_precision", "object_recall"):
        assert result[name] is None or 0.0 <= result[name] <= 1.0
    assert result["object_recall"] is not None  # every test image has objects
    written = json.loads(out.read_text())
    assert len(written["captions"]) == 3
    assert {"id", "image", "caption", "references"} <= set(written["captions"][0])

    assert result["no_repeat_ngram"] == 0 and written["no_repeat_ngram"] == 0  # the model's own

    args = get_args_parser().parse_args(
        [
            "--checkpoint",
            tiny_checkpoint,
            "--data",
            data,
            "--max-images",
            "1",
            "--no-meteor",
            "--beam-size",
            "1",
            "--no-repeat-ngram",
            "2",
        ]
    )
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "BLEU-4" in table and "object recall" in table and "no repeated 2-grams" in table
    with pytest.raises(SystemExit) as bad:  # refused as it is parsed, by the library's own check
        get_args_parser().parse_args(
            ["--checkpoint", tiny_checkpoint, "--data", data, "--no-repeat-ngram", "-1"]
        )
    err = capsys.readouterr().err
    assert bad.value.code == 2 and "--no-repeat-ngram" in err and "must not be negative" in err


def test_evaluate_cli_rejects_bad_input(tmp_path, capsys):
    data = make_dataset(tmp_path)
    assert main(get_args_parser().parse_args(["--data", data, "--split", "val"])) == 2
    assert "no images in split 'val'" in capsys.readouterr().err
    assert main(get_args_parser().parse_args(["--data", str(tmp_path / "nope.json")])) == 2
