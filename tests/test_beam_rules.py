"""The beam search's rules, each on a decoder whose word probabilities are a table written by
hand, so every expected caption is worked out in the comments: when an image is done (K
finished hypotheses; without length normalisation, no live beam can beat the best finished one),
images leaving a batch while others go on, and which words the no-repeat rule bans."""

import math

import pytest
import torch

from captioner.beam import beam_search

PAD, START, END, A, B, C, E = 0, 1, 2, 3, 4, 5, 6
V = 7
Table = dict[int, dict[int, float]]  # previous word -> {next word: probability}


class TableDecoder:
    """Stands in for `Decoder` in `beam_search`: the next word's probabilities depend only on the
    previous word, through the table of the image (its number is features[i, 0, 0])."""

    def __init__(self, tables: list[Table]):
        self.tables = tables
        self.attention = self  # beam_search calls decoder.attention.project

    def eval(self):
        return self

    def project(self, features):
        return features

    def init_state(self, features, k=1):
        h = features.new_zeros(features.size(0), k, 1)  # (B, K, 1): unused
        return h, h.clone()

    def init_coverage(self, features, k=1):
        return None

    def step(self, words, h, c, features, projected, coverage=None):
        b, k = words.shape
        logits = torch.full((b, k, V), -60.0)  # words not in the table: practically never
        for i in range(b):
            table = self.tables[int(features[i, 0, 0])]
            for j in range(k):
                for word, p in table.get(int(words[i, j]), {}).items():
                    logits[i, j, word] = math.log(p)
        alpha = torch.full((b, k, features.size(1)), 1.0 / features.size(1))  # (B, K, P)
        return logits, h, c, alpha


def images(*numbers: int) -> torch.Tensor:
    features = torch.zeros(len(numbers), 4, 2)  # (B, P, E)
    features[:, 0, 0] = torch.tensor(numbers, dtype=torch.float)
    return features


def search(tables, numbers, **kw):
    kw = {"beam_size": 2, "max_len": 6, "banned": (PAD,), **kw}
    return beam_search(TableDecoder(tables), images(*numbers), START, END, **kw)


# An image that says `a` and stops; and images that say `a b`, `a b c`, `a b c b` before <end>.
SAYS = {
    1: {START: {A: 0.9, B: 0.1}, A: {END: 0.9, B: 0.1}, B: {END: 0.9, A: 0.1}},
    2: {START: {A: 0.9, B: 0.1}, A: {B: 0.9, C: 0.1}, B: {END: 0.9, C: 0.1}, C: {END: 1.0}},
    3: {
        START: {A: 0.9, B: 0.1},
        A: {B: 0.9, C: 0.1},
        B: {C: 0.9, END: 0.1},
        C: {END: 0.9, A: 0.1},
    },
    4: {
        START: {A: 0.9, C: 0.1},
        A: {B: 0.9, C: 0.1},
        B: {C: 0.6, END: 0.4},
        C: {B: 0.8, END: 0.2},
    },
}


def test_the_table_decoder_says_what_its_tables_say():
    said = search([SAYS[1], SAYS[2], SAYS[3]], [0, 1, 2])
    assert [h.tokens for h in said] == [[A], [A, B], [A, B, C]]
    assert all(h.finished for h in said)
    assert said[0].log_prob == pytest.approx(math.log(0.9 * 0.9))


def test_images_that_end_early_leave_the_batch_and_the_rest_finish_as_alone():
    """Four images ending after 1, 2, 3 and 4 words: the first leaves while three go on (no
    compaction yet: a quarter of the rows), its row still makes <end> candidates that must not
    stop the others' being kept; the second leaving drops both rows."""
    tables = [SAYS[1], SAYS[2], SAYS[3], SAYS[4]]
    together = search(tables, [0, 1, 2, 3], max_len=8)
    for i in range(4):
        alone = search(tables, [i], max_len=8)[0]
        assert together[i].tokens == alone.tokens
        assert together[i].score == pytest.approx(alone.score)
        assert together[i].alphas.shape == (len(alone.tokens), 4)
    assert [h.tokens for h in together[:3]] == [[A], [A, B], [A, B, C]]
    # image 4: a b c (0.9 * 0.9 * 0.6 * 0.2) against a b <end> (0.9 * 0.9 * 0.4) and a b c b ...
    assert together[3].tokens == [A, B]


