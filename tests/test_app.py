"""The web demo as an API user sees it (gradio_client against the served app), and its handlers.

The app runs in this process on a free port, over the tiny random-weight checkpoint from
conftest.py, so the tests need neither the default model nor a network.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
# gradio's queue statistics use pandas options that pandas 3 deprecates: not ours to fix
pytestmark = [
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

PHOTO = ROOT / "demo" / "examples" / "astronaut.jpg"  # the tiny model gives it 12 words


@pytest.fixture(scope="module")
def served(tiny_checkpoint, tmp_path_factory):
    """(CaptionDemo, Client) for the app served over the tiny checkpoint; files under tmp."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        from captioner import SceneMaker
        from demo import CaptionDemo

        app = CaptionDemo.create(
            checkpoint=tiny_checkpoint,
            checkpoints_root=tmp_path_factory.mktemp("no-checkpoints"),
            scene_maker=SceneMaker(use_stamps=False, seed=0),
        )
        demo = app.build()
        port = free_port()
        demo.launch(server_port=port, prevent_thread_lock=True, quiet=True, **app.launch_options())
        try:
            yield app, Client(f"http://127.0.0.1:{port}/", verbose=False)
        finally:
            demo.close()
            app.workspace.close()


@pytest.fixture
def model_calls(served, monkeypatch):
    """A list that grows by one on every call of the loaded model."""
    app, _ = served
    model = app.store.get()
    calls: list[int] = []
    original = model.caption

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "caption", counting)
    return calls


def test_the_api_has_one_named_endpoint(served):
    _, client = served
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/caption"]
    assert api["unnamed_endpoints"] == {}


def test_caption_api_returns_words_and_attention(served):
    _, client = served
    assert (
        client.predict(handle_file(str(PHOTO)), api_name="/caption")["beam_size"] == 3
    )  # defaults
    result = client.predict(handle_file(str(PHOTO)), 2, "tiny", api_name="/caption")
    words = result["words"]
    assert words and result["caption"] == " ".join(words)
    assert (
        isinstance(result["score"], float)
        and result["beam_size"] == 2
        and result["model"] == "tiny"
    )
    alphas = np.asarray(result["alphas"])
    assert alphas.shape == (len(words), 14, 14)
    np.testing.assert_allclose(alphas.sum(axis=(1, 2)), 1.0, atol=1e-3)


def test_bad_files_get_a_clear_error_and_the_app_keeps_serving(served, tmp_path):
    _, client = served
    text = tmp_path / "holiday.jpg"
    text.write_text("this is not a picture")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(PHOTO.read_bytes()[:3000])
    huge = tmp_path / "huge.png"  # 81 megapixels in a 80 kB file
    Image.new("L", (9000, 9000)).save(huge)
    for bad, words in (
        (text, "holiday.jpg: not an image file"),
        (truncated, "cut.jpg: the image data is broken"),
        (huge, "huge.png: 9000x9000 is too large"),
    ):
        with pytest.raises(AppError) as e:
            client.predict(handle_file(str(bad)), 3, "tiny", api_name="/caption")
        message = str(e.value)
        assert "can't be used as a picture" in message and words in message
        assert "Traceback" not in message
    assert client.predict(handle_file(str(PHOTO)), 1, "tiny", api_name="/caption")["words"]


def test_requests_cannot_name_files_outside_the_upload_folder(served):
    app, _ = served
    from gradio import Error

    with pytest.raises(Error, match="must be uploaded to this app"):
        app.caption({"path": str(PHOTO)}, 3)
    with pytest.raises(Error, match="unknown model 'nope'"):
        app.caption(str(PHOTO), 3, "nope")


