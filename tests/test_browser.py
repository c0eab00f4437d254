"""The demo in a real browser: upload, caption, step through the words (Playwright + Debian chromium).

Uses the system chromium (never `playwright install`). With CAPTIONER_SCREENSHOT=1 the final
page is saved as docs/demo.png, using the default model when it exists and the cat photo, with
its object word selected.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import free_port

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
    # gradio's queue statistics use pandas options that pandas 3 deprecates: not ours to fix
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]
from axe_playwright_python.sync_playwright import Axe  # noqa: E402 - required (requirements-dev.txt)
from playwright import sync_api  # noqa: E402 - required (requirements-dev.txt)

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "demo" / "examples" / "astronaut.jpg"  # the tiny model gives it 12 words
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SRC = "() => { const img = document.querySelector('#attention img'); return img && img.getAttribute('src'); }"


def screenshot_wanted() -> bool:
    return os.environ.get("CAPTIONER_SCREENSHOT") == "1"


def shrink_for_docs(path: Path) -> None:
    """A screenshot committed to docs/: 256 colours, dithered (about a third of the bytes)."""
    from PIL import Image

    if path.parent == ROOT / "docs":
        with Image.open(path) as im:
            quantized = im.convert("RGB").quantize(256, dither=Image.Dither.FLOYDSTEINBERG)
        quantized.save(path, optimize=True)


@pytest.fixture(scope="module")
def url(tiny_checkpoint, tmp_path_factory):
    """The app served on a free port: the tiny model, or for the docs screenshot the default one."""
    from captioner import SceneMaker, default_checkpoint_dir

    checkpoint, scenes = tiny_checkpoint, SceneMaker(use_stamps=False, seed=0)
    if screenshot_wanted() and (default_checkpoint_dir() / "config.json").is_file():
        checkpoint, scenes = default_checkpoint_dir(), SceneMaker(seed=1)
    yield from serve(
        tmp_path_factory, checkpoint, tmp_path_factory.mktemp("no-checkpoints"), scenes
    )


def serve(tmp_path_factory, checkpoint, checkpoints_root, scenes):
    """The app served on a free port over `checkpoint` and the folders of `checkpoints_root`;
    yields its URL, then stops it and removes its files."""
    from demo import CaptionDemo

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        app = CaptionDemo.create(
            checkpoint=checkpoint, scene_maker=scenes, checkpoints_root=checkpoints_root
        )
        demo = app.build()
        port = free_port()
        demo.launch(server_port=port, prevent_thread_lock=True, quiet=True, **app.launch_options())
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            demo.close()
            app.workspace.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url, width: int):
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.set_default_timeout(30_000)
    page.goto(url, wait_until="domcontentloaded")  # never "networkidle": gradio streams events
    page.locator("#picture input[type=file]").wait_for(state="attached")
    return page


@pytest.fixture(scope="module")
def page(browser, url):
    page = open_page(browser, url, 1280)
    yield page
    page.close()


def caption_photo(page, photo: Path = PHOTO) -> str:
    """Upload a picture and wait for its caption's first frame; that frame's src."""
    old = page.evaluate(SRC)
    page.locator("#picture input[type=file]").set_input_files(str(photo))
    return new_src(page, old)


def serious_violations(page) -> list[str]:
    """axe-core's findings of impact serious or critical, one line each."""
    found = Axe().run(page).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {n['target']}"
        for v in found
        if v["impact"] in ("serious", "critical")
        for n in v["nodes"]
    ]


def new_src(page, old: str | None) -> str:
    """Wait until the attention picture shows another file than `old`; its src."""
    page.wait_for_function(
        f"(old) => {{ const s = ({SRC})(); return s && s !== old; }}", arg=old, polling=20
    )
    return page.evaluate(SRC)


def slider_value(page) -> str:
    return page.locator("#word-slider input[type=number]").input_value()


