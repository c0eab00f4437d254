"""Open-vocabulary object words: slots named by the encoder's ImageNet classifier."""

import numpy as np
import pytest
import torch

from captioner import Captioner
from captioner.beam import beam_search
from captioner.evaluate_photos import names_object, repeated_pair
from captioner.names import NameChoice, fill_slots, fix_articles, imagenet_names, name_slots
from captioner.scenes.phrasing import Group, realise
from captioner.vocab import SLOT, SLOT_PLURAL, SPECIALS, Vocabulary


@pytest.fixture(scope="module")
def names():
    return imagenet_names()


def test_fine_classes_share_a_basic_name_and_their_probability(names):
    logits = torch.full((1, 1000), -20.0)
    logits[0, 281] = logits[0, 285] = 2.0  # tabby, Egyptian cat
    logits[0, 207] = 2.5  # golden retriever: the single most probable class
    name_p, class_p = names.name_probs(logits)
    top = names.choices(name_p[0], class_p[0], k=2)
    assert [c.name for c in top] == ["cat", "dog"]  # two cat classes beat one dog class
    assert top[0].probability == pytest.approx(float(class_p[0, 281] + class_p[0, 285]), rel=1e-5)
    assert top[0].detail in ("tabby cat", "Egyptian cat") and top[1].detail == "golden retriever"
    assert float(name_p.sum()) == pytest.approx(1.0, abs=1e-5)


def choice(name, p=0.9):
    return NameChoice(name, p, name)


def test_fill_slots_fixes_articles_takes_plurals_and_does_not_name_one_thing_twice(names):
    words = ["a", SLOT, "and", "two", SLOT_PLURAL, "next", "to", "a", SLOT]
    options = [
        [choice("eagle"), choice("dog")],
        [choice("goose")],
        [choice("eagle"), choice("cat")],
    ]
    assert fill_slots(words, options, names)[0] == [
        "an",
        "eagle",
        "and",
        "two",
        "geese",
        "next",
        "to",
        "a",
        "cat",
    ]
    options = [[choice("cup of coffee")], [choice("goose")], [choice("cup"), choice("teapot")]]
    assert fill_slots(words, options, names)[0][-1] == "teapot"  # not "a cup of coffee ... a cup"


def test_a_second_slot_on_the_same_thing_is_left_out_where_the_sentence_allows(names):
    """The decoder announces another object, the classifier sees the first one again and
    nothing else it believes in: no made-up second object, no "a scooter and a scooter"."""
    words = ["a", SLOT, "and", "a", SLOT]
    options = [[choice("scooter")], [choice("scooter", 0.6), choice("disc brake", 0.1)]]
    filled, keep = fill_slots(words, options, names)
    assert filled == ["a", "scooter"] and keep == [True, True, False, False, False]
    words = ["a", SLOT, "a", SLOT, "and", "a", SLOT]  # a list: "a ski a dog and a space shuttle"
    options = [[choice("ski")], [choice("ski", 0.5), choice("dog", 0.2)], [choice("space shuttle")]]
    assert fill_slots(words, options, names)[0] == ["a", "ski", "and", "a", "space shuttle"]
    words = ["a", SLOT, "next", "to", "a", SLOT]  # "next to" cannot lose its object: next name
    assert fill_slots(words, options[:2], names)[0] == ["a", "ski", "next", "to", "a", "dog"]
    options = [[choice("scooter")], [choice("scooter", 0.5), choice("helmet", 0.4)]]
    assert fill_slots(["a", SLOT, "and", "a", SLOT], options, names)[0][-1] == "helmet"


def test_a_slot_is_named_from_where_the_attention_is(names):
    """Two cells hold different things; the name follows the cell the attention is on."""

    class Head:
        has_classifier = True

        def classify(self, context):
            return context[..., :1000] * 30.0

    features = torch.zeros(1, 196, 1280)  # (B, P, E)
    features[0, 3, 281] = 1.0  # cell 3 (top row, column 3) looks like a tabby
    features[0, 14 * 13 + 12, 207] = 1.0  # a bottom-right cell looks like a golden retriever
    alphas = torch.zeros(2, 196)  # (T, P)
    alphas[0, 3] = 1.0
    alphas[1, 14 * 13 + 12] = 1.0
    named = name_slots(Head(), names, [alphas], features, [[0, 1]])
    assert [opts[0].name for opts in named[0]] == ["cat", "dog"]


