"""Attention pictures, the CLI on a tiny checkpoint, and image modes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captioner import attention_frames, attention_grid, load_image, save_gif, upsample_attention

ROOT = Path(__file__).resolve().parent.parent


def peaked(n_words=3):
    alphas = np.full((n_words, 14, 14), 1e-4, dtype=np.float32)
    for i in range(n_words):
        alphas[i, 2 + 4 * i, 3] = 1.0  # a different place per word
    return alphas / alphas.sum((1, 2), keepdims=True)


def test_upsampled_attention_peaks_where_the_grid_does():
    alpha = peaked(1)[0]
    heat = upsample_attention(alpha, (448, 300))
    assert heat.shape == (300, 448) and heat.max() == pytest.approx(1.0)
    y, x = np.unravel_index(heat.argmax(), heat.shape)
    assert abs(x - 3.5 * 448 / 14) < 448 / 14 and abs(y - 2.5 * 300 / 14) < 300 / 14
    # Smooth: no hard cell edges between neighbouring pixels.
    assert np.abs(np.diff(heat, axis=1)).max() < 0.1


def test_frames_gif_and_grid(tmp_path, photo):
    image = Image.fromarray(photo).resize((640, 480))
    words = ["a", "red", "star"]
    frames = attention_frames(image, words, peaked())
    assert len(frames) == 3 and frames[0].size == (448, 336)
    assert np.abs(np.asarray(frames[0], float) - np.asarray(frames[1], float)).mean() > 1
    gif = save_gif(frames, tmp_path / "a.gif")
    with Image.open(gif) as im:
        assert im.n_frames == 3 and im.size == (448, 336) and im.info.get("loop") == 0
    png = tmp_path / "grid.png"
    attention_grid(image, words, peaked(), png, title="a red star")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 400 and im.height > 200


def test_frames_need_one_map_per_word(photo):
    with pytest.raises(ValueError, match="2 words but 3"):
        attention_frames(Image.fromarray(photo), ["a", "b"], peaked())


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "1", "LA", "F"])
def test_every_pillow_mode_becomes_rgb(tmp_path, mode):
    rgb = Image.new("RGB", (40, 30), (200, 100, 50))
    im = (
        rgb.convert(mode)
        if mode not in ("I;16", "F")
        else Image.fromarray(
            (np.full((30, 40), 40000 if mode == "I;16" else 0.6)).astype(
                np.uint16 if mode == "I;16" else np.float32
            )
        )
    )
    out = load_image(im)
    assert out.mode == "RGB" and out.size == (40, 30)
    if mode == "I;16":  # 16-bit is scaled down, not clipped to white
        assert out.getpixel((0, 0))[0] == round(40000 / 257)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (60, 20), (255, 0, 0))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif)
    assert load_image(path).size == (20, 60)


def run_cli(*args, env_ckpt=None):
    import os

    env = dict(os.environ)
    if env_ckpt is not None:
        env["CAPTIONER_CHECKPOINT"] = env_ckpt
    return subprocess.run(
        [sys.executable, "-m", "captioner", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def test_cli_caption_json_gif_grid(tmp_path, tiny_checkpoint, photo):
    img = tmp_path / "astronaut.png"
    Image.fromarray(photo).save(img)
    bad = tmp_path / "notes.jpg"
    bad.write_text("<html>not an image</html>")
    r = run_cli(
        "caption",
        str(img),
        str(bad),
        str(img),
        "--checkpoint",
        tiny_checkpoint,
        "--beam-size",
        "2",
        "--json",
        "--gif",
        str(tmp_path / "g"),
        "--grid",
        str(tmp_path / "p"),
    )
    assert r.returncode == 1, r.stderr  # one bad file: reported, the others still captioned
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 2 and lines[0] == lines[1]
    rec = lines[0]
    assert rec["image"] == str(img) and rec["caption"] == " ".join(rec["words"])
    assert isinstance(rec["score"], float) and rec["score"] <= 0
    assert "notes.jpg: not an image file" in r.stderr and "Traceback" not in r.stderr
    with Image.open(tmp_path / "g" / "astronaut.gif") as gif:
        assert gif.n_frames == len(rec["words"])
    assert (tmp_path / "p" / "astronaut.png").stat().st_size > 1000


def test_cli_without_a_model_says_so(tmp_path):
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    r = run_cli("caption", str(img), env_ckpt=str(tmp_path / "none"))
    assert r.returncode == 2 and "no default model" in r.stderr and "Traceback" not in r.stderr


def test_cli_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("caption", "scenes", "train", "evaluate", "features"):
        assert cmd in r.stdout


def test_an_empty_caption_with_gif_and_grid_is_one_sentence_not_a_traceback(tmp_path):
    """A model that says <end> at once (common early in training): caption "", no pictures."""
    import torch

    from captioner import Captioner, Vocabulary

    vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a", "cat"])
    model = Captioner.create(
        "efficientnet-lite2", vocab, embed_dim=8, attention_dim=8, decoder_dim=8
    )
    with torch.no_grad():
        model.decoder.fc.bias[vocab.end] = 50.0
    model.save(tmp_path / "mute")
    img = tmp_path / "x.png"
    Image.new("RGB", (32, 32), "white").save(img)
    r = run_cli(
        "caption",
        str(img),
        "--checkpoint",
        str(tmp_path / "mute"),
        "--gif",
        str(tmp_path / "g"),
        "--grid",
        str(tmp_path / "p"),
    )
    assert r.returncode == 0 and r.stdout == f"{img}\t\n", r.stderr
    assert "gave no words" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "g" / "x.gif").exists() and not (tmp_path / "p" / "x.png").exists()
    with pytest.raises(ValueError, match="at least one frame"):
        save_gif([], tmp_path / "empty.gif")


def _extents(fig):
    """Pixel boxes of the figure's pictures and labels, as the saved PNG lays them out."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    pictures = [ax.get_window_extent(renderer) for ax in fig.axes]
    labels = [t.get_window_extent(renderer) for t in fig.texts if t.get_text()]
    return pictures, labels