def test_upload_caption_and_step_through_words(page, tmp_path):
    file_input = page.locator("#picture input[type=file]")
    file_input.wait_for(state="attached")
    file_input.set_input_files(str(PHOTO))
    auto = new_src(page, None)  # a new picture is captioned at once
    page.locator("#caption-btn").click()  # the button runs the model again: new files
    first = new_src(page, auto)

    caption = page.locator("#caption-text textarea").input_value()
    chips = page.locator("#word-chips label")
    assert (
        caption and " ".join(chips.all_inner_texts()) == caption
    )  # a chip per word, "space shuttle" too
    assert slider_value(page) == "1" and "selected" in chips.nth(0).get_attribute("class")

    page.locator("#next-btn").click()
    second = new_src(page, first)
    assert slider_value(page) == "2" and "selected" in chips.nth(1).get_attribute("class")

    chips.nth(4).click()
    fifth = new_src(page, second)
    assert slider_value(page) == "5"

    page.locator("#word-slider input[type=range]").focus()
    page.keyboard.press("ArrowLeft")
    assert new_src(page, fifth) not in (first, second, fifth) and slider_value(page) == "4"
    assert "selected" in chips.nth(3).get_attribute("class")

    page.locator("#gif img[src$='.gif']").wait_for()  # the GIF follows the first frame
    page.get_by_role("tab", name="All words").click()  # the grid is drawn when its tab opens
    page.locator("#grid img[src$='.png']").wait_for()
    page.get_by_role("tab", name="Animated GIF").click()
    assert page.locator(".toast-body").count() == 0  # no error shown

    if screenshot_wanted():
        file_input.set_input_files(str(ROOT / "demo" / "examples" / "cat.jpg"))  # a real photo
        page.wait_for_function(
            "() => document.querySelector('#caption-text textarea').value.endsWith('cat')"
        )
        page.wait_for_timeout(2000)  # let the picture's events settle before choosing a word
        page.locator("#word-chips label").last.click()  # the object word: named by the classifier
        page.locator("#word-names").get_by_text("classifier", exact=False).wait_for()
        page.locator("#gif img[src$='.gif']").wait_for()
        page.wait_for_timeout(1000)
        path = ROOT / "docs" / "demo.png"
    else:
        path = tmp_path / "demo.png"
    page.screenshot(path=str(path), full_page=True)
    shrink_for_docs(path)
    assert path.stat().st_size > 10_000


def test_before_a_caption_the_page_shows_no_word_slider_and_a_clean_footer(browser, url):
    page = open_page(browser, url, 1280)
    try:
        assert not page.locator("#word-slider").is_visible()
        footer = page.locator("footer").inner_text()
        assert "Built with Gradio" in footer and not footer.strip().endswith("·")
        page.locator("#caption-btn").click()  # no picture yet: an error ...
        page.locator(".toast-body.error").wait_for()
        caption_photo(page)  # ... that goes away once a caption succeeds
        page.wait_for_function("() => !document.querySelector('.toast-body.error')")
        assert page.locator("#word-slider").is_visible()
    finally:
        page.close()


def test_a_typed_beam_size_captions_again_and_out_of_range_is_said(browser, url):
    page = open_page(browser, url, 1280)
    try:
        first = caption_photo(page)
        beam = page.locator("#settings-row input[type=number]").first
        beam.fill("9")
        beam.press("Enter")  # typed and Enter: captions again, with 5
        new_src(page, first)
        page.locator(".toast-body.warning").get_by_text("9 was read as 5").wait_for()
        page.wait_for_function(
            "() => document.querySelector('#settings-row input[type=number]').value === '5'"
        )
        assert "beam 5" in page.locator("#caption-info").inner_text()
    finally:
        page.close()


