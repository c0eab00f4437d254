"""Many visitors at once: N threads caption pictures through the demo's API, some of them bad files.

    python -m bench.load [--checkpoint DIR] [--requests 200] [--users 8] [--bad 0.2] [--big 0.05]
    python -m bench.load --url http://127.0.0.1:7860/ [--pid PID]     # an app that already runs

Starts `python app.py --checkpoint DIR` on a free loopback port (or attaches to `--url`), warms
it up, then sends a fixed number of requests from `--users` gradio_client users in parallel.
Every request must either get a caption, or for a bad file the app's clear error, or the
queue's "busy" answer; the server's memory after the run must stay within 10% of what it was
after warm-up (no leak per request), and its high-water mark (VmHWM) under 1.5 GiB although
`--big` of the requests are small files of huge dimensions (an 8000x8000 RGBA PNG of 265 kB, a
16-bit grayscale one), which are accepted and captioned. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.app_latency import checkpoint_for_app, free_port, percentile, tree_memory, wait_for
from bench.common import REPO, photos

BAD_FILES = (
    "text.jpg",
    "page.jpg",
    "truncated.jpg",
    "truncated.png",
    "bomb_header.png",
    "noise.jpg",
)
CLEAR = "can't be used as a picture"  # how the app begins its message for an unusable file


@dataclass
class Outcome:
    kind: str  # "good" or "bad": what was sent
    result: str  # "caption", "clear error", "busy", "wrong", "unclear error", "failed"
    seconds: float
    detail: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint for the app (default: checkpoints/default, else a random-weight "
        "model of the default's sizes, saved to a temporary folder)",
    )
    p.add_argument(
        "--big",
        type=float,
        default=0.05,
        help="share of requests that are 8000x8000 PNGs (accepted, captioned)",
    )
    p.add_argument("--url", default=None, help="attach to a running app instead of starting one")
    p.add_argument(
        "--pid", type=int, default=None, help="with --url: the server's pid, for its memory"
    )
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--users", type=int, default=8, help="parallel gradio_client users (threads)")
    p.add_argument("--bad", type=float, default=0.2, help="share of requests that send a bad file")
    p.add_argument("--beam-size", type=int, default=3)
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="requests (from all users at once) before the memory baseline (default: 2 per user)",
    )
    p.add_argument(
        "--request-timeout", type=float, default=120, help="seconds one request may take"
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=900,
        help="stop sending new requests after this long (the rest count as not sent)",
    )
    p.add_argument("--startup-timeout", type=float, default=300)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def make_big_files(folder: Path) -> list[Path]:
    """Small files of huge dimensions: 8000x8000 PNGs (RGBA, 16-bit gray; over the demo's
    full-decode limit) and JPEG, and a 35.9-megapixel PNG, the largest the demo decodes at full size."""
    import numpy as np
    from PIL import Image

    rgba, gray16, jpeg = folder / "big_rgba.png", folder / "big_gray16.png", folder / "big.jpg"
    Image.new("RGBA", (8000, 8000), (10, 200, 30, 128)).save(rgba)
    ramp = (np.arange(8000, dtype=np.uint16)[None, :] * 8).repeat(8000, 0)  # (8000, 8000)
    Image.fromarray(ramp).save(gray16)
    Image.fromarray((ramp >> 8).astype(np.uint8)).convert("RGB").save(jpeg, quality=85)
    edge = folder / "big_35mp.png"  # just under the demo's full-decode limit: accepted
    Image.new("RGBA", (5990, 5990), (200, 30, 90, 200)).save(edge)
    return [rgba, gray16, jpeg, edge]


def make_files(folder: Path, n_good: int = 6) -> tuple[list[Path], list[Path]]:
    """Photos to caption (JPEG, as phones send them) and bad files from the test corpus."""
    from tests.corpus import make_corpus

    good = []
    for i, im in enumerate(photos(n_good, side=640)):
        path = folder / f"photo_{i}.jpg"
        im.save(path, "JPEG", quality=90)
        good.append(path)
    corpus = {c.name: c.path for c in make_corpus(folder / "corpus") if not c.ok}
    return good, [corpus[name] for name in BAD_FILES]


def classify(kind: str, answer=None, error: BaseException | None = None) -> tuple[str, str]:
    """What a request got: a caption, the clear error a bad file deserves, busy, or something wrong."""
    if error is None:
        data = answer[0] if isinstance(answer, (list, tuple)) else answer
        if isinstance(data, dict) and isinstance(data.get("words"), list) and "caption" in data:
            return ("caption", "") if kind != "bad" else ("wrong", "a bad file was captioned")
        return "wrong", f"unexpected answer {str(answer)[:200]}"
    message = str(error)
    if "queue is full" in message.lower() or type(error).__name__ == "QueueError":
        return "busy", message
    detail = f"{type(error).__name__}: {message[:300]}"
    if kind == "big" and CLEAR in str(error) and "too large" in str(error):
        return "clear error", str(error)  # an app may refuse what it cannot decode within bounds
    if isinstance(error, TimeoutError) or kind != "bad":
        return ("failed" if isinstance(error, TimeoutError) else "wrong"), detail
    if CLEAR in message and "\n" not in message.strip() and "Traceback" not in message:
        return "clear error", message
    return "unclear error", detail


class Users:
    """`users` threads, each with its own gradio_client, taking requests from one shared schedule."""

    def __init__(self, url: str, schedule: list[tuple[str, Path]], args: argparse.Namespace):
        self.url, self.schedule, self.args = url, schedule, args
        self.next = itertools.count()
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.stop_at = time.monotonic() + args.max_seconds

    def user(self, _: int) -> None:
        from gradio_client import Client, handle_file

        client = Client(self.url, verbose=False, download_files=False, analytics_enabled=False)
        try:
            while time.monotonic() < self.stop_at:
                i = next(self.next)
                if i >= len(self.schedule):
                    return
                kind, path = self.schedule[i]
                start = time.perf_counter()
                try:
                    job = client.submit(
                        handle_file(str(path)), self.args.beam_size, api_name="/caption"
                    )
                    result, detail = classify(
                        kind, answer=job.result(timeout=self.args.request_timeout)
                    )
                except Exception as e:  # noqa: BLE001 - every way a request can end is counted
                    result, detail = classify(kind, error=e)
                with self.lock:
                    self.outcomes.append(Outcome(kind, result, time.perf_counter() - start, detail))
        finally:
            client.close()

    def run(self) -> list[Outcome]:
        with ThreadPoolExecutor(self.args.users) as pool:
            list(pool.map(self.user, range(self.args.users)))
        return self.outcomes


def memory_mib(pid: int | None) -> float | None:
    """VmRSS of the server and its children (from /proc/<pid>/status), or None without a pid."""
    return tree_memory(pid)[0] if pid else None


def report(
    outcomes: list[Outcome],
    planned: int,
    args,
    before: float | None,
    after: float | None,
    peak: float | None,
    wall: float,
    what: str,
    high_water: float | None = None,
) -> bool:
    count = {
        r: sum(o.result == r for o in outcomes)
        for r in ("caption", "clear error", "busy", "wrong", "unclear error", "failed")
    }
    good = [o for o in outcomes if o.kind == "good"]
    big = [o for o in outcomes if o.kind == "big"]
    bad = [o for o in outcomes if o.kind == "bad"]
    captioned = [o.seconds for o in outcomes if o.result == "caption"]
    refused = [o.seconds for o in outcomes if o.result == "clear error"]
    print(f"model: {what}")
    print(
        f"{planned} requests planned from {args.users} users, {len(outcomes)} sent in {wall:.1f} s "
        f"({len(outcomes) / wall:.2f} requests/s); {len(good)} good pictures, {len(big)} huge "
        f"(8000x8000 PNGs and JPEG, a 5990x5990 PNG), {len(bad)} bad files; "
        f"beam {args.beam_size}"
    )
    captioned_good = sum(o.result == "caption" for o in good)
    print(
        f"success rate (good pictures captioned): {captioned_good}/{len(good)} "
        f"= {100 * captioned_good / max(len(good), 1):.1f}%"
    )
    if big:
        print(
            f"huge uploads: {sum(o.result == 'caption' for o in big)} captioned, "
            f"{sum(o.result == 'clear error' for o in big)} refused as too large "
            f"(e.g. {next((o.detail for o in big if o.result == 'clear error'), '-')})"
        )
    print(
        "clear errors (bad files refused with the app's message): "
        f"{sum(o.result == 'clear error' for o in bad)}/{len(bad)}"
    )
    print(f"busy rejections (queue full): {count['busy']}")
    print(
        f"wrong answers: {count['wrong']}; unclear errors: {count['unclear error']}; "
        f"failed (timeout, connection): {count['failed']}; not sent (time limit): {planned - len(outcomes)}"
    )
    if captioned:
        print(
            f"caption latency: p50 {statistics.median(captioned):.2f} s, p95 {percentile(captioned, 95):.2f} s, "
            f"max {max(captioned):.2f} s"
        )
    if refused:
        print(
            f"clear-error latency: p50 {statistics.median(refused):.2f} s, p95 {percentile(refused, 95):.2f} s"
        )
    for o in [o for o in outcomes if o.result in ("wrong", "unclear error", "failed")][:5]:
        print(f"  {o.result} ({o.kind} file): {o.detail}")
    examples = sorted({o.detail for o in outcomes if o.result == "clear error"})[:3]
    for e in examples:
        print(f"  e.g. {e}")
    ok = count["caption"] + count["clear error"] + count["busy"] == planned
    if before is not None and after is not None:
        growth = 100 * (after - before) / before
        print(
            f"server memory (VmRSS): {before:.0f} MiB after warm-up, {after:.0f} MiB after the run "
            f"({growth:+.1f}%), highest sample during the run {peak:.0f} MiB"
        )
        ok &= growth <= 10.0
    if high_water is not None:
        print(f"server peak memory (VmHWM, the most it ever held): {high_water:.0f} MiB")
        ok &= high_water <= 1536
    else:
        print("server memory: unknown (give --pid with --url)")
    print(
        "target met: every request captioned, clearly refused or told busy; memory within 10%; "
        "peak under 1.5 GiB"
        if ok
        else "TARGET MISSED"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-load-"))
    good, bad = make_files(scratch)
    big = make_big_files(scratch) if args.big else []
    rng = random.Random(args.seed)
    schedule = []
    for i in range(args.requests):
        draw = rng.random()
        if draw < args.bad:
            schedule.append(("bad", rng.choice(bad)))
        elif draw < args.bad + args.big:
            schedule.append(("big", big[i % len(big)]))
        else:
            schedule.append(("good", good[i % len(good)]))
    proc = None
    log_path = scratch / "app.log"
    if args.url:
        url, pid, what = args.url, args.pid, f"the app at {args.url}"
    else:
        checkpoint, what = checkpoint_for_app(args.checkpoint, scratch)
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        env = {
            **os.environ,
            "GRADIO_SERVER_PORT": str(port),
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_TEMP_DIR": str(scratch / "gradio"),
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        log = open(log_path, "w")
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--checkpoint", checkpoint],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        pid = proc.pid
    try:
        if proc is not None:
            print(f"app started in {wait_for(url, proc, args.startup_timeout):.1f} s", flush=True)
        # Warm up as the load will run: every user at once, so every worker thread has met the model.
        n_warm = 2 * args.users if args.warmup is None else args.warmup
        warm = [("good", good[i % len(good)]) for i in range(n_warm)] + [("bad", bad[0])]
        warm_outcomes = Users(url, warm, args).run()
        if any(o.result not in ("caption", "clear error", "busy") for o in warm_outcomes):
            print(f"warm-up failed: {[o.detail for o in warm_outcomes]}", file=sys.stderr)
            return 1
        time.sleep(1.0)
        before = memory_mib(pid)
        peak = [before or 0.0]
        done = threading.Event()
        users = Users(url, schedule, args)
        timeline: list[
            tuple[int, float]
        ] = []  # (requests answered, MiB): a leak climbs, warm-up levels off
        marks = {round(len(schedule) * q) for q in (0.25, 0.5, 0.75)}

        def sample() -> None:
            while not done.wait(0.5):
                m = memory_mib(pid)
                if m:
                    peak[0] = max(peak[0], m)
                    answered = len(users.outcomes)
                    if marks and answered >= min(marks):
                        marks.discard(min(marks))
                        timeline.append((answered, m))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        outcomes = users.run()
        wall = time.perf_counter() - start
        done.set()
        time.sleep(2.0)  # let the server finish its bookkeeping before the last reading
        after = memory_mib(pid)
        if pid:
            print(
                f"warm-up: {len(warm)} requests from {args.users} users; server memory during the run: "
                + ", ".join(f"{m:.0f} MiB after {n}" for n, m in timeline)
            )
        high_water = tree_memory(pid)[1] if pid else None
        ok = report(
            outcomes,
            len(schedule),
            args,
            before,
            after,
            peak[0] if pid else None,
            wall,
            what,
            high_water,
        )
        return 0 if ok else 1
    except Exception:
        if proc is not None:
            print(f"app log ({log_path}):\n" + log_path.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
