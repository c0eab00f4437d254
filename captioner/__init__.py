"""captioner: "Show, Attend and Tell" (Xu et al., 2015) as a library, a CLI and a web demo.

from captioner import Captioner
model = Captioner.load()              # the default model (see default_checkpoint_dir)
cap = model.caption("photo.jpg")      # Caption(words, alphas (n, 14, 14), score)
print(cap.text)
"""

from .attention_viz import attention_frames, attention_grid, save_gif, upsample_attention
from .checkpoint import CheckpointError, attention_kind, find_checkpoints, is_checkpoint
from .encoders import ENCODERS, Encoder, EncoderWeightsError
from .images import ImageError, load_image
from .model import Caption, Captioner, default_checkpoint_dir
from .onnx_encoder import EncoderRuntimeError
from .runtime import tune_malloc
from .scenes import RandomScene, SceneMaker
from .vocab import Vocabulary, tokenize

__version__ = "0.1.0"

__all__ = [
    "Caption",
    "Captioner",
    "CheckpointError",
    "ENCODERS",
    "Encoder",
    "EncoderRuntimeError",
    "EncoderWeightsError",
    "ImageError",
    "RandomScene",
    "SceneMaker",
    "Vocabulary",
    "attention_frames",
    "attention_grid",
    "attention_kind",
    "default_checkpoint_dir",
    "find_checkpoints",
    "is_checkpoint",
    "load_image",
    "save_gif",
    "tokenize",
    "tune_malloc",
    "upsample_attention",
]