def test_no_repeat_rule_lets_slots_repeat():
    """ "a <obj> and a <obj>" repeats the token pair "a <obj>"; it becomes two different names."""
    vocab = Vocabulary([*SPECIALS, "a", "and", SLOT])
    a, and_, slot, end = vocab.stoi["a"], vocab.stoi["and"], vocab.stoi[SLOT], vocab.end
    wanted = [a, slot, and_, a, slot, end]

    class Scripted(torch.nn.Module):
        """A decoder that prefers `wanted[t]` at step t (attention uniform)."""

        config = type("C", (), {"coverage": False})()

        def __init__(self):
            super().__init__()
            self.attention = type("A", (), {"project": staticmethod(lambda f: f)})()

        def init_state(self, features, k=1):
            h = features.new_zeros(features.size(0), k, 1)
            return h, h.clone()

        def init_coverage(self, features, k=1):
            return None

        def step(self, words, h, c, features, projected, coverage=None):
            t = int(h[0, 0, 0])
            logits = torch.zeros(*words.shape, len(vocab))
            logits[..., wanted[min(t, len(wanted) - 1)]] = 10.0
            alpha = torch.full((*words.shape, features.size(1)), 1.0 / features.size(1))
            return logits, h + 1, c, alpha

    features = torch.zeros(1, 4, 2)
    free = beam_search(
        Scripted(), features, vocab.start, end, beam_size=2, no_repeat_ngram=2, repeat_exempt=[slot]
    )[0]
    assert free.tokens == wanted[:-1]
    banned = beam_search(Scripted(), features, vocab.start, end, beam_size=2, no_repeat_ngram=2)[0]
    assert banned.tokens[:5] != wanted[:5]  # without the exemption the rule forbids it


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_a_caption_records_which_words_the_classifier_chose(names, attention):
    vocab = Vocabulary([*SPECIALS, "a", SLOT])
    model = Captioner.create(
        "efficientnet-lite2",
        vocab,
        embed_dim=8,
        attention_dim=8,
        decoder_dim=8,
        max_len=1,
        attention=attention,
        hard_decoding="argmax",  # a hard model's word then comes from one cell alone
    )
    with torch.no_grad():
        model.decoder.fc.bias[vocab.stoi[SLOT]] = 50.0  # the decoder says "an object here"
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    cap = model.caption(image, beam_size=1)  # one word, the slot (a wider beam keeps "" too)
    assert cap.sources == ["classifier"] and len(cap.names[0]) == 3
    assert cap.words == [cap.names[0][0].name]
    # the same name by hand: the classifier on the attention-weighted annotation vectors, or
    # for hard attention on the one cell the word came from
    features = model.encode([cap.image])  # (1, 196, C)
    if attention == "hard":
        context = features[0, cap.cells[0]].unsqueeze(0)  # (1, C)
        assert cap.cells[0] == int(cap.alphas.argmax())
    else:
        context = torch.from_numpy(cap.alphas.reshape(1, -1)) @ features[0]  # (1, C)
    name_p, _ = names.name_probs(model.encoder.classify(context))
    assert cap.words[0] == names.names[int(name_p[0].argmax())]
    record = cap.to_dict()
    assert record["sources"] == ["classifier"] and record["names"][0][0]["name"] == cap.words[0]


def test_old_models_without_slots_caption_as_before():
    vocab = Vocabulary([*SPECIALS, "a", "cat"])
    model = Captioner.create(
        "efficientnet-lite2", vocab, embed_dim=8, attention_dim=8, decoder_dim=8
    )
    cap = model.caption(np.zeros((32, 32, 3), dtype=np.uint8))
    assert cap.sources == ["decoder"] * len(cap.words) and all(not n for n in cap.names)


