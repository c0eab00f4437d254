"""Encoders, decoder and the beam search: shapes, the loss, and search invariants."""

from __future__ import annotations

import itertools
import urllib.error

import pytest
import torch
from PIL import Image

from captioner import ENCODERS, Captioner, Encoder, EncoderWeightsError, Vocabulary
from captioner.beam import beam_search
from captioner.decoder import Decoder, DecoderConfig, caption_loss


@pytest.mark.parametrize("name", ["resnet50", "resnet101", "resnet152"])
def test_resnet_shapes_without_weights(name):
    enc = Encoder(name, pretrained=False)
    assert enc.spec.input_size == 256 and enc.spec.channels == 2048
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        assert enc(x).shape == (2, 196, 2048)
    assert not any(p.requires_grad for p in enc.parameters())  # frozen by default


def test_efficientnet_lite2_offline_pretrained(tiny_model, photo):
    enc = tiny_model.encoder
    assert enc.spec.input_size == 448 and enc.spec.channels == 1280
    x = enc.preprocess([Image.fromarray(photo)])
    assert x.shape == (1, 3, 448, 448)
    with torch.no_grad():
        feats = enc(x)
    assert feats.shape == (1, 196, 1280)
    # Pretrained ReLU6 features: in [0, 6] and far from constant (random weights would not be).
    assert feats.min() >= 0 and feats.max() <= 6 and feats.std() > 0.1


