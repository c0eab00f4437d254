"""The optional ONNX Runtime encoder: the same features and captions as PyTorch, clear errors when
it cannot run, and PyTorch wherever gradients are needed."""

import sys

import pytest
import torch
from PIL import Image

from captioner import Captioner, EncoderRuntimeError
from captioner.cli import main_cli
from captioner.encoders import Encoder
from captioner.onnx_encoder import OnnxRuntimeFeatures

pytest.importorskip("onnxruntime", reason="optional: pip install onnxruntime onnx")
pytest.importorskip("onnx", reason="optional: pip install onnxruntime onnx")


@pytest.fixture(scope="module")
def pictures():
    from skimage import data

    im = Image.fromarray(data.astronaut())
    cat = Image.fromarray(data.chelsea())
    return [im, cat, im.transpose(Image.FLIP_LEFT_RIGHT)]


@pytest.fixture(scope="module")
def models():
    return Captioner.load(), Captioner.load(encoder_runtime="onnxruntime")


def test_onnxruntime_features_equal_pytorch_features(models, pictures):
    torch_model, ort_model = models
    assert ort_model.encoder.runtime == "onnxruntime" and torch_model.encoder.runtime == "torch"
    x = torch_model.encoder.preprocess(pictures)  # (3, 3, S, S)
    with torch.no_grad():
        want, got = torch_model.encoder(x), ort_model.encoder(x)  # (3, 196, C)
    assert got.shape == want.shape == (3, 196, 1280)
    assert float((got - want).abs().max() / want.abs().max()) < 1e-3
    # and the grid is the same grid: each image's strongest cell agrees
    assert torch.equal(got.sum(2).argmax(1), want.sum(2).argmax(1))


def test_onnxruntime_captions_equal_pytorch_captions(models, pictures):
    torch_model, ort_model = models
    a, b = torch_model.caption(pictures), ort_model.caption(pictures)
    assert [c.words for c in a] == [c.words for c in b]
    assert [c.score for c in a] == pytest.approx([c.score for c in b], abs=1e-3)


def test_changed_weights_are_exported_again(pictures):
    encoder = Encoder("efficientnet-lite2").eval()
    encoder.set_runtime("onnxruntime")
    x = encoder.preprocess(pictures[:1])
    with torch.no_grad():
        before = encoder(x)
        encoder.features.net._conv_head.weight.mul_(2.0)  # in place, as training would
        after = encoder(x)  # ONNX Runtime, re-exported
        encoder.set_runtime("torch")
        reference = encoder(x)  # PyTorch with the new weights
    assert not torch.allclose(after, before, atol=1e-3)
    assert float((after - reference).abs().max() / reference.abs().max()) < 1e-3


def test_gradients_always_run_in_pytorch(monkeypatch, pictures):
    encoder = Encoder("efficientnet-lite2").eval()
    encoder.set_runtime("onnxruntime")

    def refuse(self, x):
        raise AssertionError("ONNX Runtime used where gradients are recorded")

    monkeypatch.setattr(OnnxRuntimeFeatures, "__call__", refuse)
    encoder.set_fine_tune(True)
    out = encoder(encoder.preprocess(pictures[:1]))  # (1, 196, C), gradients on
    assert out.requires_grad


def test_a_missing_package_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    encoder = Encoder("efficientnet-lite2")
    with pytest.raises(EncoderRuntimeError, match="pip install onnxruntime onnx"):
        encoder.set_runtime("onnxruntime")
    assert encoder.runtime == "torch"  # unchanged: it still works
    with pytest.raises(EncoderRuntimeError, match="^unknown encoder runtime 'tensorrt'; known: "):
        encoder.set_runtime("tensorrt")


def test_the_command_line_option(tmp_path, capsys, pictures, monkeypatch):
    path = tmp_path / "cat.jpg"
    pictures[1].save(path)
    assert main_cli(["caption", str(path)]) == 0
    plain = capsys.readouterr().out
    assert main_cli(["caption", "--encoder-runtime", "onnxruntime", str(path)]) == 0
    assert capsys.readouterr().out == plain
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main_cli(["caption", "--encoder-runtime", "onnxruntime", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pip install onnxruntime onnx" in err
    assert "Traceback" not in err


def test_onnx_runtime_runs_exactly_when_asked(monkeypatch, pictures):
    calls = []
    original = OnnxRuntimeFeatures.__call__

    def spy(self, x):
        calls.append(tuple(x.shape))
        return original(self, x)

    monkeypatch.setattr(OnnxRuntimeFeatures, "__call__", spy)
    encoder = Encoder("efficientnet-lite2").eval()
    x = encoder.preprocess(pictures[:1])
    with torch.no_grad():
        encoder(x)
        assert calls == [] and encoder.runtime == "torch"
        encoder.set_runtime("onnxruntime")
        encoder(x)
        assert len(calls) == 1 and encoder.runtime == "onnxruntime"
        encoder.set_runtime("torch")
        encoder(x)
    assert len(calls) == 1 and encoder.runtime == "torch"