def test_adding_words_keeps_what_the_decoder_said_and_starts_slots_as_objects():
    vocab = Vocabulary([*SPECIALS, "a", "cat", "dog"])
    model = Captioner.create(
        "efficientnet-lite2", vocab, embed_dim=8, attention_dim=8, decoder_dim=8, dropout=0.0
    )
    model.decoder.eval()
    features = torch.randn(2, 196, 1280)
    captions = torch.tensor([[vocab.start, vocab.stoi["a"], vocab.stoi["cat"], vocab.end]] * 2)
    before, _, _ = model.decoder(features, captions)
    added = model.add_words(["a", SLOT, "snow"], like={SLOT: ["cat", "dog"]})
    assert added == [SLOT, "snow"] and model.vocab.itos[-2:] == [SLOT, "snow"]
    after, _, _ = model.decoder(features, captions)
    assert torch.allclose(after[..., : len(vocab)], before, atol=1e-6)  # old words: same outputs
    fc, emb = model.decoder.fc, model.decoder.embedding
    assert torch.allclose(fc.weight[len(vocab)], fc.weight[[5, 6]].mean(0))
    assert torch.allclose(emb.weight[len(vocab)], emb.weight[[5, 6]].mean(0))
    assert model.decoder.config.vocab_size == len(model.vocab) == 9


def test_a_slot_group_is_said_with_the_slot_word_and_written_with_its_name():
    lion = Group("lion", "lions", "lion", "lions", ((0, 0, 10, 10),), (0,))
    owl = Group("owl", "owls", "owl", "owls", ((20, 0, 30, 10), (40, 0, 50, 10)), (1, 2), slot=True)
    sentence = realise("{A} next to {B}", {"A": 0, "B": 1}, [lion, owl])
    assert sentence.raw == "A lion next to two owls."
    assert sentence.tokens == ("a", "lion", "next", "to", "two", SLOT_PLURAL)
    assert sentence.mentions == ((0, 1), (1, 5), (2, 5))
    single = Group("eagle", "eagles", "eagle", "eagles", ((0, 0, 5, 5),), (0,), slot=True)
    said = realise("a picture of {A}", {"A": 0}, [single])
    assert said.raw == "A picture of an eagle." and said.tokens == ("a", "picture", "of", "a", SLOT)


def test_photo_scoring_matches_whole_names_in_either_number():
    assert names_object("a picture of two cats", ["cat"])
    assert names_object("a cup of coffee on a table", ["coffee"])
    assert not names_object("a picture of a category", ["cat"])
    assert names_object("three geese", ["goose"])
    assert repeated_pair(["a", "a", "dog"]) and repeated_pair(["a", "dog", "and", "a", "dog"])
    assert not repeated_pair(["a", "cup of coffee", "on", "a", "table"])


def test_articles_follow_the_next_word_and_lists_keep_their_and(names):
    assert fix_articles(["an", "image", "of", "an", "rat", "and", "a", "otter"]) == [
        "an",
        "image",
        "of",
        "a",
        "rat",
        "and",
        "an",
        "otter",
    ]
    words = ["a", SLOT, "a", SLOT, "and", "a", SLOT]
    options = [[choice("bird")], [choice("orange")], [choice("orange", 0.6), choice("lemon", 0.1)]]
    assert fill_slots(words, options, names)[0] == [
        "a",
        "bird",
        "an",
        "orange",
        "and",
        "a",
        "lemon",
    ]
    words = [
        "a",
        "picture",
        "of",
        "a",
        SLOT,
        "a",
        "cello",
        "and",
        "a",
        SLOT,
    ]  # a decoder word in the list
    options = [[choice("ski")], [choice("ski", 0.6), choice("lemon", 0.1)]]
    assert fill_slots(words, options, names)[0][-3:] == ["and", "a", "lemon"]
    words = ["a", "picture", "of", "a", SLOT, "and", "a", SLOT]  # one thing before "and": drop
    assert fill_slots(words, options, names)[0] == ["a", "picture", "of", "a", "ski"]
