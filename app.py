"""Serve the captioning demo (also the Hugging Face Space entry point).

    python app.py [--checkpoint FOLDER] [--encoder-runtime onnxruntime] [--share]

Listens on $GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT, by default 127.0.0.1:7860.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

# Before torch is imported: OpenMP threads that spin while waiting make 2 threads several times
# slower than 1 when anything else shares a 2-core machine (measured 2.6 s vs 0.48 s for
# the encoder); sleeping instead cost nothing measurable on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Serve the Show, Attend and Tell demo.")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint folder shown first (default: checkpoints/default); "
        "every folder under checkpoints/ is offered too",
    )
    p.add_argument(
        "--encoder-runtime",
        choices=["torch", "onnxruntime"],
        default=os.environ.get("CAPTIONER_ENCODER_RUNTIME", "torch"),
        help="run the encoder with torch (default) or onnxruntime, about 2x faster on a CPU "
        "(`pip install onnxruntime onnx`); default from $CAPTIONER_ENCODER_RUNTIME",
    )
    p.add_argument(
        "--share", action="store_true", help="also serve through a public gradio.live link"
    )
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from captioner import CheckpointError, EncoderRuntimeError, tune_malloc

    tune_malloc()
    from demo import CaptionDemo

    try:
        app = CaptionDemo.create(checkpoint=args.checkpoint, encoder_runtime=args.encoder_runtime)
    except (CheckpointError, EncoderRuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # A Space or a container stops the app with SIGTERM, which by default ends Python without
    # its clean-up; as Ctrl+C it closes the server and removes the app's work folder.
    signal.signal(signal.SIGTERM, _stop)
    app.launch(server_name=args.host, server_port=args.port, share=args.share)
    app.workspace.close()
    return 0


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
