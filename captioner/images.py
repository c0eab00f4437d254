"""Turn whatever a user hands us (a path, bytes, a PIL image, a numpy array) into an RGB image.

Every failure is an `ImageError` with one sentence that says what is wrong with the input, so
the CLI can go on with the next file and the app can show the message instead of a traceback.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ImageInput = str | Path | bytes | Image.Image | np.ndarray

# decoded size we accept; larger is refused as a possible decompression bomb
MAX_PIXELS = 64_000_000
RELEASE_AFTER = 16_000_000  # pixels decoded at full size, after which freed memory is returned
MAX_SIDE = 2048  # larger images are reduced on load: no encoder or picture needs more


class ImageError(ValueError):
    """The input is not an image we can caption; the message is one sentence for the user."""


def load_image(
    source: ImageInput, max_side: int = MAX_SIDE, max_full_decode: int | None = None
) -> Image.Image:
    """An RGB PIL image, EXIF orientation applied, first frame of animations, longest side <= max_side.

    `max_full_decode`: the most pixels of a file decoded at full size. A JPEG is decoded at a
    reduced scale, but other formats hold all their pixels in memory at once (4 bytes each for
    RGBA); a server sets this to bound its memory per request (default: MAX_PIXELS, for all).
    """
    if isinstance(source, np.ndarray):
        return _limit_side(from_array(source), max_side)
    if isinstance(source, Image.Image):
        return _limit_side(to_rgb(ImageOps.exif_transpose(source) or source), max_side)
    if isinstance(source, (bytes, bytearray)):
        name, fp = "the uploaded data", io.BytesIO(source)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        name = path.name
        if not path.is_file():
            raise ImageError(f"{source}: no such file.")
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: the file is empty.")
        fp = path
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}.")
    return _limit_side(_open(fp, name, max_side, max_full_decode or MAX_PIXELS), max_side)


def _open(fp, name: str, max_side: int, max_full_decode: int = MAX_PIXELS) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise ImageError(
                        f"{name}: {width}x{height} is too large to process "
                        f"(at most {MAX_PIXELS // 1_000_000} megapixels)."
                    )
                if im.format != "JPEG" and width * height > max_full_decode:
                    raise ImageError(
                        f"{name}: {width}x{height} is too large to process here (at most "
                        f"{max_full_decode / 1e6:.0f} megapixels, unless it is a JPEG)."
                    )
                if getattr(im, "is_animated", False):  # not n_frames: that reads every frame
                    im.seek(0)  # animated GIF/WebP/APNG: caption the first frame
                if im.format == "JPEG":
                    im.draft("RGB", (max_side, max_side))  # decode big JPEGs at reduced scale
                im.load()
                small = _shrink_early(im, max_side)
                oriented = ImageOps.exif_transpose(small) or small
                rgb = to_rgb(oriented)
                decoded = im.width * im.height  # after draft: a JPEG's reduced size
        im = small = oriented = None  # drop the full-size pixels ...
        if decoded >= RELEASE_AFTER:  # ... and give their memory back to the system
            from .runtime import release_free_memory  # here: this module imports only Pillow

            release_free_memory()
        return rgb
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file Pillow can read.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{name}: too many pixels; refused as a possible decompression bomb."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{name}: the image data is broken or truncated ({e}).") from None


def resize_longest_side(
    im: Image.Image,
    longest: int,
    resample: int = Image.BILINEAR,
    reducing_gap: float | None = None,
    enlarge: bool = False,
) -> Image.Image:
    """`im` scaled, aspect kept, so that its longest side is `longest`; only shrunk unless
    `enlarge`. The one resize-to-longest-side helper of the package."""
    scale = longest / max(im.size)
    if scale == 1.0 or (scale > 1.0 and not enlarge):
        return im
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, resample, reducing_gap=reducing_gap)


REDUCIBLE = ("L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "I", "F")  # modes Image.reduce takes


def _shrink_early(im: Image.Image, max_side: int, rows: int = 128) -> Image.Image:
    """A big decoded image reduced by a whole factor (a box average) strip by strip, before
    anything copies it at full size: a 265 kB 8000x8000 RGBA PNG otherwise costs four full-size
    copies (1.5 GB) on its way to RGB. The longest side stays >= max_side for `_limit_side`."""
    factor = max(im.size) // max_side
    if factor < 2:
        return im
    if im.mode.startswith("I;16"):  # reduced as 32-bit, then back, so to_rgb scales it as 16-bit
        mode = "I"
    elif im.mode == "P":
        mode = "RGBA" if "transparency" in im.info else "RGB"
    elif im.mode == "1":
        mode = "L"
    elif im.mode not in REDUCIBLE:
        mode = "RGBA" if "A" in im.mode else "RGB"
    else:
        mode = im.mode
    width, height = im.size
    out = Image.new(mode, (-(-width // factor), -(-height // factor)))
    step = factor * rows  # a strip of whole boxes: the same result as reducing all at once
    for top in range(0, height, step):
        strip = im.crop((0, top, width, min(top + step, height)))
        if strip.mode != mode:
            strip = strip.convert(mode)
        out.paste(strip.reduce(factor), (0, top // factor))
    return out.convert(im.mode) if im.mode.startswith("I;16") else out


def _limit_side(im: Image.Image, max_side: int) -> Image.Image:
    return resize_longest_side(im, max_side, Image.BILINEAR, reducing_gap=2.0)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: 16-bit and float scaled to 8 bits, transparency over white."""
    if im.mode == "RGB":
        return im
    if im.mode in (
        "I;16",
        "I;16B",
        "I;16L",
        "I;16N",
    ):  # full scale is 65535, however dark the image
        return from_array(np.asarray(im).astype(np.float32) / 65535.0)
    if im.mode in ("I", "F"):
        return from_array(np.asarray(im))
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def from_array(array: np.ndarray) -> Image.Image:
    """(H, W), (H, W, 1|3|4) arrays of uint8, 16-bit integers or floats in [0, 1] to RGB."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise ImageError(f"an image array must be (H, W) or (H, W, 3|4), got shape {a.shape}.")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError("the image array holds NaN or infinite values.")
        top = 255.0 if a.max() > 1.0 else 1.0
        a = (np.clip(a / top, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        top = 65535 if a.max() > 255 else 255
        a = (np.clip(a.astype(np.float64), 0, top) * (255.0 / top) + 0.5).astype(np.uint8)
    else:
        raise ImageError(f"cannot make an image of an array of {a.dtype}.")
    if a.ndim == 2:
        return Image.fromarray(a, "L").convert("RGB")
    if a.shape[2] == 4:
        return to_rgb(Image.fromarray(np.ascontiguousarray(a), "RGBA"))
    return Image.fromarray(np.ascontiguousarray(a), "RGB")