def test_stepping_through_words_never_runs_the_model(served, model_calls):
    app, _ = served
    _, captioned = app.caption(str(PHOTO), 3)
    assert len(model_calls) == 1
    rendered, text, _, chips, slider, first, gif, grid, beam, view = app.show(captioned)
    n = len(rendered.words)
    assert text == rendered.text and n > 2
    assert slider.maximum == n and slider.value == 1 and chips.value == 0
    assert Path(first).is_file() and gif is None and grid is None
    assert beam == 3 and slider.visible  # the beam size used, shown back on the page
    assert view.visible is False  # a soft model: no choice between cell and distribution

    frame, position, chip = app.next_word(rendered, 1)
    assert (position, chip) == (2, 1) and frame != first and Path(frame).is_file()
    assert app.previous_word(rendered, 1) == (first, 1, 0)  # stays on the first word
    assert app.next_word(rendered, n)[1:] == (n, n - 1)  # and on the last
    assert app.on_chip(rendered, 2)[1] == 3
    assert app.on_slide(rendered, 3)[1] == 2
    assert Path(app.animate(rendered)).suffix == ".gif"
    assert app.figure_if_open(rendered, False) == gr.skip()  # the grid is drawn only when looked at
    assert app.open_grid(rendered)[0] and Path(app.figure(rendered)).suffix == ".png"
    assert len(model_calls) == 1


def test_one_word_captions_and_cleared_pictures_keep_the_slider_valid(served):
    app, _ = served
    from captioner import Caption

    one = Caption(
        ["cat"], np.full((1, 14, 14), 1 / 196, np.float32), -1.0, Image.new("RGB", (300, 200))
    )
    from demo.app import Captioned

    rendered, _, _, _, slider, first, _, _, beam, _ = app.show(Captioned(one, "tiny", 3, 0.1))
    assert slider.maximum == 2 and slider.value == 1 and not slider.interactive and beam == 3
    assert app.next_word(rendered, 1)[1] == 1
    assert app.caption_if_image(None) == (None, None)
    assert app.show(None)[0] is None
    assert app.show(None)[4].visible is False  # no caption: no word slider


def test_random_scene_button(served):
    app, _ = served
    image, note = app.new_scene()
    assert image.size == (448, 448) and "reference caption" in note


def test_command_line_honours_gradio_environment(monkeypatch):
    import app as entry

    assert (entry.parse_args([]).host, entry.parse_args([]).port) == ("127.0.0.1", 7860)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    args = entry.parse_args(["--checkpoint", "x", "--share"])
    assert (args.host, args.port, args.checkpoint, args.share) == ("0.0.0.0", 7999, "x", True)


def test_old_captions_expire_with_a_clear_message(tmp_path):
    from gradio import Error

    from captioner import Caption
    from demo import CaptionDemo, ModelStore, Workspace
    from demo.app import Captioned

    app = CaptionDemo(ModelStore([]), Workspace(keep=1, parent=tmp_path))
    cap = Caption(
        ["a", "cat"], np.full((2, 14, 14), 1 / 196, np.float32), -1.0, Image.new("RGB", (64, 48))
    )
    old = app.show(Captioned(cap, "x", 1, 0.1))[0]
    new = app.show(Captioned(cap, "x", 1, 0.1))[0]  # keep=1: the first caption's files go
    assert not old.folder.exists() and Path(app.next_word(new, 1)[0]).is_file()
    with pytest.raises(Error, match="expired"):
        app.next_word(old, 1)
    assert app.animate(old) is None and app.figure(old) is None
    app.workspace.close()
    assert not app.workspace.root.exists()


def test_model_names_are_unique_and_unknown_ones_refused(tmp_path):
    from captioner import CheckpointError
    from demo import ModelStore

    a, b = tmp_path / "a" / "tiny", tmp_path / "b" / "tiny"
    store = ModelStore([a, b, a])
    assert store.names == ["tiny", "tiny (2)"] and store.default == "tiny"
    assert store.folder("tiny (2)") == b.resolve() and store.folder(None) == a.resolve()
    with pytest.raises(CheckpointError, match="unknown model"):
        store.folder("../etc")
    with pytest.raises(CheckpointError, match="no model is installed"):
        ModelStore([]).get()


