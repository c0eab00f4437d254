"""The attention score computed in blocks (captioning and training) and the packed teacher
forcing compute what the plain formulas compute, values and gradients."""

import pytest
import torch

from captioner.attention import BlockedScores, SoftAttention
from captioner.decoder import Decoder, DecoderConfig, caption_loss


def plain_scores(att: SoftAttention, projected, att2, cov=None):
    """The formula written out, all at once: (B, K, P)."""
    total = projected.unsqueeze(1) + att2.unsqueeze(2)  # (B, K, P, A)
    if cov is not None:
        total = total + cov.unsqueeze(3) * cov.size(2) * att.coverage_att.weight.view(-1)
    return att.full_att(torch.relu(total)).squeeze(3)


@pytest.mark.parametrize("coverage,b,p", [(False, 5, 196), (True, 5, 196), (False, 9, 4)])
def test_attention_scores_in_blocks_equal_one_block(coverage, b, p, monkeypatch):
    torch.manual_seed(2)
    att = SoftAttention(24, 20, 12, coverage=coverage)
    projected = torch.randn(b, p, 12)  # (B, P, A); also more images than positions
    att2 = torch.randn(b, 3, 12)  # (B, K, A)
    cov = torch.rand(b, 3, p) if coverage else None
    with torch.no_grad():  # decoding: sliced blocks
        monkeypatch.setattr(SoftAttention, "CPU_BLOCK", 10**9)
        whole = att.scores(projected, att2, cov)  # (B, K, P), one block
        monkeypatch.setattr(SoftAttention, "CPU_BLOCK", 2 * 3 * p * 12)  # two images a block
        blocks = att.scores(projected, att2, cov)
    assert blocks.shape == (b, 3, p)
    torch.testing.assert_close(blocks, whole)
    torch.testing.assert_close(blocks, plain_scores(att, projected, att2, cov).detach())


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8])
def test_blocked_scores_gradients_are_the_formula_s(rows):
    """torch's numerical check of every gradient, blocks of 1 to more than all 5 images."""
    torch.manual_seed(rows)
    inputs = (
        torch.randn(5, 7, 6, dtype=torch.float64, requires_grad=True),  # projected (B, P, A)
        torch.randn(5, 6, dtype=torch.float64, requires_grad=True),  # att2 (B, A)
        torch.randn(6, dtype=torch.float64, requires_grad=True),  # full_att weight (A,)
        torch.randn(1, dtype=torch.float64, requires_grad=True),  # full_att bias (1,)
    )
    assert torch.autograd.gradcheck(lambda *x: BlockedScores.apply(*x, rows), inputs)
    out = BlockedScores.apply(*inputs, rows)
    assert out.shape == (5, 1, 7)


def scores_and_grads(att, projected, att2, cov, fn):
    projected = projected.clone().requires_grad_()
    att2 = att2.clone().requires_grad_()
    att.zero_grad()
    out = fn(projected, att2, cov)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = [projected.grad, att2.grad] + [p.grad for p in att.parameters()]
    return out.detach(), grads, out.grad_fn


@pytest.mark.parametrize(
    "k,coverage,blocked", [(1, False, True), (3, False, False), (1, True, False)]
)
def test_training_scores_equal_the_formula_with_gradients(k, coverage, blocked, monkeypatch):
    """One hypothesis per image without coverage (training) goes through `BlockedScores`; the
    other cases through autograd in one block; all give the formula's values and gradients."""
    torch.manual_seed(3)
    att = SoftAttention(8, 8, 12, coverage=coverage)
    projected, att2 = torch.randn(5, 30, 12), torch.randn(5, k, 12)  # zeros of relu included
    cov = torch.rand(5, k, 30) if coverage else None
    monkeypatch.setattr(SoftAttention, "CPU_BLOCK", 2 * 30 * 12)  # two images a block
    ours, ours_grads, node = scores_and_grads(att, projected, att2, cov, att.scores)
    assert ("BlockedScores" in type(node).__name__) == blocked
    plain, plain_grads, _ = scores_and_grads(
        att, projected, att2, cov, lambda p, a, c: plain_scores(att, p, a, c)
    )
    torch.testing.assert_close(ours, plain)
    for mine, theirs in zip(ours_grads, plain_grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)  # float32 sums, reordered


def make_decoder(**kw) -> Decoder:
    torch.manual_seed(4)
    config = DecoderConfig(
        vocab_size=11, encoder_dim=10, embed_dim=6, attention_dim=7, decoder_dim=9, dropout=0.0
    )
    for key, value in kw.items():
        setattr(config, key, value)
    return Decoder(config)


def stepped_loss(dec: Decoder, features, captions):
    """Teacher forcing written as `step` over each caption alone: the plain reference."""
    logits = torch.zeros(captions.size(0), captions.size(1) - 1, dec.config.vocab_size)
    alphas = torch.zeros(captions.size(0), captions.size(1) - 1, features.size(1))
    for i in range(captions.size(0)):
        f = features[i : i + 1]
        h, c = dec.init_state(f)
        coverage, projected = dec.init_coverage(f), dec.attention.project(f)
        for t in range(int((captions[i, 1:] != 0).sum())):
            out, h, c, alpha = dec.step(
                captions[i : i + 1, t : t + 1], h, c, f, projected, coverage
            )
            coverage = None if coverage is None else coverage + alpha
            logits[i, t], alphas[i, t] = out[0, 0], alpha[0, 0]
    return logits, alphas


