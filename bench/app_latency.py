"""The demo as a visitor meets it: `python app.py` in a subprocess, driven through `gradio_client`.

    python -m bench.app_latency [--checkpoint DIR] [--requests 20]

Reports upload-to-caption latency (p50/p95 over N requests of a 448x448 JPEG, each request
uploading the file afresh), the server's resident memory (VmRSS, and its peak VmHWM, of the
server and its children), and, in this process afterwards, what the page's own event handlers
cost: drawing the first frame, the GIF, the grid figure and stepping to another word (those
events are private, so no client can call them).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from .common import REPO, astronaut_jpeg, base_parser, fmt, load_model, print_table, rss_mb, setup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least q% of the samples at or below it."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
    return out


def tree_memory(pid: int) -> tuple[float, float]:
    """(sum of VmRSS, sum of VmHWM) in MiB over the server and its children."""
    rss = hwm = 0.0
    for p in process_tree(pid):
        try:
            r, h = rss_mb(p)
        except OSError:
            continue
        rss, hwm = rss + r, hwm + h
    return rss, hwm


def wait_for(url: str, proc: subprocess.Popen, timeout: float) -> float:
    """Seconds until `url` answers; raises if the server exits or the time runs out."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return time.perf_counter() - start
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def checkpoint_for_app(checkpoint: str | None, scratch: Path) -> tuple[str, str]:
    """A checkpoint folder the app can load, and what it is: the random model is saved first."""
    from captioner import default_checkpoint_dir

    if checkpoint and checkpoint != "random":
        return checkpoint, f"checkpoint {checkpoint}"
    if not checkpoint and (default_checkpoint_dir() / "config.json").is_file():
        return str(default_checkpoint_dir()), f"checkpoint {default_checkpoint_dir()}"
    model, what = load_model("random" if checkpoint else None)
    path = scratch / "random-default-sizes"
    model.save(path)
    return str(path), what


def drive(url: str, upload: Path, requests: int, beam: int) -> tuple[list[float], dict, list[str]]:
    """Upload-to-caption seconds for each request, the last answer, and the named endpoints."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    api = client.view_api(print_info=False, return_format="dict") or {}
    endpoints = sorted(api.get("named_endpoints", {}))
    times, answer = [], {}
    for i in range(requests + 1):
        start = time.perf_counter()
        answer = client.predict(handle_file(str(upload)), beam, api_name="/caption")
        if i:  # the first request pays for the client's and server's first-use costs
            times.append(time.perf_counter() - start)
    client.close()
    if isinstance(answer, (list, tuple)):
        answer = answer[0]
    return times, answer, endpoints


def handler_costs(checkpoint: str, upload: Path, repeats: int) -> list[list[str]]:
    """What the page's events cost after a caption, called as methods (no browser, no server)."""
    from demo import CaptionDemo

    app = CaptionDemo.create(
        checkpoint=checkpoint, warm=True, scene_maker=None
    )  # no background preload
    samples: dict[str, list[float]] = {}

    def timed(name, fn):
        start = time.perf_counter()
        result = fn()
        samples.setdefault(name, []).append(time.perf_counter() - start)
        return result

    for r in range(repeats + 1):
        _, captioned = timed("caption (the API event)", lambda: app.caption(str(upload), 3))
        shown = timed("show: caption + first frame", lambda: app.show(captioned))
        rendered = shown[0]
        timed("next word (frame drawn on demand)", lambda: app.next_word(rendered, 1))
        timed("next word again (frame on disk)", lambda: app.previous_word(rendered, 2))
        if hasattr(app, "animate"):
            timed("animate: all frames + GIF", lambda: app.animate(rendered))
        timed("next word after the GIF (all on disk)", lambda: app.next_word(rendered, 3))
        if hasattr(app, "figure"):
            timed("figure: grid PNG (matplotlib)", lambda: app.figure(rendered))
        if r == 0:
            samples.clear()
    words = len(rendered)
    return [
        [name, fmt(statistics.median(v) * 1000), f"{min(v) * 1000:.0f}-{max(v) * 1000:.0f}"]
        for name, v in samples.items()
    ] + [["(words in the caption)", str(words), ""]]


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0], repeats=3)
    p.add_argument("--requests", type=int, default=20, help="timed caption requests")
    p.add_argument("--beam-size", type=int, default=3)
    p.add_argument("--startup-timeout", type=float, default=300)
    p.add_argument(
        "--no-handlers", action="store_true", help="skip the in-process event handler timings"
    )
    args = p.parse_args(argv)
    setup(args)
    scratch = Path(tempfile.mkdtemp(prefix="bench-app-"))
    checkpoint, what = checkpoint_for_app(args.checkpoint, scratch)
    upload = scratch / "astronaut_448.jpg"
    upload.write_bytes(astronaut_jpeg(448))
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_TEMP_DIR": str(scratch / "gradio"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    log_path = scratch / "app.log"
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--checkpoint", checkpoint],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            startup = wait_for(url, proc, args.startup_timeout)
            idle_rss, _ = tree_memory(proc.pid)
            times, answer, endpoints = drive(url, upload, args.requests, args.beam_size)
            rss, hwm = tree_memory(proc.pid)
        except Exception:
            print(f"app log ({log_path}):\n" + log_path.read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    step_names = [e for e in endpoints if e != "/caption"]
    rows = [
        ["server start (until the page answers)", fmt(startup, 1) + " s"],
        [
            f"upload-to-caption p50 ({len(times)} requests, beam {args.beam_size})",
            fmt(statistics.median(times) * 1000, 0) + " ms",
        ],
        ["upload-to-caption p95", fmt(percentile(times, 95) * 1000, 0) + " ms"],
        ["upload-to-caption min / max", f"{min(times) * 1000:.0f} / {max(times) * 1000:.0f} ms"],
        ["server RSS after start (model loaded, warmed)", fmt(idle_rss, 0) + " MiB"],
        [f"server RSS after {len(times) + 1} requests", fmt(rss, 0) + " MiB"],
        ["server peak RSS (VmHWM)", fmt(hwm, 0) + " MiB"],
        [
            "step to another word (API)",
            ", ".join(step_names)
            if step_names
            else "not exposed: the page's word events are private (see the next table)",
        ],
    ]
    print_table(["measure", "value"], rows, title=f"The app through gradio_client ({what})")
    print(f"\nnamed endpoints: {', '.join(endpoints)}; caption: {answer.get('caption', answer)!r}")

    if not args.no_handlers:
        try:
            rows = handler_costs(checkpoint, upload, args.repeats)
        except (ImportError, AttributeError, TypeError) as e:
            print(f"\n(the page's handlers could not be timed: {type(e).__name__}: {e})")
        else:
            print_table(
                ["page event, in process (demo/app.py)", "median ms", "range"],
                rows,
                title=f"The page's own events after a caption, called directly "
                f"(median of {args.repeats})",
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
