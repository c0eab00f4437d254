"""A corpus of awkward and hostile image files, made by code so nothing binary lives in the repo.

    from tests.corpus import make_corpus
    cases = make_corpus(tmp_path)      # writes the files, returns one Case per file

Each case either loads (and then must look as described: size, pixels) or must be refused with
an `ImageError` whose message matches `error`. Bombs are small files that *declare* huge sizes
or compress extremely well, so making the corpus never allocates much memory (~0.5 s, ~5 MB on disk).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


@dataclass(frozen=True)
class Case:
    """One file of the corpus and what loading it must give."""

    path: Path
    why: str
    ok: bool  # True: loads and captions; False: refused with an ImageError
    error: str = ""  # for refusals: a regex the message must match
    size: tuple[int, int] | None = None  # for loads: (width, height) after load_image
    pixels: dict = field(default_factory=dict)  # for loads: {(x, y): (r, g, b)}
    tolerance: int = 3  # per channel, for lossy formats

    @property
    def name(self) -> str:
        return self.path.name


# ---------------------------------------------------------------------------- file builders


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(
    width: int,
    height: int,
    row: bytes,
    bit_depth: int = 8,
    color_type: int = 0,
    extra: bytes = b"",
    rows: int | None = None,
) -> bytes:
    """A PNG whose every row is `row`, compressed as a stream: huge images cost no memory to make."""
    z = zlib.compressobj(1)
    line = b"\0" + row  # filter type 0
    idat = b"".join(z.compress(line) for _ in range(height if rows is None else rows)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + extra
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def _encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _blocks(colors: list[list[tuple]], block: int = 16) -> Image.Image:
    """An RGB picture of solid `block`-pixel squares: survives JPEG and shows orientation."""
    a = np.array(colors, dtype=np.uint8)  # (rows, cols, 3)
    return Image.fromarray(np.kron(a, np.ones((block, block, 1), dtype=np.uint8)).astype(np.uint8))


# The upright picture behind every EXIF case: 48x32, red/green/blue across the top, black below.
UPRIGHT = [[RED, GREEN, BLUE], [BLACK, BLACK, BLACK]]
UPRIGHT_PIXELS = {(8, 8): RED, (24, 8): GREEN, (40, 8): BLUE, (8, 24): BLACK, (40, 24): BLACK}

# How the camera stored the picture for each EXIF orientation (the inverse of what the viewer
# must do), from the EXIF spec's row/column meaning, not from Pillow's exif_transpose table.
STORED = {
    1: [],
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],  # mirrored about the main diagonal
    6: [
        Image.Transpose.ROTATE_90
    ],  # viewer turns it 90 degrees clockwise, so stored counter-clockwise
    7: [Image.Transpose.TRANSVERSE],  # mirrored about the other diagonal
    8: [Image.Transpose.ROTATE_270],  # viewer turns it counter-clockwise
}


def exif_jpeg(orientation: int, fmt: str = "JPEG") -> bytes:
    im = _blocks(UPRIGHT)
    for op in STORED[orientation]:
        im = im.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    kwargs = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}
    return _encode(im, fmt, exif=exif, **kwargs)


def animated(fmt: str) -> bytes:
    """Three frames, red then green then blue: the first (red) one must be captioned."""
    frames = [Image.new("RGB", (32, 32), c) for c in (RED, GREEN, BLUE)]
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    return _encode(
        frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **kwargs
    )


def many_frames_gif(n: int) -> bytes:
    """A 1x1 GIF with `n` frames (15 bytes each): first frame black, white palette entry unused."""
    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + bytes(BLACK) + bytes(WHITE)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return head + frame * n + b"\x3b"


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is patched to claim width x height."""
    data = bytearray(_encode(Image.new("RGB", (16, 16), RED), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    """A GIF whose logical screen claims width x height around a 1x1 frame."""
    head = (
        b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + bytes(BLACK) + bytes(WHITE)
    )
    return head + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00\x3b"


def small_png(color=RED, size=(4, 4)) -> bytes:
    return _encode(Image.new("RGB", size, color), "PNG")


def with_chunk(png: bytes, kind: bytes, data: bytes) -> bytes:
    """`png` with one more chunk right after IHDR (offset 33)."""
    return png[:33] + _chunk(kind, data) + png[33:]


# ---------------------------------------------------------------------------- the corpus


def make_corpus(folder: str | Path) -> list[Case]:
    """Write every case into `folder` (created if needed) and return them, good ones first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, data: bytes | None, why: str, ok: bool, **kwargs) -> None:
        path = folder / name
        if data is None:
            path.mkdir(exist_ok=True)
        else:
            path.write_bytes(data)
        cases.append(Case(path=path, why=why, ok=ok, **kwargs))

    # ---- files that must caption, and look right
    add(
        "one_pixel.png",
        small_png(RED, (1, 1)),
        "1x1 image",
        True,
        size=(1, 1),
        pixels={(0, 0): RED},
    )
    wide = Image.new("RGB", (10000, 10), RED)
    wide.paste(BLUE, (5000, 0, 10000, 10))
    add(
        "wide_10000x10.png",
        _encode(wide, "PNG"),
        "extreme aspect ratio, reduced to 2048 wide",
        True,
        size=(2048, 2),
        pixels={(0, 0): RED, (2047, 1): BLUE},
    )
    add(
        "tall_10x10000.png",
        _encode(wide.transpose(Image.Transpose.TRANSPOSE), "PNG"),
        "extreme aspect ratio, reduced to 2048 tall",
        True,
        size=(2, 2048),
        pixels={(0, 0): RED, (1, 2047): BLUE},
    )
    gray16 = np.array([[0, 128 * 257, 65535, 65535]], dtype=">u2")
    add(
        "gray_16bit.png",
        png_bytes(4, 1, gray16.tobytes(), 16, 0),
        "16-bit grayscale PNG",
        True,
        size=(4, 1),
        pixels={(0, 0): BLACK, (1, 0): (128,) * 3, (2, 0): WHITE},
        tolerance=1,
    )
    dark16 = np.array([[0, 100, 200, 255]], dtype=">u2")  # a night shot: every value tiny
    add(
        "gray_16bit_dark.png",
        png_bytes(4, 1, dark16.tobytes(), 16, 0),
        "16-bit grayscale PNG whose values are all small (dark, not bright)",
        True,
        size=(4, 1),
        pixels={(0, 0): BLACK, (1, 0): BLACK, (2, 0): (1,) * 3, (3, 0): (1,) * 3},
        tolerance=1,
    )
    rgb16 = np.array([[[65535, 0, 0], [0, 0, 65535]]], dtype=">u2")
    add(
        "rgb_16bit.png",
        png_bytes(2, 1, rgb16.tobytes(), 16, 2),
        "16-bit RGB PNG",
        True,
        size=(2, 1),
        pixels={(0, 0): RED, (1, 0): BLUE},
        tolerance=1,
    )
    add(
        "cmyk.jpg",
        _encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95),
        "CMYK JPEG",
        True,
        size=(32, 32),
        pixels={(16, 16): RED},
        tolerance=12,
    )
    pal = Image.new("P", (4, 2), 0)
    pal.putpalette([*BLUE, *RED] + [0] * 762)
    pal.paste(1, (2, 0, 4, 2))
    add(
        "palette_transparent.png",
        _encode(pal, "PNG", transparency=0),
        "palette PNG whose index 0 is transparent (over white)",
        True,
        size=(4, 2),
        pixels={(0, 0): WHITE, (3, 1): RED},
    )
    add(
        "palette_transparent.gif",
        _encode(pal, "GIF", transparency=0),
        "palette GIF with transparency",
        True,
        size=(4, 2),
        pixels={(0, 0): WHITE, (3, 1): RED},
    )
    for fmt, name in (("GIF", "animated.gif"), ("WEBP", "animated.webp"), ("PNG", "animated.png")):
        add(
            name,
            animated(fmt),
            f"animated {fmt} (APNG for PNG): the first frame is used",
            True,
            size=(32, 32),
            pixels={(0, 0): RED, (31, 31): RED},
            tolerance=4,
        )
    add(
        "many_frames.gif",
        many_frames_gif(200_000),
        "GIF with 200,000 frames: loads its first frame fast",
        True,
        size=(1, 1),
        pixels={(0, 0): BLACK},
    )
    for o in range(1, 9):
        add(
            f"exif_orientation_{o}.jpg",
            exif_jpeg(o),
            f"JPEG with EXIF orientation {o}",
            True,
            size=(48, 32),
            pixels=UPRIGHT_PIXELS,
            tolerance=24,
        )
    add(
        "exif_orientation_6.png",
        exif_jpeg(6, "PNG"),
        "PNG with an eXIf orientation 6",
        True,
        size=(48, 32),
        pixels=UPRIGHT_PIXELS,
        tolerance=0,
    )
    add(
        "grayscale.jpg",
        _encode(Image.new("L", (16, 16), 100), "JPEG"),
        "grayscale JPEG",
        True,
        size=(16, 16),
        pixels={(8, 8): (100,) * 3},
    )
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 0), (0, 0, 255, 255), (0, 0, 0, 128)])
    add(
        "rgba.png",
        _encode(rgba, "PNG"),
        "RGBA: transparency over white",
        True,
        size=(3, 1),
        pixels={(0, 0): WHITE, (1, 0): BLUE, (2, 0): (127,) * 3},
        tolerance=1,
    )
    la = Image.new("LA", (2, 1))
    la.putdata([(0, 0), (50, 255)])
    add(
        "la.png",
        _encode(la, "PNG"),
        "grayscale + alpha",
        True,
        size=(2, 1),
        pixels={(0, 0): WHITE, (1, 0): (50,) * 3},
    )
    add(
        "bilevel.png",
        _encode(Image.new("1", (8, 8), 1), "PNG"),
        "1-bit PNG",
        True,
        size=(8, 8),
        pixels={(0, 0): WHITE},
    )
    add(
        "float.tiff",
        _encode(Image.fromarray(np.full((4, 4), 0.5, np.float32)), "TIFF"),
        "32-bit float TIFF in [0, 1]",
        True,
        size=(4, 4),
        pixels={(0, 0): (128,) * 3},
        tolerance=1,
    )
    add(
        "really_a_jpeg.png",
        _encode(Image.new("RGB", (16, 16), GREEN), "JPEG", quality=95),
        "a JPEG named .png: the content decides",
        True,
        size=(16, 16),
        pixels={(8, 8): GREEN},
        tolerance=6,
    )
    add(
        "really_a_png.jpg",
        small_png(BLUE),
        "a PNG named .jpg",
        True,
        size=(4, 4),
        pixels={(0, 0): BLUE},
    )
    big = Image.new("L", (4096, 1024), 200)
    add(
        "big_4096x1024.jpg",
        _encode(big, "JPEG"),
        "large JPEG, reduced on load",
        True,
        size=(2048, 512),
        pixels={(100, 100): (200,) * 3},
        tolerance=3,
    )
    add(
        "long_text.png",
        with_chunk(small_png(), b"tEXt", b"Comment\0" + b"x" * (3 << 20)),
        "3 MB uncompressed text chunk",
        True,
        size=(4, 4),
        pixels={(0, 0): RED},
    )

    # ---- files that must be refused with one clear sentence
    add("empty.jpg", b"", "empty file", False, error="empty")
    jpeg = _encode(_blocks(UPRIGHT), "JPEG", quality=95)
    add(
        "truncated.jpg",
        jpeg[: len(jpeg) // 2],
        "JPEG cut in half",
        False,
        error="broken or truncated",
    )
    png = _encode(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "PNG"
    )
    add(
        "truncated.png", png[: len(png) // 2], "PNG cut in half", False, error="broken or truncated"
    )
    add(
        "header_only.png",
        png[:33],
        "PNG signature and IHDR, nothing else",
        False,
        error="broken or truncated|not an image",
    )
    bad_crc = bytearray(small_png())
    bad_crc[29] ^= 0xFF  # the IHDR checksum
    add(
        "bad_checksum.png",
        bytes(bad_crc),
        "PNG with a corrupt IHDR checksum",
        False,
        error="broken or truncated|not an image",
    )
    add(
        "text.jpg",
        b"hello, this is not a picture\n" * 20,
        "plain text named .jpg",
        False,
        error="not an image",
    )
    add(
        "page.jpg",
        b"<!DOCTYPE html><html><body><img src='cat.jpg'></body></html>\n",
        "HTML named .jpg",
        False,
        error="not an image",
    )
    add(
        "drawing.png",
        b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>",
        "SVG named .png",
        False,
        error="not an image",
    )
    add(
        "noise.jpg",
        np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes(),
        "random bytes",
        False,
        error="not an image",
    )
    add(
        "bomb_header.png",
        png_bytes(30000, 30000, b"\0" * 30000, rows=1),
        "PNG header claiming 30000x30000 (900 megapixels)",
        False,
        error="too many pixels|too large",
    )
    add(
        "bomb_real.png",
        png_bytes(14000, 14000, b"\0" * 1750, bit_depth=1),
        "real 14000x14000 1-bit PNG: 196 megapixels in 120 KB",
        False,
        error="too many pixels|too large",
    )
    add(
        "bomb_72mp.png",
        png_bytes(9000, 8000, b"\0" * 1125, bit_depth=1),
        "real 9000x8000 PNG: under Pillow's limit, over ours",
        False,
        error="too large",
    )
    add(
        "bomb.jpg",
        jpeg_declaring(60000, 60000),
        "JPEG header claiming 60000x60000",
        False,
        error="too many pixels|too large",
    )
    add(
        "bomb.gif",
        gif_declaring(65535, 65535),
        "GIF screen claiming 65535x65535",
        False,
        error="too many pixels|too large",
    )
    add(
        "ztxt_bomb.png",
        with_chunk(small_png(), b"zTXt", b"Comment\0\0" + zlib.compress(b"x" * (8 << 20), 9)),
        "compressed text chunk that inflates to 8 MB",
        False,
        error="broken or truncated",
    )
    add(
        "iccp_bomb.png",
        with_chunk(small_png(), b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * (8 << 20), 9)),
        "ICC profile that inflates to 8 MB",
        False,
        error="broken or truncated",
    )
    add("folder.jpg", None, "a folder named like an image", False, error="no such file")
    return cases


def good(cases: list[Case]) -> list[Case]:
    return [c for c in cases if c.ok]


def bad(cases: list[Case]) -> list[Case]:
    return [c for c in cases if not c.ok]