@pytest.mark.parametrize(
    "kw",
    [{}, {"deep_output": False}, {"coverage": True}, {"attention": "hard"}],
    ids=["deep-output", "plain-output", "coverage", "hard-expected"],
)
@pytest.mark.parametrize("in_order", [False, True], ids=["shuffled", "longest-first"])
def test_packed_teacher_forcing_equals_stepping_each_caption(kw, in_order, monkeypatch):
    """`Decoder.forward` (packed words, the words' gates and the output layer hoisted out of the
    time loop) gives `step`'s logits and attention, and the same gradient for every weight,
    whether the batch comes shuffled or longest caption first (as `CaptionBatches` yields it)."""
    monkeypatch.setattr(SoftAttention, "CPU_BLOCK", 2 * 30 * 7)  # training blocks of two images
    dec = make_decoder(**kw)
    torch.manual_seed(5)
    features = torch.randn(5, 30, 10)
    captions = torch.tensor(
        [
            [1, 4, 5, 2, 0, 0, 0],
            [1, 6, 7, 8, 9, 10, 2],
            [1, 2, 0, 0, 0, 0, 0],
            [1, 3, 3, 4, 5, 2, 0],
            [1, 7, 8, 9, 2, 0, 0],
        ]
    )  # unsorted lengths 3, 6, 1, 5, 4 words to predict
    if in_order:
        order = [1, 3, 4, 0, 2]
        features, captions = features[order], captions[order]
    results = []
    for run in (lambda: dec(features, captions)[:2], lambda: stepped_loss(dec, features, captions)):
        dec.zero_grad()
        logits, alphas = run()
        caption_loss(logits, captions, alphas, alpha_c=1.0).backward()
        results.append((logits.detach(), alphas.detach(), [p.grad for p in dec.parameters()]))
    (logits, alphas, grads), (ref_logits, ref_alphas, ref_grads) = results
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(alphas, ref_alphas)
    one_word = 4 if in_order else 2
    assert not logits[one_word, 1:].any() and not alphas[one_word, 1:].any()  # zero at padding
    names = [name for name, _ in dec.named_parameters()]
    for name, mine, theirs in zip(names, grads, ref_grads, strict=True):
        if theirs is None:  # unused by this configuration (e.g. the deep output's layers)
            assert mine is None or not mine.any(), name
        else:
            torch.testing.assert_close(mine, theirs, msg=name)


def test_packed_teacher_forcing_returns_the_sampled_cells_in_caption_order():
    """Hard attention's training rule: the cell each context came from, -1 at padding; with a
    one-hot attention the sample is certain, so the cells are known."""
    dec = make_decoder(attention="hard")
    features = torch.randn(3, 30, 10)
    captions = torch.tensor([[1, 4, 2, 0], [1, 5, 6, 2], [1, 2, 0, 0]])
    with torch.no_grad():
        dec.attention.full_att.weight.zero_()  # scores equal: each sample is a uniform draw
    logits, alphas, cells = dec(features, captions, rule="sample")
    assert cells.shape == (3, 3)
    assert (cells[0, 2:] == -1).all() and (cells[2, 1:] == -1).all()
    assert ((cells[1] >= 0) & (cells[1] < 30)).all() and cells[0, 0] >= 0 and cells[2, 0] >= 0
    argmax = dec(features, captions, rule="argmax")[2]
    expected = alphas.argmax(dim=2).masked_fill(captions[:, 1:] == 0, -1)  # (B, T)
    assert torch.equal(argmax, expected)


def test_teacher_forcing_over_a_batch_padded_beyond_its_longest_caption():
    """Columns of <pad> after every caption's <end> (a batch padded to a fixed length) predict
    nothing: zeros there, the same numbers elsewhere."""
    dec = make_decoder()
    torch.manual_seed(6)
    features = torch.randn(2, 30, 10)
    captions = torch.tensor([[1, 4, 5, 2], [1, 6, 2, 0]])
    padded = torch.cat([captions, torch.zeros(2, 3, dtype=torch.long)], dim=1)  # (2, 7)
    with torch.no_grad():
        logits, alphas, _ = dec(features, captions)
        more_logits, more_alphas, _ = dec(features, padded)
    assert more_logits.shape == (2, 6, 11) and more_alphas.shape == (2, 6, 30)
    torch.testing.assert_close(more_logits[:, :3], logits)
    torch.testing.assert_close(more_alphas[:, :3], alphas)
    assert not more_logits[:, 3:].any() and not more_alphas[:, 3:].any()


def test_an_unknown_location_rule_is_named():
    dec = make_decoder()
    alpha = torch.softmax(torch.randn(2, 1, 30), dim=2)  # (B, K, P)
    with pytest.raises(ValueError, match="^unknown location rule 'nearest'$"):
        dec.context(alpha, torch.randn(2, 30, 10), "nearest")
