"""Where, not just what: a thing at a known place of the picture lands at the right grid cell,
the right place of the upsampled map and of the frames, and classifier words are read there.

A grid flattened transposed (rows and columns swapped) leaves every caption and score unchanged;
only tests like these see it.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from captioner import Encoder, attention_frames, upsample_attention
from captioner.encoders import GRID
from captioner.metrics import GroundingSample, pointing_accuracy


class Spike(torch.nn.Module):
    """A stand-in CNN: (B, C, 14, 14) zeros with a spike at (row, col) in channel 0."""

    def __init__(self, row, col):
        super().__init__()
        self.row, self.col = row, col

    def forward(self, x):
        out = torch.zeros(x.size(0), 4, GRID, GRID)
        out[:, 0, self.row, self.col] = 1.0
        return out


@pytest.mark.parametrize("row, col", [(0, 13), (13, 0), (2, 9)])
def test_grid_cell_row_col_is_annotation_vector_row_times_14_plus_col(row, col):
    encoder = Encoder.__new__(Encoder)
    torch.nn.Module.__init__(encoder)
    encoder.features = Spike(row, col)
    encoder.memory_format, encoder.cpu_batch = torch.channels_last, 2  # as Encoder() sets them
    encoder._onnx, encoder.fold_batchnorm = None, False  # PyTorch, the layers as they are
    feats = encoder(torch.zeros(3, 3, 448, 448))  # (3, 196, C), encoded in chunks of 2
    assert [int(f[:, 0].argmax()) for f in feats] == [row * GRID + col] * 3


def test_the_real_encoder_sees_a_bright_patch_top_right_in_the_top_right_cells():
    encoder = Encoder("efficientnet-lite2").eval()
    canvas = np.full((448, 448, 3), 40, np.uint8)
    canvas[32:128, 320:416] = (250, 240, 40)  # top right, rows 1-3, columns 10-12 of the grid
    with torch.no_grad():
        plain = encoder(encoder.preprocess([Image.fromarray(np.full_like(canvas, 40))]))[
            0
        ]  # (196, C)
        feats = encoder(encoder.preprocess([Image.fromarray(canvas)]))[0]  # (196, C)
    change = (feats - plain).norm(dim=1).view(GRID, GRID)  # (14, 14): how much each cell moved
    row, col = divmod(int(change.argmax()), GRID)
    assert 0 <= row <= 4 and 9 <= col <= 13, (row, col)


def test_upsampled_maps_and_frames_put_the_heat_where_the_cell_is_on_a_wide_picture():
    alpha = np.zeros((GRID, GRID), np.float32)
    alpha[1, 12] = 1.0  # top right cell
    heat = upsample_attention(alpha, (280, 140))  # (height 140, width 280)
    assert heat.shape == (140, 280)
    y, x = np.unravel_index(int(heat.argmax()), heat.shape)
    assert 0 <= y < 140 * 3 / 14 and 280 * 11 / 14 <= x < 280, (y, x)
    frame = attention_frames(
        Image.new("RGB", (280, 140), (128, 128, 128)), ["it"], alpha[None], size=None
    )[0]
    pixels = np.asarray(frame, np.float32)
    gray = np.abs(pixels - 128).sum(axis=2)[:100]  # above the label band
    y, x = np.unravel_index(int(gray.argmax()), gray.shape)
    assert y < 140 * 3 / 14 and x >= 280 * 11 / 14, (y, x)


def test_pointing_tells_boxes_apart_vertically_and_horizontally():
    top = {"head": "owl", "words": ["owl"], "box": [0, 0, 448, 100]}
    bottom = {"head": "cat", "words": ["cat"], "box": [0, 348, 448, 448]}
    left = {"head": "dog", "words": ["dog"], "box": [0, 150, 100, 300]}
    alpha_top = np.zeros((GRID, GRID), np.float32)
    alpha_top[0, 7] = 1.0
    alpha_left = np.zeros((GRID, GRID), np.float32)
    alpha_left[7, 0] = 1.0
    words = ["owl", "cat", "dog"]
    right = GroundingSample(
        words,
        np.stack([alpha_top, alpha_top[::-1].copy(), alpha_left]),
        (448, 448),
        [top, bottom, left],
    )
    wrong = GroundingSample(
        words,
        np.stack([alpha_top[::-1].copy(), alpha_top, alpha_left.T.copy()]),
        (448, 448),
        [top, bottom, left],
    )
    assert pointing_accuracy([right])["pointing_accuracy"] == 1.0
    assert pointing_accuracy([wrong])["pointing_accuracy"] == 0.0
