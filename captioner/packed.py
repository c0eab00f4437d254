"""The decoder's matrices packed for CPU inference: fp16 storage, fp32 arithmetic.

Beam search multiplies the decoder's matrices by a few rows at a time (K beams of a few images).
At such sizes MKL's fp32 GEMM runs far below the machine's speed on this project's CPU (3 rows x
2304 -> 2048: 1.9 ms, against 0.37 ms for one row), while FBGEMM's fp16-weight kernel, which
reads half the bytes and converts to fp32 as it goes, takes 0.5 ms. Our checkpoints store weights
in fp16, so packing them loses nothing: the results change only by the order of fp32 sums.
Weights that fp16 cannot hold exactly (a model in training) are never packed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .decoder import Decoder
from .runtime import weights_key


def fp16_exact(t: torch.Tensor) -> bool:
    """Whether fp16 holds every value of `t` exactly (true for weights loaded from our checkpoints)."""
    return bool(torch.equal(t.to(torch.float16).to(t.dtype), t))


class PackedLinear(nn.Module):
    """`nn.Linear` for inference with FBGEMM's packed fp16 weight; the bias stays fp32."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.packed = torch.ops.quantized.linear_prepack_fp16(weight.detach().float(), None)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.quantized.linear_dynamic_fp16(x, self.packed)  # (..., out)
        return y if self.bias is None else y.add_(self.bias)


class PackedLSTMCell(nn.Module):
    """`nn.LSTMCell` with its input and hidden matrices as one packed matrix: one product a step."""

    def __init__(self, cell: nn.LSTMCell):
        super().__init__()
        weight = torch.cat([cell.weight_ih, cell.weight_hh], dim=1)  # (4D, in + D)
        bias = cell.bias_ih + cell.bias_hh if cell.bias else None  # (4D,)
        self.gates = PackedLinear(weight, bias)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        h, c = state  # (N, D) each
        gates = self.gates(torch.cat([x, h], dim=1))  # (N, 4D), PyTorch's order: i, f, g, o
        i, f, g, o = gates.chunk(4, dim=1)  # (N, D) each
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (N, D)
        h = torch.sigmoid(o) * torch.tanh(c)  # (N, D)
        return h, c


def fbgemm_available() -> bool:
    """FBGEMM, the x86 kernels behind the packed fp16 products (not in ARM builds of PyTorch)."""
    return "fbgemm" in torch.backends.quantized.supported_engines


def can_pack(decoder: Decoder) -> bool:
    """Packing needs a CPU decoder, FBGEMM in this PyTorch build, and fp16-exact weights."""
    if any(p.device.type != "cpu" for p in decoder.parameters()):
        return False
    if not fbgemm_available():
        return False
    return all(fp16_exact(p) for p in decoder.parameters())


def packed_decoder(decoder: Decoder) -> Decoder:
    """An inference copy of `decoder` whose per-step matrices are packed; `decoder` is unchanged.

    Raises ValueError when `can_pack` is False. The encoder projection (`encoder_att`, run once on
    all 196 positions) and `full_att` (a reduction over a large tensor) stay plain.
    """
    if not can_pack(decoder):
        raise ValueError("this decoder cannot be packed (see captioner.packed.can_pack)")
    packed = copy.deepcopy(decoder).eval()
    packed.config = decoder.config  # shared: a decoding setting changed later applies to both
    with torch.no_grad():
        for owner, name in [
            (packed.attention, "decoder_att"),
            (packed, "f_beta"),
            (packed, "fc"),
            (packed, "init_h"),
            (packed, "init_c"),
            *([(packed, "out_h"), (packed, "out_z")] if packed.config.deep_output else []),
        ]:
            linear = getattr(owner, name)
            setattr(owner, name, PackedLinear(linear.weight, linear.bias))
        packed.lstm = PackedLSTMCell(packed.lstm)
    return packed


class InferenceDecoder:
    """The packed copy of a decoder, made once and made again only when its weights change.

    Keyed on each parameter's storage and version counter, which every in-place update (an
    optimizer step, `load_state_dict`) and every new parameter (`add_words`) changes.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._packed: Decoder | None = None

    def __call__(self, decoder: Decoder) -> Decoder:
        key = (id(decoder), *weights_key(decoder))
        if key != self._key:
            self._packed = packed_decoder(decoder) if can_pack(decoder) else None
            self._key = key
        return self._packed if self._packed is not None else decoder
