"""Synthetic captioned scenes: Tux Paint stamps or shapes on backgrounds (also real landscape
photos), with exact boxes and captions, written as a Karpathy-split data set; and the labelled
real photos extracted from installed packages that such a data set can include."""

from .compose import RandomScene, SceneMaker, compose_scene
from .dataset import generate_scenes
from .objects import ObjectSource, object_sources

__all__ = [
    "ObjectSource",
    "RandomScene",
    "SceneMaker",
    "compose_scene",
    "generate_scenes",
    "object_sources",
]
