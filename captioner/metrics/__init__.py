"""How good the captions are: the paper's text metrics (`scores`, with the coco-caption
tokenisation in `ptb_tokenizer` and Java METEOR in `meteor`) and whether attention lands on the
objects named (`grounding`)."""

from .grounding import (
    GroundingSample,
    attention_peak,
    grounding_scores,
    object_mentions,
    object_vocabulary,
    pointing_accuracy,
)
from .meteor import meteor_score
from .ptb_tokenizer import ptb_tokenize
from .scores import TEXT_METRICS, bleu4, caption_scores

__all__ = [
    "TEXT_METRICS",
    "GroundingSample",
    "attention_peak",
    "bleu4",
    "caption_scores",
    "grounding_scores",
    "meteor_score",
    "object_mentions",
    "object_vocabulary",
    "pointing_accuracy",
    "ptb_tokenize",
]
