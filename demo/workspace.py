"""A private temporary folder per rendered caption, so the server's disk use stays bounded.

Gradio serves files that handlers return by path; the pictures of a caption therefore live on
disk while a visitor steps through its words. Only the newest `keep` captions are kept; the
whole tree is removed when the app object goes away. Nothing is written into the repository.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections import deque
from pathlib import Path


class Workspace:
    """Hands out fresh folders under one temporary root and deletes the oldest beyond `keep`."""

    def __init__(self, keep: int = 64, parent: str | Path | None = None):
        parent = parent or os.environ.get("GRADIO_TEMP_DIR") or None
        if parent:
            Path(parent).mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="captioner-demo-", dir=parent)).resolve()
        self.keep = max(1, keep)
        self._folders: deque[Path] = deque()
        self._lock = threading.Lock()
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.root), True)

    def new_folder(self) -> Path:
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        with self._lock:
            self._folders.append(folder)
            old = [self._folders.popleft() for _ in range(len(self._folders) - self.keep)]
        for path in old:
            shutil.rmtree(path, ignore_errors=True)
        return folder

    def close(self) -> None:
        self._cleanup()
