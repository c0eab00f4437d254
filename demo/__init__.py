"""The web demo: a Gradio page over the `captioner` library (run it with `python app.py`)."""

from .app import CaptionDemo
from .models import ModelStore
from .workspace import Workspace

__all__ = ["CaptionDemo", "ModelStore", "Workspace"]