@pytest.mark.parametrize("width, height", [(800, 200), (448, 448), (600, 400), (200, 600)])
def test_the_grid_keeps_every_label_readable_whatever_the_picture_s_shape(width, height):
    from matplotlib.transforms import Bbox

    words = ["a", "stop", "sign", "on", "a", "pole", "by", "the", "road", "photographing"]
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    alphas = rng.random((len(words), 14, 14))
    fig = attention_grid(image, words, alphas / alphas.sum((1, 2), keepdims=True), title="a title")
    pictures, labels = _extents(fig)
    assert len(pictures) == len(words) + 1 and len(labels) == len(words) + 1  # + the title
    whole = fig.bbox
    for i, box in enumerate(labels):
        assert whole.contains(box.x0, box.y0) and whole.contains(box.x1, box.y1), "clipped label"
        assert not any(box.overlaps(p) for p in pictures), "a label touches a picture"
        assert not any(box.overlaps(other) for other in labels[i + 1 :]), "labels overlap"
    for a, b in zip(pictures, pictures[1:]):
        assert not a.overlaps(b)
        # every panel keeps the picture's shape
        assert abs(a.width / a.height - width / height) < 0.02 * width / height
    covered = sum(p.width * p.height for p in pictures) / (whole.width * whole.height)
    assert covered > 0.45, f"pictures cover only {covered:.0%} of the figure"
    assert Bbox.union(pictures).width <= whole.width


def test_a_diffuse_map_is_a_faint_tint_and_a_focused_one_is_painted():
    from captioner.attention_viz import attention_focus

    picture = Image.new("RGB", (448, 448), (128, 128, 128))
    even = np.full((14, 14), 1 / 196)
    one = np.zeros((14, 14))
    one[3, 10] = 1.0
    assert attention_focus(even) == pytest.approx(0.0) and attention_focus(one) == 1.0
    frames = attention_frames(picture, ["a", "dog"], np.stack([even, one]), with_labels=False)
    plain = np.asarray(picture, np.float32)
    spread = np.abs(np.asarray(frames[0], np.float32) - plain).mean()
    cell = np.abs(np.asarray(frames[1], np.float32) - plain)[96:128, 320:352].mean()
    assert spread < 15, f"a map spread over the whole picture paints it by {spread:.0f} levels"
    assert cell > 40, f"the attended cell changes by {cell:.0f} levels only"


def test_the_gif_shows_smooth_gradients_without_colour_bands(tmp_path):
    """More colours than a GIF palette holds: dithering keeps local averages right."""
    x = np.linspace(0, 255, 448, dtype=np.float32)
    truth = np.stack(np.broadcast_arrays(x[None, :], x[:, None], np.float32(90.0)), axis=-1)
    frame = Image.fromarray(truth.astype(np.uint8), "RGB")
    path = save_gif([frame, frame], tmp_path / "gradient.gif")
    with Image.open(path) as gif:
        shown = np.asarray(gif.convert("RGB"), np.float32)
    # 8x8 block means: what the eye sees at a normal viewing distance
    blocks = lambda a: a.reshape(56, 8, 56, 8, 3).mean(axis=(1, 3))  # noqa: E731
    error = np.abs(blocks(shown) - blocks(truth.astype(np.uint8).astype(np.float32)))
    assert error.mean() < 1.0, error.mean()  # without dithering: 2.0, in visible steps