def test_the_words_work_from_the_keyboard_and_the_picture_names_its_word(browser, url):
    page = open_page(browser, url, 1280)
    try:
        first = caption_photo(page)
        chips = page.locator("#word-chips label")
        words = chips.all_inner_texts()
        alt = page.locator("#attention img").get_attribute("alt")
        assert alt == f'Where the model looked for the word "{words[0]}"'
        page.locator("#word-chips input[type=radio]").first.focus()  # where Tab lands
        page.keyboard.press("ArrowRight")
        second = new_src(page, first)
        assert second != first and "selected" in chips.nth(1).get_attribute("class")
        page.wait_for_function(
            "(w) => document.querySelector('#attention img').alt.endsWith(`\"${w}\"`)", arg=words[1]
        )
        assert page.locator("#word-slider input[type=number]").input_value() == "2"
        # Tab moves on from the words: the focus is visible (an outline) wherever it lands
        page.keyboard.press("Tab")
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), outline
    finally:
        page.close()


@pytest.mark.parametrize("width", [1280, 400])
def test_the_page_passes_an_accessibility_scan(browser, url, width):
    page = open_page(browser, url, width)
    try:
        caption_photo(page)
        page.locator("#gif img[src$='.gif']").wait_for(state="attached")
        assert serious_violations(page) == []
    finally:
        page.close()


def test_on_a_narrow_screen_the_caption_and_its_attention_come_first(browser, url, tmp_path):
    page = open_page(browser, url, 400)
    try:
        caption_photo(
            page, ROOT / "demo" / "examples" / "cat.jpg" if screenshot_wanted() else PHOTO
        )
        page.locator("#gif img[src$='.gif']").wait_for(state="attached")
        top = {
            name: page.locator(sel).first.bounding_box()["y"]
            for name, sel in [
                ("picture", "#picture"),
                ("caption", "#caption-text"),
                ("words", "#word-chips"),
                ("attention", "#attention"),
                ("controls", "#action-row"),
                ("examples", "#picture ~ * .gallery, .gallery"),
            ]
        }
        order = sorted(top, key=top.get)
        assert order[:4] == ["picture", "caption", "words", "attention"], top
        assert top["attention"] < 1000  # on the first screens, not below the examples
        assert (
            page.evaluate("() => document.documentElement.scrollWidth") <= 400
        )  # no sideways scroll
        path = ROOT / "docs" / "demo-narrow.png" if screenshot_wanted() else tmp_path / "narrow.png"
        page.screenshot(path=str(path), full_page=True)
        shrink_for_docs(path)
        assert path.stat().st_size > 10_000
    finally:
        page.close()


@pytest.fixture(scope="module")
def pair_url(tmp_path_factory):
    """The app over the shipped soft/hard pair (hard first), as a visitor would get it."""
    from captioner import SceneMaker

    root = tmp_path_factory.mktemp("pair")
    for name in ("soft", "hard"):  # links: the shipped folders, without the other models
        (root / name).symlink_to(ROOT / "checkpoints" / name, target_is_directory=True)
    yield from serve(tmp_path_factory, root / "hard", root, SceneMaker(use_stamps=False, seed=0))


def test_a_hard_model_s_cells_and_the_compare_tab(browser, pair_url, tmp_path):
    page = open_page(browser, pair_url, 1280)
    try:
        cell = caption_photo(page, ROOT / "demo" / "examples" / "scene2.jpg")
        page.locator("#word-names").get_by_text("Hard attention", exact=False).wait_for()
        page.locator("#hard-view").get_by_text("Distribution", exact=True).click()
        assert new_src(page, cell).endswith("_distribution.jpg")  # the same word, as a map
        page.get_by_role("tab", name="Compare soft and hard").click()
        page.locator("#compare-btn").click()
        page.locator("#soft-grid img[src$='.png']").wait_for()
        page.locator("#hard-grid img[src$='.png']").wait_for()
        assert page.locator("#soft-text").inner_text().startswith("soft (soft attention): ")
        assert page.locator("#hard-text").inner_text().startswith("hard (hard attention): ")
        assert page.locator(".toast-body").count() == 0  # no error shown
        assert serious_violations(page) == []
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
    finally:
        page.close()
