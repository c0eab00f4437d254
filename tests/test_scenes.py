"""Synthetic scenes: reproducible, exact boxes, captions that name every object, Karpathy format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captioner.scenes.backgrounds import BackgroundMaker
from captioner.scenes.compose import compose_scene
from captioner.scenes.dataset import assign_splits, generate_scenes, get_args_parser, main
from captioner.scenes.phrasing import (
    Group,
    box_relation,
    candidate_sentences,
    describe,
    indefinite_article,
)
from captioner.scenes.shapes import shape_sources
from captioner.scenes.stamps import StampInfo, load_stamp_list, load_stamps

SIZE = 128


@pytest.fixture(scope="module")
def sources():
    return shape_sources(
        size=64, colours=["red", "blue", "yellow"], shapes=["circle", "star", "square"]
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, sources):
    out = tmp_path_factory.mktemp("scenes")
    data = generate_scenes(out, count=16, seed=3, sources=sources, size=SIZE, progress=False)
    return out, data


def test_same_seed_gives_identical_files_and_another_seed_does_not(dataset, sources, tmp_path):
    out, _ = dataset
    generate_scenes(
        tmp_path / "again", count=16, seed=3, sources=sources, size=SIZE, progress=False
    )
    assert (out / "captions.json").read_bytes() == (
        tmp_path / "again" / "captions.json"
    ).read_bytes()
    for png in sorted((out / "images").glob("*.png")):
        assert png.read_bytes() == (tmp_path / "again" / "images" / png.name).read_bytes()
    generate_scenes(
        tmp_path / "other", count=16, seed=4, sources=sources, size=SIZE, progress=False
    )
    assert (out / "captions.json").read_bytes() != (
        tmp_path / "other" / "captions.json"
    ).read_bytes()


def test_worker_processes_write_the_same_data_set(dataset, sources, tmp_path):
    out, _ = dataset
    generate_scenes(
        tmp_path / "pool", count=16, seed=3, sources=sources, size=SIZE, progress=False, workers=2
    )
    assert (out / "captions.json").read_bytes() == (
        tmp_path / "pool" / "captions.json"
    ).read_bytes()
    for png in sorted((out / "images").glob("*.png")):
        assert png.read_bytes() == (tmp_path / "pool" / "images" / png.name).read_bytes()
    with pytest.raises(ValueError, match="workers"):
        generate_scenes(tmp_path / "none", count=2, seed=3, sources=sources, workers=0)


def test_karpathy_format(dataset):
    out, data = dataset
    assert json.loads((out / "captions.json").read_text()) == data
    assert data["dataset"] == "scenes"
    for imgid, image in enumerate(data["images"]):
        assert image["imgid"] == imgid
        assert image["filename"] == f"{imgid:06d}.png" and image["filepath"] == "images"
        assert (out / image["filepath"] / image["filename"]).is_file()
        assert image["split"] in ("train", "val", "test")
        assert image["sentids"] == [s["sentid"] for s in image["sentences"]]
        for sentence in image["sentences"]:
            assert sentence["imgid"] == imgid
            assert sentence["raw"][0].isupper() and sentence["raw"].endswith(".")
            assert all(re.fullmatch(r"[a-z0-9]+", t) for t in sentence["tokens"])
            assert sentence["tokens"] == re.findall(r"[a-z0-9]+", sentence["raw"].lower())
    sentids = [sid for image in data["images"] for sid in image["sentids"]]
    assert len(sentids) == len(set(sentids))


def test_five_distinct_captions_that_each_name_every_object(dataset):
    _, data = dataset
    for image in data["images"]:
        sentences = [s["tokens"] for s in image["sentences"]]
        assert len(sentences) == 5 and len({tuple(s) for s in sentences}) == 5
        assert 1 <= len(image["objects"]) <= 3
        for obj in image["objects"]:
            assert obj["words"][0] == obj["head"]
            assert all(set(obj["words"]) & set(tokens) for tokens in sentences)
            assert sorted(k for k, _ in obj["mentions"]) == list(range(5))
            for k, t in obj["mentions"]:
                assert sentences[k][t] in obj["words"]


def test_boxes_are_exactly_the_composited_alpha(dataset, sources):
    out, data = dataset
    for imgid, record in enumerate(data["images"][:8]):
        # the generator draws image k from default_rng([seed, k]): redo it and look inside
        scene = compose_scene(
            np.random.default_rng([3, imgid]), sources, SIZE, BackgroundMaker(SIZE)
        )
        saved = np.asarray(Image.open(out / "images" / record["filename"]))
        assert np.array_equal(saved, scene.image)
        background = scene.background.pixels.astype(np.int16)
        outside = np.ones((SIZE, SIZE), dtype=bool)
        for obj, entry in zip(scene.objects, record["objects"]):
            mask = obj.alpha_mask(SIZE) > 0
            ys, xs = np.nonzero(mask)
            assert entry["box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            x0, y0, x1, y1 = entry["box"]
            assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
            assert entry["name"] == obj.source.name
            # the object really changed those pixels
            assert np.abs(saved.astype(np.int16) - background)[mask].mean() > 20
            outside[y0:y1, x0:x1] = False
        assert np.array_equal(saved[outside], scene.background.pixels[outside])


def test_counts_are_spelled_out(tmp_path, sources):
    data = generate_scenes(
        tmp_path, count=12, seed=5, sources=sources[:1], size=SIZE, progress=False
    )
    seen = set()
    for image in data["images"]:
        n = len(image["objects"])
        seen.add(n)
        for sentence in image["sentences"]:
            if n == 1:
                assert {"two", "three"}.isdisjoint(sentence["tokens"])
            else:
                raw = sentence["raw"].lower()
                number = ["two", "three"][n - 2]
                assert f"{number} red circles" in raw or (n == 2 and "a pair of red circles" in raw)
        if n > 1:
            assert any(["two", "three"][n - 2] in s["tokens"] for s in image["sentences"])
    assert seen & {2, 3}


def test_phrasing_grammar_and_relations():
    assert indefinite_article("apple") == "an" and indefinite_article("orange circle") == "an"
    assert indefinite_article("green bus") == "a" and indefinite_article("unicorn") == "a"
    lion = Group("lion", "lions", "lion", "lions", ((0, 40, 40, 80),), (0,))
    bus = Group("green bus", "green buses", "bus", "buses", ((70, 40, 120, 80),), (1,))
    assert box_relation(lion.boxes[0], bus.boxes[0]) == "left"
    assert box_relation(bus.boxes[0], lion.boxes[0]) == "right"
    assert box_relation((0, 0, 20, 20), (0, 50, 20, 70)) == "above"
    raws = [s.raw for _, _, s in candidate_sentences([lion, bus], SIZE, ["on the grass"])]
    assert "A lion to the left of a green bus." in raws
    assert "A green bus to the right of a lion." in raws
    assert not any("lion to the right" in r or "bus to the left" in r or "above" in r for r in raws)
    pears = Group("pear", "pears", "pear", "pears", ((0, 0, 30, 30), (60, 0, 90, 30)), (0, 1))
    mug = Group("mug", "mugs", "mug", "mugs", ((40, 80, 70, 110),), (2,))
    picked = describe([pears, mug], SIZE, np.random.default_rng(0))
    assert all("two pears" in s.raw.lower() and "a mug" in s.raw.lower() for s in picked)
    assert all(s.tokens[t] == "pears" for s in picked for o, t in s.mentions if o in (0, 1))


def test_split_assignment():
    labels = assign_splits(40, seed=1)
    assert (labels.count("train"), labels.count("val"), labels.count("test")) == (36, 2, 2)
    assert labels == assign_splits(40, seed=1) and labels != assign_splits(40, seed=2)
    assert assign_splits(5, seed=1, split="val") == ["val"] * 5
    with pytest.raises(ValueError):
        assign_splits(5, seed=1, split="dev")


def _fake_stamp(path: Path, colour: tuple[int, int, int], size: tuple[int, int]) -> None:
    """An RGBA blob with a transparent margin, like a real stamp."""
    pixels = np.zeros((size[1], size[0], 4), dtype=np.uint8)
    pixels[10:-10, 20:-20] = colour + (255,)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGBA").save(path)
    path.with_suffix(".txt").write_text("A thing.\n")


def test_fake_stamp_dir_loads_crops_and_warns_about_missing(tmp_path):
    _fake_stamp(tmp_path / "food" / "pear.png", (200, 200, 40), (100, 120))
    _fake_stamp(tmp_path / "vehicles" / "bus.png", (40, 180, 60), (600, 300))
    stamp_list = [
        StampInfo("food/pear.png", "pear", "pears", "pear", "pears"),
        StampInfo("vehicles/bus.png", "green bus", "green buses", "bus", "buses"),
        StampInfo("animals/lion.png", "lion", "lions", "lion", "lions"),
    ]
    with pytest.warns(UserWarning, match="animals/lion.png"):
        loaded = load_stamps(tmp_path, stamp_list, max_side=200)
    assert [s.name for s in loaded] == ["pear", "green bus"]
    assert loaded[0].image.size == (60, 100)  # cropped to the opaque part
    assert max(loaded[1].image.size) == 200 and loaded[1].image.mode == "RGBA"
    data = generate_scenes(
        tmp_path / "out", count=4, seed=0, sources=loaded, size=SIZE, progress=False
    )
    assert {o["head"] for image in data["images"] for o in image["objects"]} <= {"pear", "bus"}


def test_missing_stamps_dir_says_how_to_install(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="apt-get install tuxpaint-stamps-default"):
        load_stamps(tmp_path / "nowhere")
    argv = ["--out", str(tmp_path / "o"), "--count", "1", "--stamps", str(tmp_path / "x")]
    args = get_args_parser().parse_args(argv)
    assert main(args) == 2
    assert "apt-get install tuxpaint-stamps-default" in capsys.readouterr().err


def test_packaged_stamp_list_is_sane():
    stamps = load_stamp_list()
    assert 120 <= len(stamps) <= 200
    assert len({s.name for s in stamps}) == len(stamps)
    assert all(not s.file.endswith("_mirror.png") for s in stamps)
    assert all("cartoon" not in s.file.split("/") for s in stamps)
    assert all(s.name == s.name.lower() and 1 <= len(s.name.split()) <= 3 for s in stamps)
    # a word that names one object must not be a mere modifier in another's name
    # ("orange slice" vs "orange"), or object-word metrics would count it as a wrong object
    heads = {w for s in stamps for w in (s.head, s.head_plural)}
    for s in stamps:
        modifiers = set(s.name.split()) - {s.head} | set(s.plural.split()) - {s.head_plural}
        assert not modifiers & heads, s.name


def test_cli_with_shapes_and_fixed_split(tmp_path):
    argv = ["--out", str(tmp_path), "--count", "3", "--seed", "1", "--shapes", "--size", "96"]
    args = get_args_parser().parse_args(argv + ["--split", "train"])
    assert main(args) == 0
    data = json.loads((tmp_path / "captions.json").read_text())
    assert [image["split"] for image in data["images"]] == ["train"] * 3
    assert Image.open(tmp_path / "images" / "000002.png").size == (96, 96)
    assert main(get_args_parser().parse_args(argv + ["--workers", "0"])) == 2


def test_object_counts_set_how_many_objects_scenes_hold(dataset, sources, tmp_path, capsys):
    _, default = dataset
    assert {len(image["objects"]) for image in default["images"]} >= {1, 2}
    only_three = generate_scenes(
        tmp_path / "three",
        count=12,
        seed=3,
        sources=sources,
        size=SIZE,
        progress=False,
        object_counts=(0, 0, 5),
    )
    assert [len(image["objects"]) for image in only_three["images"]] == [3] * 12
    only_one = generate_scenes(
        tmp_path / "one",
        count=12,
        seed=3,
        sources=sources,
        size=SIZE,
        progress=False,
        object_counts=(1, 0, 0),
    )
    assert [len(image["objects"]) for image in only_one["images"]] == [1] * 12

    argv = ["--out", str(tmp_path / "cli"), "--count", "4", "--shapes", "--size", "96"]
    assert main(get_args_parser().parse_args(argv + ["--object-counts", "0", "1", "0"])) == 0
    data = json.loads((tmp_path / "cli" / "captions.json").read_text())
    assert [len(image["objects"]) for image in data["images"]] == [2] * 4
    for bad in (["0", "0", "0"], ["1", "-1", "1"], ["nan", "1", "1"]):
        assert main(get_args_parser().parse_args(argv + ["--object-counts", *bad])) == 2
        assert "--object-counts" in capsys.readouterr().err


def _photo_folder(root: Path) -> Path:
    """A tiny extracted photo folder: one landscape, two labelled photos (train) and one (test)."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    records = []
    for name, role, split, extra in [
        ("field", "scene", "train", {"places": ["in a field"]}),
        ("owl", "object", "train", {}),
        ("apple", "object", "train", {}),
        ("kettle", "object", "test", {}),
    ]:
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(
            root / "images" / f"{name}.jpg"
        )
        records.append(
            {
                "file": f"images/{name}.jpg",
                "label": name,
                "names": [name],
                "role": role,
                "split": split,
                "source": "test",
                "licence": "CC0-1.0",
                **extra,
            }
        )
    (root / "photos.json").write_text(json.dumps(records))
    return root


