"""The app as a process: stopping it as a Space or a container does (SIGTERM) cleans up."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_sigterm_stops_the_app_and_removes_its_work_folder(tiny_checkpoint, tmp_path):
    temp = tmp_path / "gradio"
    env = {**os.environ, "GRADIO_TEMP_DIR": str(temp), "GRADIO_ANALYTICS_ENABLED": "False"}
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--checkpoint", tiny_checkpoint, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while (
            not list(temp.glob("captioner-demo-*"))
            and time.time() < deadline
            and proc.poll() is None
        ):
            time.sleep(0.5)
        assert list(temp.glob("captioner-demo-*")), "the app never made its work folder"
        time.sleep(3)  # let it reach the serving loop
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stdout.read()
    assert not list(temp.glob("captioner-demo-*"))
