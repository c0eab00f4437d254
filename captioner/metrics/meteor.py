"""METEOR 1.5, the Java program coco-caption runs, made safe to time out and to give up on."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Hashable, Mapping


def _meteor_class():
    """pycocoevalcap's METEOR client, made safe to give up on.

    Its `__del__` takes a lock that `compute_score` never releases when Java dies or we stop it,
    which would hang the interpreter at garbage collection; here closing is explicit instead.
    """
    from pycocoevalcap.meteor.meteor import Meteor

    class SafeMeteor(Meteor):
        def close(self) -> str:
            """Stop Java; returns the last line it wrote to stderr (why it failed, if it did)."""
            proc = self.meteor_p
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            err = ""
            try:  # without blocking: a child of java could still hold the pipe open
                os.set_blocking(proc.stderr.fileno(), False)
                err = (proc.stderr.read() or b"").decode(errors="replace").strip()
            except (OSError, ValueError):
                pass
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
            return err.splitlines()[-1] if err else ""

        def __del__(self) -> None:
            pass

    return SafeMeteor


def meteor_score(
    gts: Mapping[Hashable, list[str]],
    res: Mapping[Hashable, list[str]],
    timeout: float | None = None,
) -> tuple[float | None, str | None]:
    """(METEOR, None), or (None, why not) when Java is missing, fails, or takes longer than `timeout`.

    Inputs are already tokenised, in pycocoevalcap's form. Java loads METEOR's paraphrase table
    first, which takes 10-20 s; the default timeout allows for that and for 50 images a second.
    """
    if shutil.which("java") is None:
        return None, "java not found"
    if timeout is None:
        timeout = 120.0 + len(res) / 50.0
    # The wire format separates fields with "|||": keep it out of the sentences.
    gts = {i: [r.replace("|", " ") for r in refs] for i, refs in gts.items()}
    res = {i: [h.replace("|", " ") for h in hyp] for i, hyp in res.items()}
    try:
        scorer = _meteor_class()()
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"cannot start java ({e})"
    result: dict = {}

    def work() -> None:
        try:
            result["score"] = float(scorer.compute_score(gts, res)[0])
        except Exception as e:  # noqa: BLE001 - Java died or answered nonsense: report, don't crash
            result["error"] = e

    worker = threading.Thread(target=work, name="meteor", daemon=True)
    worker.start()
    worker.join(timeout)
    timed_out = worker.is_alive()
    stderr = scorer.close()  # also unblocks a worker waiting on Java's output
    worker.join(5.0)
    if timed_out:
        return None, f"no answer from java -jar meteor-1.5.jar within {timeout:.0f} s"
    if "score" in result:
        return result["score"], None
    detail = stderr or f"{type(result.get('error')).__name__}: {result.get('error')}"
    return None, f"java -jar meteor-1.5.jar failed ({detail[:200]})"