def test_real_photos_become_mentioned_backgrounds_and_slot_captioned_images(tmp_path, sources):
    photos = _photo_folder(tmp_path / "photos")
    data = generate_scenes(
        tmp_path / "out", 3, seed=5, sources=sources, size=64, progress=False, photos_dir=photos
    )
    scenes, pictures = data["images"][:3], data["images"][3:]
    assert len(pictures) == 4  # two training photos, each also mirrored; the test photo is left out
    assert [p["photo"] for p in pictures] == ["images/owl.jpg"] * 2 + ["images/apple.jpg"] * 2
    for p in pictures:
        assert (tmp_path / "out" / "images" / p["filename"]).is_file() and p["split"] == "train"
        for s in p["sentences"]:
            assert "<obj>" in s["tokens"] and "<obj>" not in s["raw"]
            assert ("owl" in s["raw"].lower()) == (p["photo"] == "images/owl.jpg")
    assert all(len(s["sentences"]) == 5 for s in scenes)
    maker = BackgroundMaker(
        64,
        kind_weights={"scene": 1.0},
        scene_photos=[(np.zeros((60, 80, 3), np.uint8), ("in a field",))],
    )
    background = maker.make(np.random.default_rng(1))
    assert background.kind == "scene" and background.places == ("in a field",)