def test_fine_tune_unfreezes_only_last_stages():
    enc = Encoder("resnet50", pretrained=False, fine_tune=True)
    trainable = {n.split(".")[1] for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable == {"5", "6", "7"}  # layer2..layer4 of the Sequential
    assert enc.fine_tuned_state_dict() and all(
        k.split(".")[1] in "567" for k in enc.fine_tuned_state_dict()
    )
    enc.set_fine_tune(False)
    assert not any(p.requires_grad for p in enc.parameters()) and enc.fine_tuned_state_dict() == {}


def test_resnet_offline_error_names_both_remedies(monkeypatch):
    import torch.hub

    def no_network(*a, **k):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(EncoderWeightsError) as err:
        Encoder("resnet101", pretrained=True)
    msg = str(err.value)
    assert "internet" in msg and "--encoder-weights" in msg


def test_resnet_local_weights_file(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    ref = torchvision.models.resnet50(weights=None)
    path = tmp_path / "r50.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    enc = Encoder("resnet50", weights_path=str(path))
    assert torch.equal(enc.features[0].weight, ref.conv1.weight)
    with pytest.raises(EncoderWeightsError, match="not torchvision ResNet-101"):
        Encoder("resnet101", weights_path=str(path))


def test_unknown_encoder():
    with pytest.raises(ValueError, match="unknown encoder 'vgg'"):
        Encoder("vgg")
    assert set(ENCODERS) >= {"resnet50", "resnet101", "resnet152", "efficientnet-lite2"}


def make_decoder(vocab_size=9, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = DecoderConfig(
        vocab_size=vocab_size,
        encoder_dim=16,
        embed_dim=8,
        attention_dim=8,
        decoder_dim=12,
        dropout=0.0,
        **kw,
    )
    return Decoder(cfg).eval()


@pytest.mark.parametrize("deep_output,coverage", [(False, False), (True, False), (True, True)])
def test_decoder_forward_and_loss_handle_variable_lengths(deep_output, coverage):
    dec = make_decoder(deep_output=deep_output, coverage=coverage)
    feats = torch.randn(3, 196, 16)
    caps = torch.tensor(
        [[1, 4, 5, 6, 2], [1, 4, 2, 0, 0], [1, 7, 8, 5, 2]]
    )  # <start>.. <end> <pad>
    logits, alphas, _ = dec(feats, caps)
    assert logits.shape == (3, 4, 9) and alphas.shape == (3, 4, 196)
    real = (caps[:, 1:] != 0).float()  # steps that predict a word or <end>
    torch.testing.assert_close(alphas.sum(2), real)  # attention sums to 1; padding gets none
    assert torch.all(logits[1, 2:] == 0)
    loss = caption_loss(logits, caps, alphas, pad_index=0, alpha_c=1.0)
    loss.backward()
    assert loss.item() > 0 and dec.fc.weight.grad is not None
    # Padding never counts: neither the words nor the attention penalty of padded steps.
    alone = loss_of(dec, feats[1:2], caps[1:2, :3])
    padded = loss_of(dec, feats[1:2], caps[1:2])
    torch.testing.assert_close(alone, padded)


def loss_of(dec, feats, caps, alpha_c=1.0):
    logits, alphas, _ = dec(feats, caps)
    return caption_loss(logits, caps, alphas, pad_index=0, alpha_c=alpha_c)


def test_doubly_stochastic_penalty_value():
    logits = torch.zeros(1, 2, 5)
    caps = torch.tensor([[1, 3, 2]])
    alphas = torch.full((1, 2, 4), 0.25)  # sums over time to 0.5 at every position
    ce = caption_loss(logits, caps, alphas, alpha_c=0.0)
    with_penalty = caption_loss(logits, caps, alphas, alpha_c=2.0)
    assert with_penalty.item() == pytest.approx(ce.item() + 2.0 * 0.25)


def sequence_log_prob(dec, feats, tokens, end):
    """log p(tokens + <end>) by teacher forcing."""
    caps = torch.tensor([[1, *tokens, end]])
    logits, _, _ = dec(feats, caps)
    lp = torch.log_softmax(logits, 2)[0]
    return sum(lp[t, caps[0, t + 1]].item() for t in range(caps.size(1) - 1))


def greedy(dec, feats, start, end, max_len):
    """The plainest greedy decoder, for comparison."""
    proj = dec.attention.project(feats)
    h, c = dec.init_state(feats)
    word, out = torch.tensor([[start]]), []
    for _ in range(max_len):
        logits, h, c, _ = dec.step(word, h, c, feats, proj)
        logits[0, 0, start] = float("-inf")  # <start> is never generated
        w = int(logits[0, 0].argmax())
        if w == end:
            break
        out.append(w)
        word = torch.tensor([[w]])
    return out


@pytest.mark.parametrize("seed", range(4))
def test_beam_one_equals_greedy(seed):
    dec = make_decoder(seed=seed)
    feats = torch.randn(3, 196, 16)
    hyps = beam_search(dec, feats, start=1, end=2, beam_size=1, max_len=8)
    for i in range(3):
        assert hyps[i].tokens == greedy(dec, feats[i : i + 1], 1, 2, 8)


@pytest.mark.parametrize(
    "seed,deep_output,coverage",
    [
        (0, False, False),
        (1, False, False),
        (2, False, False),
        (3, True, False),
        (4, True, True),
        (5, False, True),
    ],
)
def test_wide_beam_finds_the_exact_best_sequence(seed, deep_output, coverage):
    """With a beam wider than every level of the search tree, beam search is exhaustive.

    Teacher forcing scores every sequence; the beam must carry each hypothesis' own coverage."""
    vocab_size, max_len = 6, 3  # words 3, 4, 5 (+ <pad>, <start>, <end>)
    dec = make_decoder(vocab_size=vocab_size, seed=seed, deep_output=deep_output, coverage=coverage)
    feats = torch.randn(1, 196, 16)
    with torch.no_grad():
        words = [w for w in range(vocab_size) if w != 1]  # all but <start>
        candidates = [
            list(seq) for n in range(max_len) for seq in itertools.product(words, repeat=n)
        ]
        # Sequences of max_len words without <end> are also possible answers.
        best = max(candidates, key=lambda s: sequence_log_prob(dec, feats, s, 2))
        best_lp = sequence_log_prob(dec, feats, best, 2)
    hyp = beam_search(dec, feats, 1, 2, beam_size=vocab_size**max_len, max_len=max_len)[0]
    if hyp.finished:
        assert hyp.tokens == best
        assert hyp.score == pytest.approx(best_lp, abs=1e-4)
    else:  # an unfinished max-length beam beat every finished one
        assert len(hyp.tokens) == max_len and hyp.score >= best_lp - 1e-4


def repeats_an_ngram(tokens: list[int], n: int) -> bool:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("seed,n", [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3)])
def test_wide_beam_without_repeats_finds_the_best_sequence_that_has_none(seed, n):
    """no_repeat_ngram prunes exactly the sequences that hold some n words in a row twice."""
    vocab_size, max_len = 5, 5  # words 3, 4 (+ <pad>, <start>, <end>): repeats are hard to avoid
    dec = make_decoder(vocab_size=vocab_size, seed=seed)
    feats = torch.randn(1, 196, 16)
    with torch.no_grad():
        words = [w for w in range(vocab_size) if w not in (1, 2)]
        candidates = [
            list(seq)
            for length in range(max_len + 1)
            for seq in itertools.product(words, repeat=length)
        ]
        allowed = [s for s in candidates if not repeats_an_ngram(s, n)]
        assert len(allowed) < len(candidates)
        # <end> after at most max_len - 1 words; a max_len sequence may stop without it
        finished = [s for s in allowed if len(s) < max_len]
        best = max(finished, key=lambda s: sequence_log_prob(dec, feats, s, 2))
        best_lp = sequence_log_prob(dec, feats, best, 2)
    hyp = beam_search(
        dec,
        feats,
        1,
        2,
        beam_size=vocab_size**max_len,
        max_len=max_len,
        banned=(0,),
        no_repeat_ngram=n,
    )[0]
    assert not repeats_an_ngram(hyp.tokens, n)
    if hyp.finished:
        assert hyp.tokens == best
        assert hyp.score == pytest.approx(best_lp, abs=1e-4)
    else:
        assert len(hyp.tokens) == max_len and hyp.score >= best_lp - 1e-4


def test_no_repeat_ngram_breaks_a_loop_and_zero_changes_nothing():
    dec = make_decoder(seed=3)
    force_next_word(dec, 5)  # "5 5 5 5 ..." unless forbidden
    feats = torch.randn(2, 196, 16)
    assert beam_search(dec, feats, 1, 2, beam_size=3, max_len=7)[0].tokens == [5] * 7
    for n in (1, 2, 3):
        for h in beam_search(dec, feats, 1, 2, beam_size=3, max_len=7, no_repeat_ngram=n):
            assert h.tokens and not repeats_an_ngram(h.tokens, n)
            assert h.tokens[:n] == [5] * n  # the loop runs until it would repeat
    plain = beam_search(make_decoder(seed=4), feats, 1, 2, beam_size=3, max_len=9)
    zero = beam_search(make_decoder(seed=4), feats, 1, 2, beam_size=3, max_len=9, no_repeat_ngram=0)
    assert [h.tokens for h in plain] == [h.tokens for h in zero]
    with pytest.raises(ValueError, match="no_repeat_ngram"):
        beam_search(dec, feats, 1, 2, no_repeat_ngram=-1)


@pytest.mark.parametrize("coverage", [False, True])
def test_returned_score_is_the_caption_log_prob_and_beats_greedy(coverage):
    dec = make_decoder(seed=5, coverage=coverage)
    feats = torch.randn(4, 196, 16)
    b1 = beam_search(dec, feats, 1, 2, beam_size=1, max_len=10)
    b5 = beam_search(dec, feats, 1, 2, beam_size=5, max_len=10)
    for i, (g, h) in enumerate(zip(b1, b5)):
        if h.finished:
            with torch.no_grad():
                lp = sequence_log_prob(dec, feats[i : i + 1], h.tokens, 2)
            assert h.log_prob == pytest.approx(lp, abs=1e-4)
        if g.finished and h.finished:
            assert h.score >= g.score - 1e-5


def test_attention_rows_sum_to_one_and_match_words():
    dec = make_decoder(seed=1)
    hyps = beam_search(dec, torch.randn(5, 196, 16), 1, 2, beam_size=3, max_len=6)
    for h in hyps:
        assert h.alphas.shape == (len(h.tokens), 196)
        torch.testing.assert_close(h.alphas.sum(1), torch.ones(len(h.tokens)))


def force_next_word(dec, word):
    """Make the decoder output `word` at every step, whatever its input."""
    with torch.no_grad():
        dec.fc.weight.zero_()
        dec.fc.bias.fill_(-10.0)
        dec.fc.bias[word] = 10.0


def test_stops_at_end():
    dec = make_decoder(seed=2)
    force_next_word(dec, 2)  # <end> at once
    hyp = beam_search(dec, torch.randn(2, 196, 16), 1, 2, beam_size=3, max_len=10)
    assert all(h.tokens == [] and h.finished for h in hyp)


def test_max_length_without_end_still_returns_a_caption():
    dec = make_decoder(seed=3)
    force_next_word(dec, 5)  # never <end>
    for k in (1, 3):
        hyps = beam_search(dec, torch.randn(2, 196, 16), 1, 2, beam_size=k, max_len=7)
        for h in hyps:
            assert not h.finished and h.tokens == [5] * 7 and h.alphas.shape == (7, 196)


@pytest.mark.parametrize("coverage,no_repeat", [(False, 0), (True, 0), (False, 2)])
def test_batched_search_equals_one_image_at_a_time(coverage, no_repeat):
    dec = make_decoder(seed=4, coverage=coverage, deep_output=coverage)
    feats = torch.randn(6, 196, 16)
    together = beam_search(dec, feats, 1, 2, beam_size=3, max_len=9, no_repeat_ngram=no_repeat)
    for i in range(6):
        alone = beam_search(
            dec, feats[i : i + 1], 1, 2, beam_size=3, max_len=9, no_repeat_ngram=no_repeat
        )[0]
        assert alone.tokens == together[i].tokens
        assert alone.score == pytest.approx(together[i].score, abs=1e-5)


def test_length_penalty_prefers_longer_captions():
    dec = make_decoder(seed=6)
    feats = torch.randn(8, 196, 16)
    plain = beam_search(dec, feats, 1, 2, beam_size=4, max_len=12)
    normed = beam_search(dec, feats, 1, 2, beam_size=4, max_len=12, length_penalty=1.0)
    assert sum(len(h.tokens) for h in normed) >= sum(len(h.tokens) for h in plain)
    for h in normed:
        if h.finished:
            assert h.score == pytest.approx(h.log_prob / (len(h.tokens) + 1), abs=1e-5)


def test_banned_words_are_never_generated(tiny_model):
    """A decoder that wants to say <pad> or <start> still says real words."""
    decoder = Decoder(tiny_model.decoder.config).eval()
    model = Captioner(tiny_model.encoder, decoder, tiny_model.vocab)
    feats = torch.randn(3, 196, 1280)
    for banned in (model.vocab.pad, model.vocab.start):
        force_next_word(decoder, banned)
        for cap in model.decode(feats, beam_size=2, max_len=4):
            assert cap.words and not {"<pad>", "<start>"} & set(cap.words)


def test_bad_beam_arguments():
    dec = make_decoder()
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(dec, torch.randn(1, 196, 16), 1, 2, beam_size=0)


def test_vocabulary_round_trip(tmp_path):
    v = Vocabulary.build([["a", "dog", "runs"], ["a", "cat"], ["a", "dog"]], min_freq=2)
    assert v.itos == ["<pad>", "<start>", "<end>", "<unk>", "a", "dog"]
    ids = v.encode(["a", "cat", "dog"])
    assert ids == [v.start, 4, v.unk, 5, v.end]
    assert v.decode(ids + [v.pad, v.pad]) == ["a", "<unk>", "dog"]
    v.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == v
    (tmp_path / "bad.json").write_text('{"itos": ["a", "b"]}')
    with pytest.raises(ValueError, match="bad.json"):
        Vocabulary.load(tmp_path / "bad.json")
    assert v.encode(["a", "a", "a"], max_len=2) == [v.start, 4, 4, v.end]


def test_deep_output_words_come_from_the_attended_context():
    """Eq. 7: with the deep output, a new context changes the next word's scores even when the
    LSTM state and the previous word are held fixed; without it, the word comes from h alone."""
    for deep_output, changes in ((True, True), (False, False)):
        dec = make_decoder(deep_output=deep_output)
        h, c = torch.zeros(1, 1, 12), torch.zeros(1, 1, 12)  # (B, K, D)
        words = torch.tensor([[3]])  # (B, K)
        with torch.no_grad():
            dec.lstm.weight_ih.zero_()  # the LSTM ignores its input: h_t is the same for any context
            feats_a, feats_b = torch.randn(1, 196, 16), torch.randn(1, 196, 16)
            out_a = dec.step(words, h, c, feats_a, dec.attention.project(feats_a))[0]
            out_b = dec.step(words, h, c, feats_b, dec.attention.project(feats_b))[0]
        assert (not torch.allclose(out_a, out_b)) == changes