def test_the_selected_word_says_whether_the_classifier_named_it(tmp_path):
    from captioner import Caption
    from captioner.names import NameChoice
    from demo.app import CaptionDemo
    from demo.render import start_render

    picture = Image.new("RGB", (32, 32), "white")
    cap = Caption(
        words=["a", "cat"],
        alphas=np.full((2, 14, 14), 1 / 196, dtype=np.float32),
        score=-1.0,
        image=picture,
        sources=["decoder", "classifier"],
        names=[
            [],
            [
                NameChoice("cat", 0.91, "tabby cat"),
                NameChoice("dog", 0.05, "pug"),
                NameChoice("fox", 0.01, "fox"),
            ],
        ],
    )
    rendered = start_render(cap, tmp_path)
    app = CaptionDemo.__new__(CaptionDemo)
    assert "decoder" in app.word_info(rendered, 0)
    note = app.word_info(rendered, 1)
    assert "classifier" in note and "cat 91% (tabby cat)" in note and "dog 5% (pug)" in note
    assert app.word_info(None, 0) == ""


def test_the_page_says_what_the_chosen_model_can_name(served):
    app, _ = served
    note = app.model_note(None)
    assert "knows only the" in note and str(len(app.store.get(None).vocab) - 4) in note


def test_a_model_with_slots_is_described_as_naming_imagenet_things():
    from captioner import Captioner, Vocabulary
    from demo.app import CaptionDemo

    class Store:
        def get(self, name=None):
            vocab = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", "a", "<obj>"])
            return Captioner.create(
                "efficientnet-lite2", vocab, embed_dim=8, attention_dim=8, decoder_dim=8
            )

    app = CaptionDemo.__new__(CaptionDemo)
    app.store = Store()
    assert "ImageNet classifier" in app.model_note("x") and "people" in app.model_note("x")


@pytest.mark.parametrize("value", ["inf", "-inf", "1e400", float("inf"), "nan", "five", [3]])
def test_a_beam_size_that_is_no_finite_number_gets_one_sentence(value):
    from demo.app import _beam_size, _position

    with pytest.raises(gr.Error, match="must be a number from 1 to 5"):
        _beam_size(value)
    assert _position(value) == 1


def test_a_model_that_is_no_name_or_too_long_gets_one_short_escaped_sentence(served, caplog):
    app, client = served
    with pytest.raises(gr.Error) as listed:
        app.caption(str(PHOTO), 3, ["tiny"])
    assert "a model is named by a string" in listed.value.message
    assert "choose one of tiny" in listed.value.message
    long_name = "<b>" + "x" * 10_000
    with pytest.raises(AppError) as long:
        client.predict(handle_file(str(PHOTO)), 3, long_name, api_name="/caption")
    message = str(long.value)
    assert "unknown model" in message and "choose one of tiny" in message
    assert "x" * 41 not in message and "<b>" not in message and "&lt;b&gt;" in message
    assert len(message) < 300
    assert "Traceback" not in caplog.text
    assert client.predict(handle_file(str(PHOTO)), 1, "tiny", api_name="/caption")["words"]


