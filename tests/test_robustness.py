"""Hostile and awkward images through the library and the CLI, and repeatable answers.

Every file of `tests.corpus` either captions correctly (RGB, upright, right pixels) or is refused
with one `ImageError` sentence naming the file; nothing crashes, hangs or eats memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captioner import Captioner, ImageError, load_image
from tests.corpus import bad, good, make_corpus, many_frames_gif

ROOT = Path(__file__).resolve().parent.parent
# What a message must not look like: a Python exception's name, a traceback, a repr.
LEAK = re.compile(r"Traceback|\b\w*(Error|Exception|Warning)\b|<class |<PIL\.")
# One thread in every process: on a busy 2-core box two OpenMP threads spin-wait for each other
# and the encoder gets ~5x slower; one thread also makes in- and out-of-process numbers comparable.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail instead of hanging (checked between Python bytecodes; the CLI test is the hard limit)."""

    def expired(*_):
        raise TimeoutError(f"took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def looks_right(case, im: Image.Image) -> list[str]:
    """What is wrong with a loaded image, compared with what the case says it shows."""
    problems = []
    if im.mode != "RGB":
        problems.append(f"mode {im.mode}")
    if case.size and im.size != case.size:
        problems.append(f"size {im.size} != {case.size}")
    else:
        for xy, want in case.pixels.items():
            got = im.getpixel(xy)
            if max(abs(int(g) - int(w)) for g, w in zip(got, want)) > case.tolerance:
                problems.append(f"pixel {xy} is {got}, expected {want}")
    return problems


def clear_sentence(message: str, name: str) -> list[str]:
    problems = []
    if "\n" in message:
        problems.append("has a newline")
    if not message.endswith("."):
        problems.append("is not a sentence")
    if name not in message:
        problems.append(f"does not name {name}")
    if LEAK.search(message):
        problems.append("leaks Python internals")
    return problems


def test_good_files_load_upright_rgb_with_the_right_pixels(corpus):
    failures = []
    with deadline(30):
        for case in good(corpus):
            for label, source in (
                ("path", case.path),
                ("bytes", case.path.read_bytes()),
                ("str", str(case.path)),
            ):
                try:
                    im = load_image(source)
                except ImageError as e:
                    failures.append(f"{case.name} ({case.why}) from {label}: refused: {e}")
                    continue
                failures += [
                    f"{case.name} ({case.why}) from {label}: {p}" for p in looks_right(case, im)
                ]
            # The CLI and the app hand the loaded image to caption(), which loads it again: a
            # second pass must not rotate or convert anything twice.
            once = load_image(case.path)
            twice = load_image(once)
            if once.size != twice.size or not np.array_equal(np.asarray(once), np.asarray(twice)):
                failures.append(f"{case.name}: loading the loaded image again changes it")
            with Image.open(case.path) as opened:  # an open PIL image, as Gradio may pass
                failures += [
                    f"{case.name} as PIL: {p}" for p in looks_right(case, load_image(opened))
                ]
    assert not failures, "\n".join(failures)


def test_all_eight_exif_orientations_are_covered_and_upright(corpus):
    names = {c.name for c in good(corpus)}
    assert {f"exif_orientation_{o}.jpg" for o in range(1, 9)} <= names
    for o in range(1, 9):
        case = next(c for c in corpus if c.name == f"exif_orientation_{o}.jpg")
        with Image.open(case.path) as raw:
            assert raw.getexif().get(0x0112) == o
            assert raw.size == ((32, 48) if o >= 5 else (48, 32))  # stored as the camera had it
        assert looks_right(case, load_image(case.path)) == [], f"orientation {o}"


def test_bad_files_are_refused_with_one_clear_sentence(corpus):
    failures = []
    with deadline(30):
        for case in bad(corpus):
            try:
                im = load_image(case.path)
                failures.append(f"{case.name} ({case.why}): loaded as {im.mode} {im.size}")
                continue
            except ImageError as e:
                message = str(e)
            except Exception as e:  # noqa: BLE001 - the point is that nothing else escapes
                failures.append(f"{case.name} ({case.why}): {type(e).__name__}: {e}")
                continue
            if not re.search(case.error, message):
                failures.append(f"{case.name}: message {message!r} does not match {case.error!r}")
            failures += [
                f"{case.name}: message {message!r} {p}" for p in clear_sentence(message, case.name)
            ]
            if case.path.is_file() and case.path.stat().st_size:  # the same bytes, uploaded
                with pytest.raises(ImageError, match=case.error):
                    load_image(case.path.read_bytes())
    assert not failures, "\n".join(failures)


def test_bombs_are_refused_without_decoding_them(corpus):
    """Peak memory of a fresh process barely moves while it refuses every bomb in the corpus."""
    bombs = [str(c.path) for c in corpus if "bomb" in c.name]
    assert len(bombs) >= 6
    script = (
        "import importlib.util, json, resource, sys\n"
        "spec = importlib.util.spec_from_file_location('images', 'captioner/images.py')\n"
        "images = importlib.util.module_from_spec(spec); spec.loader.exec_module(images)\n"
        "ImageError, load_image = images.ImageError, images.load_image  # without importing torch\n"
        "load_image(sys.argv[1])  # warm up: decoders imported, buffers allocated\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = {}\n"
        "for path in sys.argv[2:]:\n"
        "    try:\n"
        "        load_image(path); out[path] = 'loaded'\n"
        "    except ImageError as e:\n"
        "        out[path] = str(e)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'growth_kb': after - before, 'results': out}))\n"
    )
    warm = next(c for c in corpus if c.name == "rgba.png").path
    r = subprocess.run(
        [sys.executable, "-c", script, str(warm), *bombs],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert all(v != "loaded" for v in report["results"].values()), report["results"]
    assert report["growth_kb"] < 30 * 1024, f"peak memory grew by {report['growth_kb'] // 1024} MB"


def test_a_gif_with_a_million_frames_loads_its_first_frame_quickly():
    """Counting frames reads the whole file; the first frame must not need that."""
    data = many_frames_gif(1_000_000)  # 15 MB, well under the app's upload limit
    start = time.perf_counter()
    with deadline(20):
        im = load_image(data)
    assert im.size == (1, 1) and im.getpixel((0, 0)) == (0, 0, 0)
    assert time.perf_counter() - start < 1.0


def test_arrays_and_odd_objects(photo):
    assert load_image(photo[:1, :1]).size == (1, 1)
    assert load_image(photo[:, :, :1]).mode == "RGB"
    for value, match in (
        (np.zeros((0, 5, 3), np.uint8), "shape"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (12, "int"),
        (None, "NoneType"),
    ):
        with pytest.raises(ImageError, match=match):
            load_image(value)


# Good files whose shape or decoding path could upset the encoder (the CLI test captions them all).
TO_CAPTION = (
    "one_pixel.png",
    "wide_10000x10.png",
    "tall_10x10000.png",
    "gray_16bit.png",
    "animated.webp",
    "exif_orientation_6.jpg",
    "many_frames.gif",
)


def test_caption_handles_the_corpus(tiny_model, corpus):
    """Every good file makes a finite encoder input; odd ones caption; every bad one is refused."""
    for case in good(corpus):
        x = tiny_model.encoder.preprocess([load_image(case.path)])
        assert x.shape == (1, 3, 448, 448) and torch.isfinite(x).all(), case.name
    cases = [c for c in corpus if c.name in TO_CAPTION]
    assert len(cases) == len(TO_CAPTION)
    with deadline(120):
        captions = tiny_model.caption([c.path for c in cases], beam_size=2)
    assert len(captions) == len(cases)
    for case, cap in zip(cases, captions):
        assert cap.image.mode == "RGB" and cap.image.size == case.size, case.name
        assert cap.alphas.shape == (len(cap.words), 14, 14), case.name
        assert np.isfinite(cap.score), case.name
        if cap.words:
            np.testing.assert_allclose(cap.alphas.sum((1, 2)), 1.0, atol=1e-4)
    for case in bad(corpus):
        with pytest.raises(ImageError) as info:
            tiny_model.caption(case.path)
        assert clear_sentence(str(info.value), case.name) == [], (case.name, str(info.value))


def test_same_image_same_answer_every_time(tiny_model, photo):
    first = tiny_model.caption(photo)
    for _ in range(2):
        again = tiny_model.caption(photo)
        assert again.words == first.words
        assert again.score == first.score
        assert np.array_equal(again.alphas, first.alphas)
    # The same picture inside a batch gets the same words.
    batch = tiny_model.caption([photo, photo[::-1]])
    assert batch[0].words == first.words


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, tiny_checkpoint, corpus, photo):
    """One CLI process over the whole corpus plus the astronaut twice (for repeatability)."""
    folder = tmp_path_factory.mktemp("cli")
    astronaut = folder / "astronaut.png"
    Image.fromarray(photo).save(astronaut)
    files = [str(c.path) for c in corpus] + [str(astronaut), str(astronaut)]
    start = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "captioner",
            "caption",
            *files,
            "--json",
            "--alphas",
            "--beam-size",
            "2",
            "--checkpoint",
            tiny_checkpoint,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ONE_THREAD,
        timeout=240,
    )
    return r, astronaut, time.perf_counter() - start


def test_cli_over_the_corpus(cli_run, corpus):
    r, astronaut, _ = cli_run
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    errors = r.stderr.splitlines()
    assert len(errors) == len(bad(corpus)), r.stderr  # one line per bad file, nothing else
    for case, line in zip(bad(corpus), errors):
        assert line.startswith("error: ") and case.name in line, (case.name, line)
        assert clear_sentence(line[len("error: ") :], case.name) == [], line
    records = [json.loads(line) for line in r.stdout.splitlines()]
    expected = [str(c.path) for c in good(corpus)] + [str(astronaut)] * 2
    assert [rec["image"] for rec in records] == expected
    for rec in records:
        assert rec["caption"] == " ".join(rec["words"]) and np.isfinite(rec["score"])
        assert np.asarray(rec["alphas"]).shape == (len(rec["words"]), 14, 14)


def test_cli_answers_are_repeatable_and_match_the_library(cli_run, tiny_checkpoint):
    """A fresh process gives the same caption, score and attention as this one."""
    r, astronaut, _ = cli_run
    records = [json.loads(line) for line in r.stdout.splitlines()]
    a, b = records[-2], records[-1]
    assert a == b  # the same file twice in one process
    here = Captioner.load(tiny_checkpoint).caption(astronaut, beam_size=2).to_dict()
    assert a["words"] == here["words"]
    assert a["score"] == pytest.approx(here["score"], abs=1e-5)
    np.testing.assert_allclose(np.asarray(a["alphas"]), np.asarray(here["alphas"]), atol=2e-5)


@pytest.mark.parametrize(
    "mode", ["RGBA", "RGB", "L", "I;16", "P", "P+transparency", "1", "LA", "CMYK"]
)
def test_big_images_are_reduced_strip_by_strip_exactly_as_all_at_once(mode):
    from captioner.images import _shrink_early

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (1000, 1333, 3), dtype=np.uint8)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, (1000, 1333), dtype=np.uint16))
    else:
        im = Image.fromarray(pixels).convert(mode.split("+")[0])
        if mode == "P+transparency":
            im.info["transparency"] = 5
    got = _shrink_early(im, 300, rows=7)  # factor 4, strips of 28 rows and a short last one
    working = {"I;16": "I", "P": "RGB", "P+transparency": "RGBA", "1": "L"}.get(mode, im.mode)
    expected = im.convert(working).reduce(4)
    if mode == "I;16":
        expected = expected.convert("I;16")
    assert got.mode == expected.mode and got.size == expected.size == (334, 250)
    assert np.array_equal(np.asarray(got), np.asarray(expected))
    assert _shrink_early(im, 700) is im  # less than twice too big: left to the final resize