def test_an_image_is_done_at_k_finished_hypotheses_under_length_normalisation():
    """K = 2, score = log p / length. Step 1: `a` (0.5) and <end> (0.3) are the two best: [] is
    finished, score log 0.3 = -1.20. Step 2: `a b` (0.45) and `b <end>` (0.2 * 0.6 = 0.12, score
    log 0.12 / 2 = -1.06) are the two best: the second finished one, so the search ends with
    [b]. Going on would find `a b <end>` (0.45 * 0.6, score log 0.27 / 3 = -0.44): better
    normalised, but not what the rule says."""
    table = {
        START: {A: 0.5, END: 0.3, B: 0.2},
        A: {B: 0.9, END: 0.1},
        B: {END: 0.6, A: 0.4},
    }
    found = search([table], [0], length_penalty=1.0)[0]
    assert found.tokens == [B] and found.finished
    assert found.score == pytest.approx(math.log(0.2 * 0.6) / 2)


def test_under_length_normalisation_a_live_beam_below_the_best_finished_one_goes_on():
    """K = 2. Step 1: <end> (0.55) and `a` (0.4) are the two best: [] finishes with log 0.55 =
    -0.60, and the best live beam, `a`, has log 0.4 = -0.92, lower. Without normalisation scores
    only fall, so the search stops there with []. With it, `a` goes on: step 2 finishes `a`
    (0.4 * 0.99, score log 0.396 / 2 = -0.46) and `b` (0.05 * 0.999): K finished, and [a] wins."""
    table = {START: {END: 0.55, A: 0.4, B: 0.05}, A: {END: 0.99, C: 0.01}, B: {END: 0.999}}
    plain = search([table], [0])[0]
    assert plain.tokens == [] and plain.score == pytest.approx(math.log(0.55))
    normalised = search([table], [0], length_penalty=1.0)[0]
    assert normalised.tokens == [A] and normalised.finished
    assert normalised.score == pytest.approx(math.log(0.4 * 0.99) / 2)


def test_no_repeat_trigrams_ban_the_word_that_would_complete_one_again():
    """Greedy, n = 3: after `a b c a b`, `c` would make `a b c` twice: banned, so <end> (0.1)."""
    table = {
        START: {A: 0.9, C: 0.1},
        A: {B: 0.9, C: 0.1},
        B: {C: 0.9, END: 0.1},
        C: {A: 0.8, END: 0.2},
    }
    free = search([table], [0], beam_size=1, max_len=8)[0]
    assert free.tokens == [A, B, C, A, B, C, A, B] and not free.finished
    banned = search([table], [0], beam_size=1, max_len=8, no_repeat_ngram=3)[0]
    assert banned.tokens == [A, B, C, A, B] and banned.finished


def test_a_word_is_banned_only_where_it_completes_a_repeat():
    """n = 2 with an exempt word that never comes: `a b b` holds `a b` and `b b` once each, so
    the second `b` is allowed; a third would repeat `b b`: <end>."""
    table = {START: {A: 1.0}, A: {B: 1.0}, B: {B: 0.6, END: 0.4}}
    for exempt in ((), (E,)):
        found = search([table], [0], beam_size=1, no_repeat_ngram=2, repeat_exempt=exempt)[0]
        assert found.tokens == [A, B, B] and found.finished


def test_an_exempt_word_exempts_only_the_n_grams_that_hold_it():
    """n = 2, `e` exempt: after `a b e a`, `b` would repeat `a b` (no `e` in it): banned, so `c`;
    the windows `b e` and `e a` hold `e` and ban nothing."""
    table = {START: {A: 0.9, C: 0.1}, A: {B: 0.6, C: 0.4}, B: {E: 1.0}, E: {A: 1.0}, C: {END: 1.0}}
    free = search([table], [0], beam_size=1)[0]
    assert free.tokens == [A, B, E, A, B, E]
    found = search([table], [0], beam_size=1, no_repeat_ngram=2, repeat_exempt=(E,))[0]
    assert found.tokens == [A, B, E, A, C] and found.finished


def test_a_one_word_limit_is_allowed_and_none_is_refused_with_its_sentence():
    from captioner.beam import DecodingError, check_decoding_options

    one = search([SAYS[2]], [0], max_len=1)[0]  # `a b` needs two words: cut after one
    assert one.tokens == [A] and not one.finished
    check_decoding_options(max_len=1)  # the bounds themselves pass
    check_decoding_options(beam_size=1, no_repeat_ngram=0)
    for options, sentence in (
        ({"max_len": 0}, "max_len must be at least 1, got 0"),
        ({"beam_size": 0}, "beam_size must be at least 1, got 0"),
        ({"no_repeat_ngram": -1}, "no_repeat_ngram must not be negative, got -1"),
    ):
        with pytest.raises(DecodingError) as caught:
            search([SAYS[2]], [0], **options)
        assert str(caught.value) == sentence