def test_no_event_of_the_page_opens_a_file_outside_the_upload_folder(served, monkeypatch, tmp_path):
    """Every event has a name in Gradio 6 and can be called; none may read a server file."""
    import json
    import urllib.request

    import PIL.Image

    from demo.app import upload_folder

    app, client = served
    opened: list[str] = []
    real_open = PIL.Image.open

    def recording_open(fp, *args, **kwargs):
        if isinstance(fp, (str, Path)):
            opened.append(str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", recording_open)
    secret = tmp_path / "secret.png"  # outside the upload folder
    Image.new("RGB", (32, 32)).save(secret)
    file_data = {"path": str(secret), "meta": {"_type": "gradio.FileData"}}
    config = json.loads(urllib.request.urlopen(client.src.rstrip("/") + "/config").read())
    names = {d["api_name"] for d in config["dependencies"] if isinstance(d.get("api_name"), str)}
    assert "caption" in names and "new_scene" in names and len(names) > 5
    for name in sorted(names):
        for data in ([file_data, 3, "tiny"], [str(secret), 3, "tiny"], [str(secret)] * 2, []):
            body = json.dumps({"data": data}).encode()
            request = urllib.request.Request(
                client.src.rstrip("/") + f"/gradio_api/call/{name}",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            try:
                event = json.loads(urllib.request.urlopen(request).read())["event_id"]
                urllib.request.urlopen(
                    client.src.rstrip("/") + f"/gradio_api/call/{name}/{event}"
                ).read()
            except urllib.error.HTTPError:
                pass  # refused outright: fine
    outside = [p for p in opened if not Path(p).resolve().is_relative_to(upload_folder())]
    assert not outside and str(secret) not in " ".join(opened)


@pytest.mark.parametrize("typed, used", [(9, 5), (0, 1), (-3, 1), (2.6, 3)])
def test_a_beam_size_out_of_range_is_brought_in_and_said(typed, used, monkeypatch):
    from demo.app import _beam_size

    said = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: said.append(message))
    assert _beam_size(typed) == used
    if round(typed) != used:
        assert said == [f"The beam size goes from 1 to 5, so {round(typed)} was read as {used}."]
    else:
        assert said == []


def test_a_server_path_or_a_bare_string_gets_one_sentence_not_a_silent_refusal(
    served, capfd, tmp_path
):
    import json
    import urllib.error
    import urllib.request

    _, client = served
    url = client.src.rstrip("/") + "/gradio_api/call/caption"
    server_file = tmp_path / "private.jpg"  # not uploaded, not served by the app
    server_file.write_bytes(PHOTO.read_bytes())
    bodies = {
        "server path": [
            {"path": str(server_file), "meta": {"_type": "gradio.FileData"}},
            3,
            "tiny",
        ],
        "bare string": [str(server_file), 3, "tiny"],
    }
    for what, data in bodies.items():
        request = urllib.request.Request(
            url,
            data=json.dumps({"data": data}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 400, what
        message = json.loads(refused.value.read())["error"]
        assert "upload" in message and "\n" not in message and len(message) < 300, message
    assert "Traceback" not in capfd.readouterr().err
    # the page's own way, an uploaded file, still works
    assert client.predict(handle_file(str(PHOTO)), 1, "tiny", api_name="/caption")["words"]


def test_the_guard_finds_files_anywhere_in_a_payload(tmp_path):
    from demo.guard import payload_problem

    inside = tmp_path / "uploads" / "a.png"
    nested = {"data": [3, {"deep": [{"path": str(inside)}, {"path": "/etc/passwd"}]}]}
    problem = payload_problem("/gradio_api/queue/join", json_bytes(nested), [tmp_path / "uploads"])
    assert "'/etc/passwd' was not uploaded to this app" in problem
    fine = {"data": [{"path": str(inside)}, 3, "tiny"]}
    assert payload_problem("/gradio_api/call/caption", json_bytes(fine), [tmp_path]) is None
    assert payload_problem("/gradio_api/call/x", b"not json", [tmp_path]) is None
    long = {"data": [{"path": "/" + "x" * 5000}]}
    assert len(payload_problem("/gradio_api/call/x", json_bytes(long), [tmp_path])) < 300


def json_bytes(value) -> bytes:
    import json

    return json.dumps(value).encode()


def test_the_api_answers_exactly_what_the_library_gives_for_that_beam_size(served, tiny_checkpoint):
    """Same picture, beam size and model: the same words, score and attention as the library."""
    from captioner import Captioner, load_image

    _, client = served
    library = Captioner.load(tiny_checkpoint)
    answers = {}
    for beam in (1, 3, 5):
        api = client.predict(handle_file(str(PHOTO)), beam, "tiny", api_name="/caption")
        own = library.caption(load_image(PHOTO), beam_size=beam)
        assert api["beam_size"] == beam and api["model"] == "tiny"
        assert api["words"] == own.words and api["caption"] == own.text
        assert api["score"] == pytest.approx(own.score, abs=1e-5)
        assert np.allclose(np.asarray(api["alphas"]), own.alphas, atol=1e-5)
        answers[beam] = (tuple(own.words), round(own.score, 4))


def test_the_app_s_handler_uses_the_beam_size_asked_for_with_the_default_model():
    """For this photo the default model's caption depends on the beam size, so an app that
    ignored the beam size (or always used 3) would give the wrong caption here."""
    from captioner import Captioner, default_checkpoint_dir, load_image
    from demo import CaptionDemo

    photo = ROOT / "demo" / "examples" / "motorcycle.jpg"
    app = CaptionDemo.create(checkpoint=default_checkpoint_dir(), warm=False, scene_maker=None)
    try:
        library = Captioner.load()
        texts = set()
        for beam in (1, 3, 5):
            result, captioned = app.caption(str(photo), beam)
            own = library.caption(load_image(photo), beam_size=beam)
            assert result["words"] == own.words and result["beam_size"] == beam
            assert result["score"] == pytest.approx(own.score, abs=1e-5)
            assert np.allclose(captioned.caption.alphas, own.alphas, atol=1e-6)
            texts.add(own.text)
        assert len(texts) > 1, texts
    finally:
        app.workspace.close()


@pytest.fixture(scope="module")
def soft_and_hard(tmp_path_factory):
    """The app's handlers over two tiny random models, one of each kind of attention."""
    from demo import CaptionDemo
    from demo.models import ModelStore
    from demo.workspace import Workspace
    from tests.conftest import make_tiny_captioner

    root = tmp_path_factory.mktemp("kinds")
    for kind in ("soft", "hard"):
        model = make_tiny_captioner(max_len=20, deep_output=True, attention=kind)
        model.save(root / f"tiny-{kind}")
    app = CaptionDemo(
        ModelStore.discover(root), workspace=Workspace(parent=tmp_path_factory.mktemp("ws"))
    )
    yield app
    app.workspace.close()


def test_a_hard_model_lights_the_cell_each_word_looked_at(soft_and_hard):
    from demo.app import DISTRIBUTION

    app = soft_and_hard
    result, captioned = app.caption(str(PHOTO), 2, "tiny-hard")
    alphas = np.asarray(result["alphas"])
    assert result["cells"] == [int(a.argmax()) for a in alphas]  # the attention's likeliest cell
    rendered, *_, view = app.show(captioned)
    assert view.visible  # cell or distribution, for a hard model
    base = np.asarray(Image.open(rendered.base).convert("L"), dtype=np.float32)
    for i in range(min(3, len(rendered.words))):
        frame = np.asarray(Image.open(app.frame(rendered, i)).convert("L"), dtype=np.float32)
        row, col = divmod(result["cells"][i], 14)
        h, w = base.shape
        inside = np.zeros_like(base, dtype=bool)
        inside[
            row * h // 14 + 2 : (row + 1) * h // 14 - 2, col * w // 14 + 2 : (col + 1) * w // 14 - 2
        ] = True
        change = frame - base
        # the looked-at cell as it is, everything else dimmed
        assert abs(change[inside].mean()) < 4 and change[~inside].mean() < -30, (i, row, col)
        smooth = app.frame(rendered, i, DISTRIBUTION)
        assert smooth != app.frame(rendered, i) and Path(smooth).is_file()
    note = app.word_info(rendered, 0)
    row, col = divmod(result["cells"][0], 14)
    assert f"row {row + 1}, column {col + 1}" in note
    assert app.on_view(rendered, 1, DISTRIBUTION) == app.frame(rendered, 0, DISTRIBUTION)


def test_compare_shows_a_soft_and_a_hard_model_on_one_picture(soft_and_hard):
    app = soft_and_hard
    assert app.store.of_kind("soft") == ["tiny-soft"] and app.store.of_kind("hard") == ["tiny-hard"]
    soft_text, soft_grid, hard_text, hard_grid = app.compare(
        str(PHOTO), 1, "tiny-soft", "tiny-hard"
    )
    soft_words = app.caption(str(PHOTO), 1, "tiny-soft")[0]["caption"]
    assert soft_text == f"**tiny-soft** (soft attention): {soft_words}"
    assert hard_text.startswith("**tiny-hard** (hard attention): ")
    assert Path(soft_grid).is_file() and Path(hard_grid).is_file() and soft_grid != hard_grid
    with pytest.raises(gr.Error, match="Choose a hard-attention model"):
        app.compare(str(PHOTO), 1, "tiny-soft", "tiny-soft")
    demo = app.build()
    tabs = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "compare-tab"]
    assert len(tabs) == 1 and tabs[0].visible  # both kinds installed: the tab is there


def test_the_compare_tab_is_hidden_without_both_kinds(served):
    app, _ = served
    demo = app.build()
    tabs = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "compare-tab"]
    assert len(tabs) == 1 and not tabs[0].visible
