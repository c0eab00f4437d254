"""How long a visitor waits: upload-to-caption through the public API, and the first frame after it.

    python -m demo.bench_latency [--checkpoint FOLDER] [--runs 10] [--image demo/examples/astronaut.jpg]

Without a checkpoint (and no default model yet) it times a random-weight model of the paper's size
(512-wide decoder, 1000 words): such a model never stops early, so every caption runs the full
`max_len` steps, the slowest case. The server and the client run in this process, on this machine.
"""
from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def paper_size_checkpoint(folder: Path, words: int = 1000, max_len: int = 20) -> Path:
    """A random-weight model with the decoder sizes of the paper, saved as a checkpoint."""
    import torch

    from captioner import Captioner, Vocabulary
    torch.manual_seed(0)
    vocab = Vocabulary.build([[f"w{i}" for i in range(words)]])
    Captioner.create("efficientnet-lite2", vocab, max_len=max_len).save(folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ms(xs: list[float]) -> str:
    median, low, high = (1000 * f(xs) for f in (statistics.median, min, max))
    return f"median {median:.0f} ms (min {low:.0f}, max {high:.0f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--beam-size", type=int, default=3)
    p.add_argument("--image", type=Path, default=ROOT / "demo" / "examples" / "astronaut.jpg")
    args = p.parse_args(argv)

    from captioner import default_checkpoint_dir, tune_malloc
    tune_malloc()
    from gradio_client import Client, handle_file

    from demo import CaptionDemo

    with tempfile.TemporaryDirectory(prefix="captioner-bench-") as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = default_checkpoint_dir()
            if not (checkpoint / "config.json").is_file():
                checkpoint = paper_size_checkpoint(Path(tmp) / "paper-size-random")
        print(f"model: {checkpoint}")
        app = CaptionDemo.create(checkpoint=checkpoint, checkpoints_root=Path(tmp) / "none")
        demo = app.build()
        port = free_port()
        demo.launch(server_port=port, prevent_thread_lock=True, quiet=True, **app.launch_options())
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            image = handle_file(str(args.image))
            client.predict(image, args.beam_size, app.store.default, api_name="/caption")  # warm
            api, model, first, rest = [], [], [], []
            for _ in range(args.runs):
                start = time.perf_counter()
                result = client.predict(image, args.beam_size, app.store.default, api_name="/caption")
                api.append(time.perf_counter() - start)
                # the page's next events, timed on their own (the browser runs them after the API event)
                _, captioned = app.caption(str(args.image), args.beam_size)
                model.append(captioned.seconds)
                start = time.perf_counter()
                rendered = app.show(captioned)[0]
                first.append(time.perf_counter() - start)
                start = time.perf_counter()
                app.animate(rendered)
                app.figure(rendered)
                rest.append(time.perf_counter() - start)
        finally:
            demo.close()
            app.workspace.close()

    print(f"caption: {len(result['words'])} words, beam {args.beam_size}, {args.runs} runs, "
          f"image {args.image.name}")
    print(f"  API call (upload + queue + model + JSON), client side: {_ms(api)}")
    print(f"  the model alone (encoder + beam search), same image:   {_ms(model)}")
    print(f"  the page's next event: its first frame                 {_ms(first)}")
    print(f"  then in the background: other frames, GIF, grid (*)    {_ms(rest)}")
    print("  (*) the grid only while its tab is open")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