def test_a_small_file_of_huge_dimensions_does_not_cost_gigabytes(tmp_path):
    """An 8000x8000 RGBA PNG is 265 kB; decoded and converted at full size it took 1.5 GB."""
    path = tmp_path / "big.png"
    Image.new("RGBA", (8000, 8000), (10, 200, 30, 128)).save(path)
    code = (
        "import resource, sys; from captioner import load_image; "
        "r = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; "
        f"base = r(); im = load_image({str(path)!r}); "
        "print(round(r() - base), im.size, im.mode, im.getpixel((5, 5)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout.split(maxsplit=1)
    extra_mb = int(out[0])
    assert "(2048, 2048) RGB (132, 227, 142)" in out[1]  # half-transparent green over white
    assert extra_mb < 600, f"loading it took {extra_mb} MB more"  # 245 MB is the decoded image


def test_a_server_can_bound_what_is_decoded_at_full_size(tmp_path):
    """A JPEG is decoded at a reduced scale; other formats need every pixel in memory."""
    png, jpeg = tmp_path / "wide.png", tmp_path / "wide.jpg"
    Image.new("L", (7000, 6000), 90).save(png)
    Image.new("RGB", (7000, 6000), (90, 90, 90)).save(jpeg, quality=70)
    with pytest.raises(ImageError, match=r"wide.png: 7000x6000 is too large to process here"):
        load_image(png, max_full_decode=36_000_000)
    assert load_image(jpeg, max_full_decode=36_000_000).size == (2048, 1755)
    assert load_image(png).size == (2048, 1755)  # the library's own limit is 64 megapixels
