"""The hand-curated ImageNet-1k naming table: order, shape and a few spot checks."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

TABLE = Path(__file__).resolve().parent.parent / "captioner" / "data" / "imagenet_names.tsv"
COLUMNS = ["index", "category", "name", "plural", "article", "detail", "kind", "group"]
KINDS = {"animal", "food", "plant", "vehicle", "object", "scene", "person", "clothing"}
DOG_BREEDS = range(151, 269)  # Chihuahua .. Mexican hairless

# Words whose spoken first sound disagrees with their first letter.
VOWEL_LETTER_CONSONANT_SOUND = ("uni", "use", "usu", "eu", "ewe", "one", "once")  # "a unicorn"
SILENT_H = ("hour", "honest", "honor", "honour", "heir")  # "an hourglass"


def expected_article(name: str) -> str:
    word = name.lower()
    if word.startswith(SILENT_H):
        return "an"
    if word.startswith(VOWEL_LETTER_CONSONANT_SOUND):
        return "a"
    return "an" if word[0] in "aeiou" else "a"


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with TABLE.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        assert reader.fieldnames == COLUMNS
        return list(reader)


@pytest.fixture(scope="module")
def by_index(rows) -> dict[int, dict[str, str]]:
    return {int(r["index"]): r for r in rows}


def test_thousand_rows_in_order(rows):
    assert len(rows) == 1000
    assert [int(r["index"]) for r in rows] == list(range(1000))


def test_categories_match_torchvision(rows):
    import torchvision

    categories = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    assert len(categories) == 1000
    assert [r["category"] for r in rows] == list(categories)


def test_fields_well_formed(rows):
    for r in rows:
        where = f"row {r['index']} ({r['category']})"
        for col in COLUMNS:
            value = r[col]
            assert value, f"{where}: empty {col}"
            assert value == value.strip(), f"{where}: stray whitespace in {col}"
        assert r["name"] == r["name"].lower(), f"{where}: name not lowercase"
        assert r["plural"] == r["plural"].lower(), f"{where}: plural not lowercase"
        assert r["article"] in {"a", "an"}, f"{where}: article {r['article']!r}"
        assert r["article"] == expected_article(r["name"]), f"{where}: '{r['article']} {r['name']}'"
        assert r["kind"] in KINDS, f"{where}: kind {r['kind']!r}"


def test_same_name_same_plural_and_article(rows):
    seen: dict[str, tuple[str, str]] = {}
    for r in rows:
        forms = (r["plural"], r["article"])
        assert seen.setdefault(r["name"], forms) == forms, f"inconsistent forms for {r['name']!r}"


def test_dog_breeds_are_dogs(by_index):
    for k in DOG_BREEDS:
        assert by_index[k]["name"] == "dog", by_index[k]
        assert by_index[k]["kind"] == "animal"
    assert by_index[150]["name"] != "dog"  # sea lion
    assert by_index[269]["name"] != "dog"  # timber wolf


@pytest.mark.parametrize(
    "index,category,name",
    [
        (281, "tabby", "cat"),
        (285, "Egyptian cat", "cat"),
        (967, "espresso", "cup of coffee"),
        (33, "loggerhead", "turtle"),
        (970, "alp", "mountain"),
        (665, "moped", "scooter"),
        (2, "great white shark", "shark"),
        (22, "bald eagle", "eagle"),
        (7, "cock", "rooster"),
        (817, "sports car", "car"),
        (671, "mountain bike", "bicycle"),
        (948, "Granny Smith", "apple"),
        (983, "scuba diver", "diver"),
    ],
)
def test_spot_checks(by_index, index, category, name):
    row = by_index[index]
    assert row["category"] == category
    assert row["name"] == name


def test_spot_check_forms(by_index):
    assert by_index[967]["plural"] == "cups of coffee"
    assert by_index[99]["plural"] == "geese"
    assert by_index[0]["plural"] == "fish"
    assert (by_index[22]["article"], by_index[604]["article"]) == ("an", "an")  # eagle, hourglass
    assert by_index[880]["article"] == "a"  # unicycle
    assert by_index[207]["detail"] == "golden retriever"
    assert {by_index[k]["kind"] for k in (981, 982, 983)} == {"person"}


def test_group_well_formed(rows):
    for r in rows:
        where = f"row {r['index']} ({r['category']})"
        assert r["group"], f"{where}: empty group"
        assert r["group"] == r["group"].strip().lower(), (
            f"{where}: group {r['group']!r} not lowercase"
        )


def test_same_name_same_group(rows):
    seen: dict[str, str] = {}
    for r in rows:
        assert seen.setdefault(r["name"], r["group"]) == r["group"], (
            f"inconsistent group for {r['name']!r}"
        )


@pytest.mark.parametrize(
    "index,category,group",
    [
        (1, "goldfish", "fish"),
        (0, "tench", "fish"),
        (2, "great white shark", "fish"),
        (22, "bald eagle", "bird"),
        (99, "goose", "bird"),
        (7, "cock", "bird"),
        (281, "tabby", "cat"),
        (207, "golden retriever", "dog"),
        (948, "Granny Smith", "fruit"),
        (949, "strawberry", "fruit"),
        (937, "broccoli", "vegetable"),
        (402, "acoustic guitar", "instrument"),
        (497, "church", "building"),
        (805, "soccer ball", "ball"),
    ],
)
def test_group_spot_checks(by_index, index, category, group):
    row = by_index[index]
    assert row["category"] == category
    assert row["group"] == group
