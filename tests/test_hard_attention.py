"""Hard (stochastic) attention: the REINFORCE estimator, the baseline, the sampled context, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from captioner.decoder import Decoder, DecoderConfig
from captioner.hard_attention import (
    HardAttentionObjective,
    attention_entropy,
    location_log_probs,
    reinforce_loss,
    word_log_probs,
)
from captioner.train import TrainingModule


def make_decoder(attention: str = "hard", seed: int = 0, **kw) -> Decoder:
    torch.manual_seed(seed)
    config = dict(
        vocab_size=9, encoder_dim=6, embed_dim=5, attention_dim=7, decoder_dim=8, dropout=0.0
    )
    return Decoder(DecoderConfig(**{**config, **kw}, attention=attention))


def batch(seed: int = 1, b: int = 4, p: int = 10):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(b, p, 6, generator=g)  # (B, P, E)
    captions = torch.tensor(
        [[1, 4, 5, 6, 2, 0], [1, 7, 2, 0, 0, 0], [1, 3, 8, 4, 5, 2], [1, 5, 2, 0, 0, 0]]
    )[:b]  # <start>=1, <end>=2, <pad>=0
    return features, captions


def test_reinforce_estimates_the_gradient_of_an_expected_reward():
    """A problem whose gradient is known: J(theta) = sum_s softmax(theta)_s r_s has the gradient
    alpha * (r - J). The mean of REINFORCE estimates over many draws must match it, with any
    baseline (a baseline changes the variance, not the expectation)."""
    theta = torch.tensor([0.3, -1.0, 0.8, 0.0, -0.4])
    reward = torch.tensor([1.0, -2.0, 0.5, 3.0, -0.7])
    alpha = torch.softmax(theta, 0)
    exact = alpha * (reward - (alpha * reward).sum())  # dJ/dtheta
    torch.manual_seed(0)
    n = 200_000
    for baseline in (0.0, 2.0):
        t = theta.clone().requires_grad_(True)
        a = torch.softmax(t, 0).expand(n, 1, -1)  # (N, T=1, P)
        cells = torch.multinomial(a[:, 0].detach(), 1)  # (N, 1)
        loss = reinforce_loss(reward[cells[:, 0]], baseline, location_log_probs(a, cells), n)
        loss.backward()
        # minimising the loss follows -dJ/dtheta
        assert torch.allclose(-t.grad, exact, atol=0.02), (baseline, -t.grad, exact)
    # large enough that a wrong sign, or a gradient through the reward, would fail
    assert exact.abs().max() > 0.3


def test_the_baseline_is_a_moving_average_of_the_sampled_rewards():
    objective = HardAttentionObjective(baseline_decay=0.9)
    assert math.isnan(float(objective.baseline))
    assert objective.update_baseline(torch.tensor([-4.0, -2.0])) == pytest.approx(-3.0)
    assert float(objective.baseline) == pytest.approx(-3.0)  # starts at the first batch's mean
    before = objective.update_baseline(torch.tensor([-1.0, -1.0]))
    assert before == pytest.approx(-3.0)  # the advantage is measured against b before update
    assert float(objective.baseline) == pytest.approx(0.9 * -3.0 + 0.1 * -1.0)


def test_location_log_probs_and_word_log_probs_ignore_padding():
    alphas = torch.tensor([[[0.25, 0.75], [0.5, 0.5]]])  # (1, 2, 2)
    cells = torch.tensor([[1, -1]])
    assert location_log_probs(alphas, cells)[0].tolist() == pytest.approx([math.log(0.75), 0.0])
    logits = torch.zeros(1, 2, 4)  # uniform over 4 words
    captions = torch.tensor([[1, 3, 0]])
    assert word_log_probs(logits, captions, 0)[0].tolist() == pytest.approx([math.log(0.25), 0.0])
    mask = torch.tensor([[True, False]])
    assert float(attention_entropy(alphas, mask)) == pytest.approx(
        -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    )


def test_sampled_locations_follow_the_attention_and_the_context_is_that_cell():
    dec = make_decoder()
    alpha = torch.tensor([0.1, 0.6, 0.0, 0.3]).expand(1, 20_000, -1)  # (B=1, K, P=4)
    features = torch.randn(1, 4, 6)
    torch.manual_seed(3)
    context, where = dec.context(alpha, features, "sample")
    share = torch.bincount(where[0], minlength=4).float() / where.numel()
    assert torch.allclose(share, alpha[0, 0], atol=0.015)  # never cell 2, 60% cell 1
    assert torch.equal(context[0], features[0, where[0]])
    context, where = dec.context(alpha, features, "argmax")
    assert (where == 1).all() and torch.equal(context[0, 0], features[0, 1])
    context, where = dec.context(alpha, features, "expected")
    assert where is None and torch.allclose(context[0, 0], alpha[0, 0] @ features[0])


def test_a_hard_decoder_decodes_from_the_most_likely_cell():
    dec = make_decoder(hard_decoding="argmax").eval()
    features, _ = batch()
    h, c = dec.init_state(features)
    words = torch.full((4, 1), 1)
    projected = dec.attention.project(features)
    logits, _, _, alpha = dec.step(words, h, c, features, projected)
    cell = alpha.argmax(dim=2)  # (B, 1)
    by_hand = dec.advance(words, h, c, features[torch.arange(4), cell[:, 0]].unsqueeze(1))[0]
    assert torch.equal(logits, by_hand)
    soft = dec.advance(words, h, c, torch.bmm(alpha, features))[0]
    assert not torch.allclose(logits, soft)  # a different context from the soft one
    dec.config.hard_decoding = "expected"
    assert torch.allclose(dec.step(words, h, c, features, projected)[0], soft)


def test_teacher_forcing_reports_the_sampled_cells():
    dec = make_decoder()
    features, captions = batch()
    torch.manual_seed(0)
    logits, alphas, cells = dec(features, captions, 0, "sample")
    real = captions[:, 1:] != 0
    assert ((cells >= 0) == real).all() and (cells[~real] == -1).all()  # -1 at padding
    assert (alphas.gather(2, cells.clamp_min(0).unsqueeze(2)).squeeze(2)[real] > 0).all()
    assert dec(features, captions, 0, "expected")[2] is None
    soft = make_decoder("soft")
    assert soft(features, captions)[2] is None


def test_without_the_location_terms_a_sampled_batch_does_not_train_the_attention():
    """The sampled context is a_s: no gradient reaches alpha through it, only through REINFORCE
    and the entropy bonus (and the soft half of the batches)."""
    dec = make_decoder()
    features, captions = batch()
    torch.manual_seed(0)
    logits, alphas, cells = dec(features, captions, 0, "sample")
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), captions[:, 1:], ignore_index=0)
    ce.backward(retain_graph=True)
    assert (
        dec.attention.full_att.weight.grad is None or not dec.attention.full_att.weight.grad.any()
    )
    assert dec.lstm.weight_ih.grad.abs().sum() > 0
    dec.zero_grad()
    objective = HardAttentionObjective(reinforce_weight=0.1, entropy_weight=0.0)
    objective(logits.detach(), captions, alphas, cells, 0)  # sets the baseline
    objective(logits.detach() * 2, captions, alphas, cells, 0).backward()
    assert dec.attention.full_att.weight.grad.abs().sum() > 0


class _Model:
    def __init__(self, decoder):
        self.encoder, self.decoder = torch.nn.Identity(), decoder
        self.vocab = type("V", (), {"pad": 0})()


def _loss_and_grads(seed: int):
    module = TrainingModule(_Model(make_decoder(dropout=0.3)), alpha_c=1.0)
    features, captions = batch()
    torch.manual_seed(seed)
    losses, grads = [], []
    for _ in range(4):  # several batches: both rules are drawn
        loss = module(features, captions)
        module.zero_grad()
        loss.backward()
        losses.append(loss.item())
        grads.append(module.decoder.attention.full_att.weight.grad.clone())
    return losses, grads, float(module.hard.baseline)


def test_hard_training_repeats_under_a_seed_and_differs_under_another():
    a, b, c = _loss_and_grads(7), _loss_and_grads(7), _loss_and_grads(8)
    assert a[0] == b[0] and all(torch.equal(x, y) for x, y in zip(a[1], b[1])) and a[2] == b[2]
    assert a[0] != c[0]


def test_training_module_mixes_sampled_and_expected_batches():
    module = TrainingModule(_Model(make_decoder()), alpha_c=0.0)
    torch.manual_seed(0)
    rules = [module.hard.draw() for _ in range(400)]
    assert 0.4 < rules.count("sample") / 400 < 0.6 and set(rules) == {"sample", "expected"}
    soft = TrainingModule(_Model(make_decoder("soft")), alpha_c=0.0)
    assert soft.hard is None


def test_unknown_attention_kinds_are_rejected():
    with pytest.raises(ValueError, match="unknown attention 'stochastic'; known: soft, hard"):
        DecoderConfig(vocab_size=5, attention="stochastic")
    with pytest.raises(ValueError, match="known: expected, argmax"):
        DecoderConfig(vocab_size=5, attention="hard", hard_decoding="sample")


# ---- a hard-attention model end to end: checkpoint, Caption.cells, pictures, command line


@pytest.fixture(scope="module")
def hard_checkpoint(tmp_path_factory) -> str:
    from tests.conftest import make_tiny_captioner

    model = make_tiny_captioner(max_len=20, deep_output=True, attention="hard")
    path = tmp_path_factory.mktemp("hard") / "tiny-hard"
    model.save(path)
    return str(path)


def test_a_hard_checkpoint_loads_as_hard_and_an_old_one_as_soft(hard_checkpoint, tiny_checkpoint):
    import json
    from pathlib import Path

    from captioner import Captioner, CheckpointError, attention_kind

    assert attention_kind(hard_checkpoint) == "hard"
    assert Captioner.load(hard_checkpoint).decoder.config.attention == "hard"
    config = json.loads((Path(tiny_checkpoint) / "config.json").read_text())
    assert attention_kind(tiny_checkpoint) == "soft"
    # a config written before hard attention existed has no such field: soft
    config["decoder"].pop("attention", None)
    folder = Path(hard_checkpoint).parent / "old"
    folder.mkdir(exist_ok=True)
    for name in ("vocab.json", "model.safetensors"):
        (folder / name).write_bytes((Path(tiny_checkpoint) / name).read_bytes())
    (folder / "config.json").write_text(json.dumps(config))
    assert (
        attention_kind(folder) == "soft"
        and Captioner.load(folder).decoder.location_rule == "expected"
    )
    config["decoder"]["attention"] = "wandering"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="wandering"):
        Captioner.load(folder)
    with pytest.raises(CheckpointError, match="wandering"):
        attention_kind(folder)


def test_a_hard_caption_says_which_cell_each_word_chose(hard_checkpoint, photo):
    from captioner import Captioner

    model = Captioner.load(hard_checkpoint)
    assert model.decoder.location_rule == "expected"  # the default: the authors' way
    cap = model.caption(photo, beam_size=2)
    assert cap.cells == [int(a.argmax()) for a in cap.alphas] and cap.words
    assert cap.to_dict()["cells"] == cap.cells
    # decoding from the chosen cell alone: other scores, cells still the attention's argmax
    one_cell = Captioner.load(hard_checkpoint, hard_decoding="argmax")
    hard = one_cell.caption(photo, beam_size=2)
    assert hard.cells == [int(a.argmax()) for a in hard.alphas] and hard.score != cap.score
    model.decoder.config.hard_decoding = "argmax"  # the packed copy follows a changed setting
    assert model.caption(photo, beam_size=2).score == hard.score
    with pytest.raises(ValueError, match="unknown hard_decoding 'sample'"):
        Captioner.load(hard_checkpoint, hard_decoding="sample")


def test_a_lit_cell_is_that_cell_of_the_picture():
    from captioner.attention_viz import lit_cell

    lit = lit_cell(13, (280, 140))  # row 0, column 13: the top-right cell of a wide picture
    ys, xs = np.nonzero(lit)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (0, 9, 260, 279)
    lit = lit_cell(14 * 13, (140, 140))  # row 13, column 0: bottom left
    ys, xs = np.nonzero(lit)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (130, 139, 0, 9)


def test_the_command_line_draws_and_reports_a_hard_model_s_cells(tmp_path, hard_checkpoint, photo):
    import json
    import subprocess
    import sys

    from PIL import Image

    img = tmp_path / "astronaut.png"
    Image.fromarray(photo).save(img)
    r = subprocess.run(
        [
            sys.executable, "-m", "captioner", "caption", str(img), "--checkpoint",
            hard_checkpoint, "--json", "--alphas", "--grid", str(tmp_path / "grid"),
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["cells"] == [int(np.argmax(a)) for a in rec["alphas"]]
    assert (tmp_path / "grid" / "astronaut.png").stat().st_size > 1000


def test_the_objective_adds_the_paper_s_terms_computed_by_hand():
    """Two captions (one padded), three steps, four cells: the REINFORCE and entropy terms of
    eq. 12 as numbers, with the baseline from the first batch, then from a set value."""
    logits = torch.tensor(
        [
            [[2.0, 0.0, 1.0, -1.0], [0.5, 0.5, 2.0, 0.0], [0.0, 3.0, 0.0, 1.0]],
            [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 4.0], [9.0, 9.0, 9.0, 9.0]],
        ]
    )  # (B=2, T=3, V=4)
    captions = torch.tensor([[1, 2, 2, 3], [1, 2, 0, 0]])  # the second: 1 word, then <pad>=0
    alphas = torch.tensor(
        [
            [[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]],
            [[0.4, 0.4, 0.1, 0.1], [0.05, 0.05, 0.2, 0.7], [0.25, 0.25, 0.25, 0.25]],
        ]
    )  # (B, T, P)
    cells = torch.tensor([[3, 0, 0], [1, -1, -1]])  # the chosen cells; -1 at padding

    log_softmax = torch.log_softmax(logits, dim=2)
    word = [
        [log_softmax[0, t, w] for t, w in enumerate([2, 2, 3])],
        [log_softmax[1, 0, 2]],
    ]
    assert torch.allclose(word_log_probs(logits, captions, 0)[0], torch.stack(word[0]))
    rewards = torch.stack([sum(word[0]) / 3, sum(word[1]) / 1])  # mean log p per word
    where = [
        [alphas[0, 0, 3], alphas[0, 1, 0], alphas[0, 2, 0]],
        [alphas[1, 0, 1]],
    ]
    log_p_cells = torch.stack(
        [sum(torch.log(a) for a in where[0]), sum(torch.log(a) for a in where[1])]
    )
    entropy = [-(a * torch.log(a)).sum() for a in [*alphas[0], alphas[1, 0]]]
    mean_entropy = sum(entropy) / 4

    def by_hand(baseline: float) -> torch.Tensor:
        reinforce = -((rewards - baseline) * log_p_cells).sum() / 4  # 4 real words
        return -0.002 * mean_entropy + 0.1 * reinforce

    objective = HardAttentionObjective()
    assert (objective.reinforce_weight, objective.entropy_weight) == (0.1, 0.002)  # the authors'
    assert (objective.baseline_decay, objective.sample_prob) == (0.9, 0.5)  # the paper's
    first = objective(logits, captions, alphas, cells)  # <pad> is 0 by default
    assert torch.allclose(first, by_hand(float(rewards.mean())), atol=1e-6)
    objective.baseline.fill_(-1.5)
    assert torch.allclose(objective(logits, captions, alphas, cells), by_hand(-1.5), atol=1e-6)
    assert float(objective.baseline) == pytest.approx(0.9 * -1.5 + 0.1 * float(rewards.mean()))
    objective.eval()  # no update outside training
    before = float(objective.baseline)
    assert torch.allclose(objective(logits, captions, alphas, cells), by_hand(before), atol=1e-6)
    assert float(objective.baseline) == before
    # an expected-context batch: the entropy bonus alone
    alone = objective(logits, captions, alphas, None)
    assert torch.allclose(alone, -0.002 * mean_entropy, atol=1e-7)
