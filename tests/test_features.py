"""The feature cache: computed once, reused while the images match, a leading part served too."""

from __future__ import annotations

import numpy as np
import pytest

from captioner.data.features import cache_features
from captioner.data.karpathy import load_karpathy, split_records
from captioner.scenes.dataset import generate_scenes
from captioner.scenes.shapes import shape_sources


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("feats")
    generate_scenes(
        root, 5, seed=4, sources=shape_sources(), size=96, split_fractions="val", progress=False
    )
    return split_records(load_karpathy(root / "captions.json"), "val")


def test_a_cache_is_reused_whole_or_in_part_and_rebuilt_when_the_images_differ(
    tiny_model, records, tmp_path, monkeypatch
):
    full, meta = cache_features(tiny_model.encoder, records, tmp_path, "val", batch_size=2)
    assert (
        full.shape == (5, 196, 1280)
        and full.dtype == np.float16
        and meta["ids"] == [r.id for r in records]
    )
    assert np.abs(full.astype(np.float32)).sum(axis=(1, 2)).min() > 0  # every image encoded

    calls = []
    real_forward = type(tiny_model.encoder).forward
    monkeypatch.setattr(
        type(tiny_model.encoder),
        "forward",
        lambda self, x: calls.append(len(x)) or real_forward(self, x),
    )
    again, _ = cache_features(tiny_model.encoder, records, tmp_path, "val")
    first3, meta3 = cache_features(tiny_model.encoder, records[:3], tmp_path, "val")
    assert calls == []  # both served from the file, nothing encoded
    assert np.array_equal(again, full) and np.array_equal(first3, full[:3])
    assert meta3["ids"] == [r.id for r in records[:3]] and meta3["bad_ids"] == []

    shuffled = [records[1], records[0]]  # not a leading part: encoded again, in the order asked
    feats, meta = cache_features(tiny_model.encoder, shuffled, tmp_path, "val")
    assert sum(calls) == 2 and meta["ids"] == [records[1].id, records[0].id]
    assert np.allclose(feats[0].astype(np.float32), full[1].astype(np.float32), atol=1e-2)


@pytest.mark.filterwarnings("ignore:skipping")
def test_streams_encode_the_same_features_in_order_and_give_the_threads_back(
    tiny_model, records, tmp_path
):
    import torch

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    bad = type(records[0])(**{**records[2].__dict__, "id": 999, "path": broken})
    mixed = [*records[:2], bad, *records[2:]]
    threads = torch.get_num_threads()
    one, meta1 = cache_features(tiny_model.encoder, mixed, tmp_path / "one", "val", streams=1)
    two, meta2 = cache_features(tiny_model.encoder, mixed, tmp_path / "two", "val", streams=2)
    assert torch.get_num_threads() == threads  # shared out for the run, then restored
    assert meta1["bad_ids"] == meta2["bad_ids"] == [999]
    assert not two[2].any() and all(two[i].any() for i in (0, 1, 3, 4, 5))
    # the same images in the same rows (threads change only the order of float sums)
    np.testing.assert_allclose(two.astype(np.float32), one.astype(np.float32), atol=2e-2)
