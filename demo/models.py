"""Which checkpoints a visitor may pick, and the models loaded from them (a few, kept warm).

Visitors choose by name only; names map to folders found at start-up, so no request can make
the server open a path of its choosing.
"""

from __future__ import annotations

import html
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from captioner import Captioner, CheckpointError, attention_kind, find_checkpoints

SHOWN_CHARS = 40  # of a name a request sent, at most this much is echoed in a message


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """A short, escaped prefix of something a request sent, safe to put in a message."""
    prefix = text[:limit] + ("..." if len(text) > limit else "")
    return html.escape(repr(prefix), quote=False)  # Gradio shows messages as HTML


class ModelStore:
    """Checkpoint names -> folders, and an LRU cache of loaded models keyed by folder."""

    def __init__(self, folders: Sequence[Path], capacity: int = 3, encoder_runtime: str = "torch"):
        self.encoder_runtime = encoder_runtime  # "torch" or "onnxruntime", for every model
        self._folders: dict[str, Path] = {}
        for folder in folders:
            folder = Path(folder).resolve()
            if folder in self._folders.values():
                continue
            name, k = folder.name, 2
            while name in self._folders:  # two folders with one name: "tiny", "tiny (2)"
                name, k = f"{folder.name} ({k})", k + 1
            self._folders[name] = folder
        self._models: OrderedDict[Path, Captioner] = OrderedDict()
        self._capacity = max(1, capacity)
        self._lock = threading.Lock()

    @classmethod
    def discover(
        cls,
        root: Path,
        first: Path | None = None,
        capacity: int = 3,
        encoder_runtime: str = "torch",
    ) -> ModelStore:
        """The folder `first` (e.g. from --checkpoint) and then every checkpoint under `root`."""
        folders = ([Path(first)] if first else []) + find_checkpoints(Path(root))
        return cls(folders, capacity=capacity, encoder_runtime=encoder_runtime)

    @property
    def names(self) -> list[str]:
        return list(self._folders)

    def kind(self, name: str) -> str | None:
        """A model's attention, "soft" or "hard", from its config (None if it cannot be read)."""
        try:
            return attention_kind(self.folder(name))
        except CheckpointError:
            return None

    def of_kind(self, kind: str) -> list[str]:
        """The names of the models with `kind` attention, in the store's order."""
        return [name for name in self.names if self.kind(name) == kind]

    @property
    def default(self) -> str | None:
        return self.names[0] if self._folders else None

    def folder(self, name: str | None) -> Path:
        if not self._folders:
            raise CheckpointError(
                "no model is installed: put a checkpoint folder under checkpoints/ "
                "or start the app with --checkpoint FOLDER."
            )
        if name is None or name == "":
            name = self.default
        if not isinstance(name, str):
            raise CheckpointError(
                f"a model is named by a string, e.g. {self.default!r}; choose one of "
                f"{', '.join(self.names)}."
            )
        if name not in self._folders:
            raise CheckpointError(
                f"unknown model {shown(name)}; choose one of {', '.join(self.names)}."
            )
        return self._folders[name]

    def get(self, name: str | None = None) -> Captioner:
        """The loaded model for `name` (default: the first), loading it on first use."""
        folder = self.folder(name)
        with self._lock:  # one load at a time; loads are rare and a second one would only duplicate
            model = self._models.get(folder)
            if model is None:
                model = Captioner.load(folder, encoder_runtime=self.encoder_runtime)
                self._models[folder] = model
                while len(self._models) > self._capacity:
                    self._models.popitem(last=False)
            self._models.move_to_end(folder)
            return model

    def warm_up(self, name: str | None = None) -> None:
        """Load a model and caption one blank picture, so the first visitor does not wait for it."""
        self.get(name).caption(Image.new("RGB", (64, 64), (128, 128, 128)), beam_size=1)
