"""The fast inference forms compute what the plain modules compute: the packed fp16 decoder and
the channels-last encoder in chunks (the attention scores in blocks: test_attention.py)."""

import copy

import pytest
import torch
from PIL import Image
from torch import nn

from captioner import Captioner
from captioner import packed as packed_module
from captioner.beam import beam_search
from captioner.decoder import Decoder, DecoderConfig
from captioner.encoders import Encoder
from captioner.packed import (
    InferenceDecoder,
    PackedLinear,
    PackedLSTMCell,
    can_pack,
    fp16_exact,
    packed_decoder,
)

pytestmark = pytest.mark.skipif(
    not packed_module.fbgemm_available(), reason="no FBGEMM in this build (not x86)"
)


def fp16_weights(module: nn.Module) -> nn.Module:
    """Round every weight to fp16, as a saved checkpoint holds them."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())
    return module


def small_decoder(seed=0, **kw) -> Decoder:
    torch.manual_seed(seed)
    config = DecoderConfig(
        vocab_size=50, encoder_dim=24, embed_dim=16, attention_dim=12, decoder_dim=20, **kw
    )
    return fp16_weights(Decoder(config)).eval()


def test_packed_linear_and_lstm_cell_equal_the_plain_modules():
    torch.manual_seed(1)
    linear = fp16_weights(nn.Linear(40, 30))
    x = torch.randn(2, 3, 40)  # any leading shape, as nn.Linear takes
    torch.testing.assert_close(PackedLinear(linear.weight, linear.bias)(x), linear(x))
    cell = fp16_weights(nn.LSTMCell(40, 30))
    h, c = torch.randn(5, 30), torch.randn(5, 30)
    x = torch.randn(5, 40)
    for got, want in zip(PackedLSTMCell(cell)(x, (h, c)), cell(x, (h, c)), strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("kw", [{}, {"deep_output": False}, {"coverage": True}])
def test_packed_decoder_decodes_the_same_captions(kw):
    decoder = small_decoder(**kw)
    features = torch.rand(4, 196, 24) * 3
    packed = packed_decoder(decoder)
    assert isinstance(packed.lstm, PackedLSTMCell) and isinstance(decoder.lstm, nn.LSTMCell)
    plain = beam_search(decoder, features, 1, 2, beam_size=3, max_len=8)
    fast = beam_search(packed, features, 1, 2, beam_size=3, max_len=8)
    assert [h.tokens for h in fast] == [h.tokens for h in plain]
    for a, b in zip(fast, plain, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-4)
        torch.testing.assert_close(a.alphas, b.alphas, atol=1e-5, rtol=1e-4)


def test_weights_fp16_cannot_hold_are_never_packed():
    decoder = small_decoder()
    with torch.no_grad():
        decoder.fc.weight[0, 0] += 1e-4  # no longer an fp16 value
    assert not fp16_exact(decoder.fc.weight) and not can_pack(decoder)
    with pytest.raises(ValueError, match="cannot be packed"):
        packed_decoder(decoder)
    assert InferenceDecoder()(decoder) is decoder  # the plain decoder, not a rounded copy


def test_a_build_without_fbgemm_decodes_with_the_plain_decoder(monkeypatch):
    decoder = small_decoder()
    assert InferenceDecoder()(decoder) is not decoder
    monkeypatch.setattr(packed_module, "fbgemm_available", lambda: False)
    assert InferenceDecoder()(decoder) is decoder


def test_the_packed_copy_follows_weight_changes():
    decoder = small_decoder()
    cache = InferenceDecoder()
    first = cache(decoder)
    assert cache(decoder) is first  # packed once while nothing changes
    h = torch.rand(1, decoder.fc.in_features)
    before = first.fc(h)
    with torch.no_grad():
        decoder.fc.bias.add_(1.0)  # in place, as an optimizer step does (exact in fp16 here)
    second = cache(decoder)
    assert second is not first
    torch.testing.assert_close(second.fc(h), before + 1.0)
    torch.testing.assert_close(second.fc(h), decoder.fc(h))


@pytest.fixture(scope="module")
def default_model():
    return Captioner.load()


def test_the_default_model_is_packed_and_captions_as_the_plain_decoder(default_model, photo):
    model = default_model
    assert can_pack(model.decoder)  # fp16 checkpoint: packing is exact
    im = Image.fromarray(photo)
    features = model.encode([im, im.transpose(Image.FLIP_LEFT_RIGHT)])  # (2, 196, C)
    kwargs = dict(banned=(model.vocab.start, model.vocab.pad), beam_size=3, max_len=20)
    plain = beam_search(model.decoder, features, model.vocab.start, model.vocab.end, **kwargs)
    fast = beam_search(
        model.inference_decoder(),
        features,
        model.vocab.start,
        model.vocab.end,
        **kwargs,
    )
    assert [h.tokens for h in fast] == [h.tokens for h in plain]
    assert [h.score for h in fast] == pytest.approx([h.score for h in plain], abs=1e-4)


def test_the_channels_last_encoder_in_chunks_gives_the_plain_features(default_model, photo):
    encoder = default_model.encoder
    assert encoder.cpu_batch < 3 and encoder.memory_format == torch.channels_last
    im = Image.fromarray(photo)
    x = encoder.preprocess([im, im.transpose(Image.FLIP_LEFT_RIGHT), im.rotate(90)])
    plain = Encoder("efficientnet-lite2").eval()
    plain.set_memory_format(torch.contiguous_format)
    plain.cpu_batch = 3  # all at once, NCHW: the layout and batching before the speed work
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), plain(x), atol=1e-4, rtol=1e-4)  # (3, 196, C)


@pytest.mark.parametrize("name", ["efficientnet-lite2", "resnet50"])
def test_batchnorm_folded_for_inference_gives_the_same_features(name, photo):
    encoder = Encoder(name, pretrained=name != "resnet50").eval()
    if name == "resnet50":  # random weights: give the BatchNorms statistics to fold
        torch.manual_seed(0)
        for m in encoder.features.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.5, 0.5)
    x = encoder.preprocess([Image.fromarray(photo)])
    with torch.no_grad():
        folded = encoder(x)  # (1, 196, C)
        layers = encoder._inference_features()
        encoder.fold_batchnorm = False
        plain = encoder(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in layers.modules())  # all folded
    assert any(isinstance(m, nn.BatchNorm2d) for m in encoder.features.modules())  # untouched
    assert float((folded - plain).abs().max() / plain.abs().max()) < 1e-4


@pytest.mark.parametrize(
    "kernel,stride,size,symmetric",
    [(3, 1, 14, True), (5, 1, 15, True), (3, 2, 15, True), (3, 2, 14, False), (5, 2, 16, False)],
)
def test_padding_moved_into_the_convolution_gives_the_same_output(kernel, stride, size, symmetric):
    from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding

    from captioner.encoders import _efficientnet_for_inference

    torch.manual_seed(0)
    conv = Conv2dStaticSamePadding(4, 4, kernel, stride, image_size=size, groups=4).eval()
    block = nn.Sequential(conv, nn.ReLU6())
    x = torch.randn(2, 4, size, size) * 4  # (B, C, H, W), many values outside [0, 6]
    with torch.no_grad():
        expected = block(x)
        simplified = copy.deepcopy(block)
        _efficientnet_for_inference(simplified)
        got = simplified(x.clone())
    # "same" padding at stride 2 on an even size is lopsided (one more row below): kept
    assert isinstance(simplified[0].static_padding, nn.Identity) == symmetric
    assert simplified[0].padding == ((kernel // 2,) * 2 if symmetric else (0, 0))
    assert simplified[1].inplace and not block[1].inplace
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-6)


def test_the_efficientnet_copy_pads_inside_its_stride_1_convolutions(photo):
    encoder = Encoder("efficientnet-lite2").eval()
    with torch.no_grad():
        layers = encoder._inference_features()
    pads = [m.static_padding for m in layers.modules() if hasattr(m, "static_padding")]
    kept = [p for p in pads if isinstance(p, nn.ZeroPad2d)]
    # the stem and the first depthwise layer of each later stage have stride 2: 5 of them
    assert len(kept) == 5 and all(p.padding[0] != p.padding[1] for p in kept)
    assert len([p for p in encoder.features.modules() if isinstance(p, nn.ZeroPad2d)]) > 5
    assert all(m.inplace for m in layers.modules() if isinstance(m, nn.ReLU6))


def test_the_folded_copy_follows_weight_changes_and_gradients_use_the_layers(photo):
    encoder = Encoder("efficientnet-lite2").eval()
    x = encoder.preprocess([Image.fromarray(photo)])
    with torch.no_grad():
        first = encoder._inference_features()
        assert encoder._inference_features() is first  # folded once while nothing changes
        encoder.features.net._conv_head.weight.mul_(2.0)  # in place, as training would
        second = encoder._inference_features()
        assert second is not first
        folded = encoder(x)
        encoder.fold_batchnorm = False
        plain = encoder(x)
    assert float((folded - plain).abs().max() / plain.abs().max()) < 1e-4
    encoder.fold_batchnorm = True
    encoder.set_fine_tune(True)
    assert encoder._inference_features() is encoder.features  # gradients on: the real layers
    assert encoder(x).requires_grad
