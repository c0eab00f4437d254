"""Attention supervision from object boxes (`train --alpha-box`): targets, alignment, loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captioner.data.grounding import box_coverage, mention_targets
from captioner.data.karpathy import ImageRecord
from captioner.decoder import Decoder, DecoderConfig, attention_box_loss, caption_loss
from captioner.train import CaptionBatches
from captioner.vocab import Vocabulary


def test_box_coverage_is_the_share_of_each_cell_inside_the_box():
    # 140x70 image on a 14x14 grid: cells are 10 x 5 pixels.
    cover = box_coverage([0, 0, 70, 35], (140, 70), 14)  # the top-left quarter
    assert cover.shape == (14, 14)
    assert np.all(cover[:7, :7] == 1) and cover[7:].sum() == 0 and cover[:, 7:].sum() == 0
    half = box_coverage([5, 0, 10, 5], (140, 70), 14)  # the right half of the first cell
    assert half[0, 0] == pytest.approx(0.5) and half.sum() == pytest.approx(0.5)
    assert box_coverage([200, 0, 300, 10], (140, 70), 14).sum() == 0  # outside the image


def test_a_word_naming_two_objects_targets_both_boxes():
    objects = [
        {"box": [0, 0, 10, 10], "mentions": [[0, 1], [1, 2]]},
        {"box": [130, 60, 140, 70], "mentions": [[0, 1]]},
    ]
    targets = mention_targets(objects, (140, 70), n_captions=2, grid=14)
    first = targets[0][1].reshape(14, 14)
    assert first[0, 0] == 1 and first[13, 13] == 1 and first.sum() == pytest.approx(2 + 2)
    assert set(targets[1]) == {2} and targets[1][2].reshape(14, 14)[13, 13] == 0


def test_batches_put_each_box_at_the_step_that_predicts_its_word(tmp_path):
    from PIL import Image

    path = tmp_path / "scene.png"
    Image.new("RGB", (140, 140)).save(path)
    captions = [["a", "red", "tree"], ["two", "trees"]]
    objects = [
        {
            "name": "tree",
            "head": "tree",
            "words": ["tree", "trees"],
            "box": [0, 0, 70, 70],
            "mentions": [[0, 2], [1, 1]],
        }
    ]
    record = ImageRecord(id=0, path=path, split="train", captions=captions, objects=objects)
    vocab = Vocabulary.build(captions)
    batches = CaptionBatches([record], vocab, max_len=10, batch_size=2, seed=0, grid=14)
    _, caps, targets = next(batches.epoch(0))
    steps = caps.size(1) - 1
    assert targets.shape == (2, steps, 196)
    for row in range(2):
        words = vocab.decode(caps[row].tolist())
        named = targets[row].sum(dim=1) > 0  # (T,)
        # step t predicts captions[:, t+1]: the word at step t must be the one naming the tree
        assert [words[t] for t in torch.nonzero(named).flatten().tolist()] in (["tree"], ["trees"])
        assert targets[row][named].view(-1, 14, 14)[0, :7, :7].min() == 1
    plain = CaptionBatches([record], vocab, max_len=10, batch_size=2, seed=0)
    assert next(plain.epoch(0))[2] is None  # no grid: no targets, the paper's training


def test_box_loss_is_low_when_attention_is_inside_the_box():
    targets = torch.zeros(1, 2, 4)  # (B, T, P): step 0 names an object in cells 0 and 1
    targets[0, 0, :2] = 1.0
    inside = torch.tensor([[[0.5, 0.5, 0.0, 0.0], [0.25] * 4]])  # (B, T, P)
    outside = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.25] * 4]])
    assert attention_box_loss(inside, targets).item() == pytest.approx(0.0, abs=1e-6)
    assert attention_box_loss(outside, targets).item() > 10  # -log(1e-6)
    none = attention_box_loss(inside.requires_grad_(), torch.zeros(1, 2, 4))
    assert none.item() == 0 and none.requires_grad


def test_training_on_the_box_loss_moves_attention_into_the_box():
    torch.manual_seed(0)
    dec = Decoder(
        DecoderConfig(
            vocab_size=12, encoder_dim=8, embed_dim=8, attention_dim=8, decoder_dim=16, dropout=0.0
        )
    )
    features = torch.randn(4, 16, 8)  # (B, P, E): a 4x4 grid
    captions = torch.tensor([[1, 5, 6, 2, 0]] * 4)  # <start> w w <end> <pad>
    targets = torch.zeros(4, 4, 16)  # (B, T, P): the word at step 1 names the top-left cell
    targets[:, 1, 0] = 1.0

    def mass() -> float:
        with torch.no_grad():
            _, alphas, _ = dec(features, captions)
        return float(alphas[:, 1, 0].mean())

    before = mass()
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    for _ in range(100):
        logits, alphas, _ = dec(features, captions)
        loss = caption_loss(
            logits, captions, alphas, alpha_c=0.0, box_targets=targets, alpha_box=1.0
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert before < 0.2 and mass() > 0.6
