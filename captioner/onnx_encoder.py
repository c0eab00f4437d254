"""The encoder's CNN run by ONNX Runtime: the same network and weights, about twice as fast on a CPU.

PyTorch's CPU kernels are slow for EfficientNet's depthwise convolutions; ONNX Runtime's are not
(`python -m bench.encoder` compares them; docs/performance.md has the figures). Optional:
`pip install onnxruntime onnx`, then `Encoder.set_runtime("onnxruntime")`,
`Captioner.load(..., encoder_runtime="onnxruntime")` or `--encoder-runtime onnxruntime`.
PyTorch stays the default and the path that always works; gradients and GPUs always use it.

The network is exported from the loaded encoder, with its own (possibly fine-tuned) weights, in
memory when the runtime is chosen (about 3 s), and exported again if its weights change.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

import torch

from .runtime import weights_key

if TYPE_CHECKING:
    from .encoders import Encoder

RUNTIMES = ("torch", "onnxruntime")


class EncoderRuntimeError(RuntimeError):
    """The chosen encoder runtime cannot run here; the message says what to install or use."""


class OnnxRuntimeFeatures:
    """`encoder.features` exported to ONNX and run by ONNX Runtime: (B, 3, S, S) -> (B, 196, C)."""

    def __init__(self, encoder: Encoder):
        try:
            import onnx  # noqa: F401 - the exporter needs it
            import onnxruntime
        except ImportError as e:
            raise EncoderRuntimeError(
                f"the onnxruntime encoder runtime needs `pip install onnxruntime onnx` "
                f"({e.name} is not installed); or use the default runtime, torch"
            ) from None
        self._ort = onnxruntime
        self.encoder = encoder
        self._key: tuple | None = None
        self._session = None
        self._export()

    def _export(self) -> None:
        side = self.encoder.spec.input_size
        buffer = io.BytesIO()
        try:
            # the exporter's notes on tracing and constant folding are for its developers
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    self.encoder.features,
                    torch.zeros(1, 3, side, side),
                    buffer,
                    input_names=["image"],
                    output_names=["features"],
                    dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
                    dynamo=False,
                )
        except Exception as e:  # noqa: BLE001 - any exporter failure means "use torch"
            raise EncoderRuntimeError(
                f"{self.encoder.name} could not be exported to ONNX "
                f"({type(e).__name__}: {str(e)[:200]}); use the default runtime, torch"
            ) from None
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        # its threads sleep between runs instead of spinning: spinning, they took the cores from
        # PyTorch's decoder after every encode (bench.pipeline, one photo: 136 ms, then 88 ms)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = self._ort.InferenceSession(
            buffer.getvalue(), options, providers=["CPUExecutionProvider"]
        )
        self._key = weights_key(self.encoder.features)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if weights_key(self.encoder.features) != self._key:  # weights changed since the export
            self._export()
        image = x.detach().float().contiguous().numpy()  # (B, 3, S, S), NCHW
        (fmap,) = self._session.run(None, {"image": image})  # (B, C, 14, 14)
        return torch.from_numpy(fmap).flatten(2).transpose(1, 2)  # (B, 196, C)
