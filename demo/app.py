"""The Gradio page: caption a picture, then step through its words and see where the model looked.

Events are plain methods of `CaptionDemo`, so tests call them without a browser. One event runs
the model (the public `caption` API); everything after it works from the rendered files kept in
`gr.State`, so clicking through the words never touches the model.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image
from starlette.middleware import Middleware

from captioner import (
    Caption,
    CheckpointError,
    EncoderWeightsError,
    ImageError,
    SceneMaker,
    default_checkpoint_dir,
    is_checkpoint,
    load_image,
)

from .guard import RefuseForeignFiles
from .models import ModelStore
from .render import Rendered, display_copy, render_gif, render_grid, start_render, word_note
from .workspace import Workspace

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
BEAM_SIZES = (1, 5)
# run in the browser before the caption is shown; passes the event's inputs through unchanged
CLOSE_ERRORS = """(...args) => {
  document.querySelectorAll('.toast-body.error [data-testid="toast-close"]').forEach((b) => b.click());
  return args;
}"""
DISPLAY_SIDE = 448  # frames are drawn at this size (longest side)
CELL, DISTRIBUTION = "Looked-at cell", "Distribution"  # how a hard model's words are shown
# An upload other than a JPEG is decoded at full size: at most this many pixels (8K, 4 bytes each),
# so that no accepted upload takes the server past 1.5 GB (see `python -m bench.load --big`)
MAX_FULL_DECODE = 36_000_000


@dataclass
class Captioned:
    """One answer of the model, handed from the API event to the page's drawing step."""

    caption: Caption
    model: str
    beam_size: int
    seconds: float


def example_images(folder: Path = HERE / "examples") -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def upload_folder() -> Path:
    """Where Gradio keeps uploaded files (the same rule as Gradio's own)."""
    return Path(
        os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio"
    ).resolve()


def _image_source(image: Any) -> Any:
    """What `load_image` takes, from the raw value Gradio sends (events run with preprocess=False).

    A request names a file by path: only files in Gradio's upload folder are accepted, so no
    request can make the server read a file of its choosing.
    """
    if isinstance(image, dict):
        if image.get("path"):
            path = Path(image["path"]).resolve()
            if not path.is_relative_to(upload_folder()):
                raise ImageError("the picture must be uploaded to this app.")
            return path
        url = image.get("url") or ""
        if url.startswith("data:") and "," in url:  # a picture sent inline, e.g. a pasted one
            try:
                return base64.b64decode(url.split(",", 1)[1])
            except ValueError:
                raise ImageError("the picture data is not valid base64.") from None
        raise ImageError("the picture did not arrive; please add it again.")
    return image  # a direct Python call: a path, bytes, a PIL image or an array


def _beam_size(value: Any) -> int:
    """The beam size asked for, brought into 1..5; a value outside is said (a warning)."""
    try:
        beam = int(round(float(value if value is not None else 3)))
    except (TypeError, ValueError, OverflowError):  # "inf" and "1e400" overflow int()
        raise gr.Error(
            "The beam size must be a number from 1 to 5.", print_exception=False
        ) from None
    clamped = min(max(beam, BEAM_SIZES[0]), BEAM_SIZES[1])
    if clamped != beam:
        gr.Warning(f"The beam size goes from 1 to 5, so {beam} was read as {clamped}.")
    return clamped


class CaptionDemo:
    """The demo's state (models, files) and its event handlers; `build()` makes the page."""

    def __init__(
        self,
        store: ModelStore,
        workspace: Workspace | None = None,
        examples: Sequence[Path] = (),
        scene_maker: SceneMaker | None = None,
        model_concurrency: int = 1,
    ):
        self.store = store
        # inside Gradio's own folder, so Gradio serves the pictures where they are instead of copying them
        self.workspace = workspace or Workspace(parent=upload_folder())
        self.examples = list(examples)
        self.scene_maker = scene_maker
        self.model_concurrency = model_concurrency

    @classmethod
    def create(
        cls,
        checkpoint: str | Path | None = None,
        checkpoints_root: str | Path | None = None,
        warm: bool = True,
        encoder_runtime: str = "torch",
        **kwargs,
    ) -> CaptionDemo:
        """The app over `checkpoint` (default: the default model) and every folder in
        `checkpoints_root`; `encoder_runtime` "onnxruntime" runs their encoders with ONNX Runtime."""
        root = Path(checkpoints_root) if checkpoints_root else default_checkpoint_dir().parent
        first = Path(checkpoint) if checkpoint else default_checkpoint_dir()
        if checkpoint and not is_checkpoint(first):
            raise CheckpointError(f"{first}: not a checkpoint folder (no config.json).")
        store = ModelStore.discover(
            root, first if is_checkpoint(first) else None, encoder_runtime=encoder_runtime
        )
        if warm and store.default:
            store.warm_up()
        kwargs.setdefault("examples", example_images())
        if "scene_maker" not in kwargs:
            kwargs["scene_maker"] = SceneMaker()
            kwargs["scene_maker"].preload()
        return cls(store, **kwargs)

    # ---- the model: the public API ---------------------------------------------------------

    def caption(
        self, image: Any, beam_size: Any = 3, model: str | None = None
    ) -> tuple[dict, Captioned]:
        """Caption one picture: the JSON for API callers and the full answer for the page."""
        if image is None:
            raise gr.Error("Please add a picture first.", print_exception=False)
        beam = _beam_size(beam_size)
        try:
            captioner = self.store.get(model or None)
            name = model or self.store.default  # a known name: get() refused any other
            picture = load_image(_image_source(image), max_full_decode=MAX_FULL_DECODE)
            start = time.perf_counter()
            cap = captioner.caption(picture, beam_size=beam)
            seconds = time.perf_counter() - start
        except ImageError as e:
            raise gr.Error(
                f"That file can't be used as a picture: {e}",
                title="Not a picture",
                print_exception=False,
            ) from None
        except (CheckpointError, EncoderWeightsError) as e:
            raise gr.Error(
                f"The model could not be loaded: {e}", title="No model", print_exception=False
            ) from None
        except Exception:  # anything odd: log it, tell the visitor briefly, keep serving
            log.exception("captioning failed")
            raise gr.Error(
                "Something went wrong while captioning this picture; please try another one.",
                print_exception=False,
            ) from None
        result = cap.to_dict()
        result.update(model=name, beam_size=beam)
        # the page needs no more than a display copy; keeps the state small
        cap = dataclasses.replace(cap, image=display_copy(cap.image, DISPLAY_SIDE))
        return result, Captioned(cap, name, beam, seconds)

    def caption_if_image(self, image: Any, beam_size: Any = 3, model: str | None = None):
        """The page's automatic run (new picture, beam or model): an empty picture clears the page."""
        if image is None:
            return None, None
        return self.caption(image, beam_size, model)

    # ---- drawing, once per caption -----------------------------------------------------------

    def show(self, captioned: Captioned | None):
        """Show the caption and its first word's frame; reset the slider and chips to the new words."""
        if captioned is None:
            return (
                None,
                "",
                "",
                gr.Radio(choices=[], value=None),
                gr.Slider(minimum=1, maximum=2, value=1, interactive=False, visible=False),
                None,
                None,
                None,
                gr.skip(),
                gr.Radio(value=CELL, visible=False),
            )
        try:
            rendered = start_render(captioned.caption, self.workspace.new_folder(), DISPLAY_SIDE)
            first = rendered.frame(0)
        except Exception:
            log.exception("drawing the attention failed")
            raise gr.Error(
                "Could not draw where the model looked; please try again.", print_exception=False
            ) from None
        n = len(rendered)
        info = (
            f"{n} word{'s' if n != 1 else ''} · log-probability {captioned.caption.score:.2f} · "
            f"beam {captioned.beam_size} · model `{captioned.model}` · "
            f"{captioned.seconds * 1000:.0f} ms"
        )
        chips = gr.Radio(
            choices=[(w, i) for i, w in enumerate(rendered.words)], value=0 if n else None
        )
        # a slider needs minimum < maximum: a one-word caption gets a fixed slider over 1..2
        slider = gr.Slider(
            minimum=1, maximum=max(n, 2), value=1, step=1, interactive=n > 1, visible=n > 0
        )
        text = rendered.text or "(the model gave no words for this picture)"
        # a hard-attention model looked at one cell per word: shown lit, its distribution on demand
        view = gr.Radio(value=CELL, visible=rendered.cells is not None and n > 0)
        # the beam size used: a typed 9 shows as 5 (a programmatic change: no new run)
        return rendered, text, info, chips, slider, first, None, None, captioned.beam_size, view

    def animate(self, rendered: Rendered | None) -> str | None:
        """Every other frame, then the downloadable GIF: drawn after the first frame shows."""
        try:
            gif = render_gif(rendered) if rendered is not None else None
        except FileNotFoundError:  # the workspace already dropped this caption
            return None
        except Exception:  # a picture in the background: log it, leave the page as it is
            log.exception("drawing the GIF failed")
            return None
        return str(gif) if gif else None

    def figure(self, rendered: Rendered | None) -> str | None:
        """The paper-style grid of all words: matplotlib, ~1 s of CPU, so drawn only when looked at."""
        try:
            grid = render_grid(rendered) if rendered is not None else None
        except FileNotFoundError:
            return None
        except Exception:
            log.exception("drawing the grid failed")
            return None
        return str(grid) if grid else None

    def figure_if_open(self, rendered: Rendered | None, grid_open: bool) -> Any:
        """After a new caption: the grid only if its tab is the one showing."""
        return self.figure(rendered) if grid_open else gr.skip()

    def open_grid(self, rendered: Rendered | None) -> tuple[bool, str | None]:
        return True, self.figure(rendered)

    # ---- stepping through words: files only, never the model -------------------------------

    def frame(self, rendered: Rendered, index: int, view: Any = CELL) -> str:
        try:
            return rendered.frame(index, distribution=view == DISTRIBUTION)
        except FileNotFoundError:
            raise gr.Error(
                "This caption has expired; please caption the picture again.", print_exception=False
            ) from None

    def goto(self, rendered: Rendered | None, index: int, view: Any = CELL) -> tuple[Any, Any, Any]:
        """(frame, slider position, chip) for word `index` (0-based, clamped); `view`: a hard
        model's looked-at cell (`CELL`) or its attention distribution (`DISTRIBUTION`)."""
        if rendered is None or not rendered.words:
            return gr.skip(), gr.skip(), gr.skip()
        i = rendered.clamp(index)
        return self.frame(rendered, i, view), i + 1, i

    def step(
        self, rendered: Rendered | None, position: Any, delta: int, view: Any = CELL
    ) -> tuple[Any, Any, Any]:
        """Previous/next: `position` is the slider's 1-based value."""
        return self.goto(rendered, _position(position) - 1 + delta, view)

    def previous_word(self, rendered: Rendered | None, position: Any, view: Any = CELL):
        return self.step(rendered, position, -1, view)

    def next_word(self, rendered: Rendered | None, position: Any, view: Any = CELL):
        return self.step(rendered, position, +1, view)

    def on_slide(self, rendered: Rendered | None, position: Any, view: Any = CELL):
        frame, _, chip = self.goto(rendered, _position(position) - 1, view)
        return frame, chip

    def on_chip(self, rendered: Rendered | None, index: Any, view: Any = CELL):
        frame, position, _ = self.goto(rendered, _position(index), view)
        return frame, position

    def on_view(self, rendered: Rendered | None, position: Any, view: Any):
        """The same word, drawn the other way (looked-at cell or distribution)."""
        return self.goto(rendered, _position(position) - 1, view)[0]

    # ---- soft and hard attention side by side ----------------------------------------------

    def compare(
        self, image: Any, beam_size: Any = 3, soft_model: str | None = None, hard_model: Any = None
    ) -> tuple[str, str | None, str, str | None]:
        """The same picture captioned by a soft- and a hard-attention model: for each, its caption
        and the paper-style figure of its words (the soft model's maps, the hard one's cells)."""
        out: list[Any] = []
        for name, kind in ((soft_model, "soft"), (hard_model, "hard")):
            if not name or self.store.kind(name) != kind:
                raise gr.Error(
                    f"Choose a {kind}-attention model for this side "
                    f"({', '.join(self.store.of_kind(kind)) or 'none installed'}).",
                    print_exception=False,
                )
            _, captioned = self.caption(image, beam_size, name)
            try:
                rendered = start_render(
                    captioned.caption, self.workspace.new_folder(), DISPLAY_SIDE
                )
                grid = render_grid(rendered)
            except Exception:
                log.exception("drawing the comparison failed")
                raise gr.Error(
                    "Could not draw where the models looked; please try again.",
                    print_exception=False,
                ) from None
            text = rendered.text or "(no words)"
            out += [f"**{name}** ({kind} attention): {text}", None if grid is None else str(grid)]
        return tuple(out)  # type: ignore[return-value]

    def model_note(self, model: str | None = None) -> str:
        """One honest line on what the chosen model can name, read from the model itself."""
        try:
            captioner = self.store.get(model or None)
        except Exception:  # noqa: BLE001 - no model, or a broken one: the caption event says why
            return ""
        if captioner.open_vocabulary:
            return (
                "This model names things with its encoder's ImageNet classifier: 1000 kinds of "
                "animals, foods, vehicles and everyday objects. It has no word for people, and "
                "unusual things get the nearest name it knows."
            )
        return (
            f"This model knows only the {len(captioner.vocab) - 4} words of its training "
            "captions; on other pictures it names the closest thing it knows."
        )

    def word_info(self, rendered: Rendered | None, index: Any) -> str:
        """Under the attention: whether the classifier named the selected word, and its top 3."""
        return word_note(rendered, _position(index))

    def new_scene(self) -> tuple[Image.Image, str]:
        """A random synthetic picture and, under it, one of its reference captions."""
        if self.scene_maker is None:
            raise gr.Error("The scene generator is not available here.", print_exception=False)
        try:
            scene = self.scene_maker.make()
        except Exception:
            log.exception("scene generation failed")
            raise gr.Error(
                "Could not draw a scene just now; please try again.", print_exception=False
            ) from None
        return scene.image, f"Random scene. A reference caption: *{scene.reference}*"

    # ---- the page ----------------------------------------------------------------------------

    def build(self) -> gr.Blocks:
        with gr.Blocks(
            title="Show, Attend and Tell", delete_cache=(1800, 3600), analytics_enabled=False
        ) as demo:
            gr.Markdown(
                "# Show, Attend and Tell\nAdd a picture: the model writes a caption, and for "
                "every word you can see where in the picture it looked."
            )
            if not self.store.names:
                gr.Markdown(
                    "**No model is installed yet.** Put a checkpoint folder under `checkpoints/` "
                    "(see the README) or start the app with `--checkpoint FOLDER`.",
                    elem_id="no-model",
                )
            # per visitor: the last answer of the model (picture at display size), and its files
            captioned = gr.State(None, time_to_live=3600)
            rendered = gr.State(None, time_to_live=3600)
            with gr.Row(equal_height=False, elem_id="main-row"):
                with gr.Column(scale=1, elem_classes=["page-column"]):
                    image = gr.Image(
                        label="Picture",
                        type="filepath",
                        format="png",
                        height=360,
                        sources=["upload", "webcam", "clipboard"],
                        elem_id="picture",
                    )
                    scene_note = gr.Markdown("", elem_id="scene-note")
                    model_note = gr.Markdown(
                        self.model_note(self.store.default), elem_id="model-note"
                    )
                    with gr.Row(elem_id="action-row"):
                        caption_btn = gr.Button("Caption", variant="primary", elem_id="caption-btn")
                        scene_btn = gr.Button(
                            "New random scene",
                            elem_id="scene-btn",
                            visible=self.scene_maker is not None,
                        )
                    with gr.Row(elem_id="settings-row"):
                        beam = gr.Slider(
                            *BEAM_SIZES,
                            value=3,
                            step=1,
                            label="Beam size",
                            buttons=[],
                            info="1 is greedy; more beams try more sentences",
                        )
                        model = gr.Dropdown(
                            choices=self.store.names,
                            value=self.store.default,
                            label="Model",
                            info=None if self.store.names else "no model installed",
                            interactive=len(self.store.names) > 1,
                        )
                with gr.Column(scale=1, elem_classes=["page-column"]):
                    caption_box = gr.Textbox(
                        label="Caption", interactive=False, buttons=["copy"], elem_id="caption-text"
                    )
                    info = gr.Markdown("", elem_id="caption-info")
                    chips = gr.Radio(choices=[], label="Words (click one)", elem_id="word-chips")
                    attention = gr.Image(
                        label="Where the model looked",
                        interactive=False,
                        height=400,
                        buttons=["download", "fullscreen"],
                        elem_id="attention",
                    )
                    word_names = gr.Markdown("", elem_id="word-names")
                    slider = gr.Slider(  # shown with the first caption
                        1,
                        2,
                        value=1,
                        step=1,
                        label="Word",
                        interactive=False,
                        buttons=[],
                        elem_id="word-slider",
                        visible=False,
                    )
                    with gr.Row(elem_id="step-row"):
                        prev_btn = gr.Button("◀ Previous word", size="sm", elem_id="prev-btn")
                        next_btn = gr.Button("Next word ▶", size="sm", elem_id="next-btn")
                    view = gr.Radio(
                        [CELL, DISTRIBUTION],
                        value=CELL,
                        label="Hard attention: show",
                        info="the one grid cell each word looked at, or the distribution it "
                        "was chosen from",
                        visible=False,
                        elem_id="hard-view",
                    )
            # below both columns: on a narrow screen the caption and its words come first
            examples = None
            if self.examples:
                examples = gr.Examples(
                    examples=[str(p) for p in self.examples],
                    inputs=[image],
                    label="Examples: photos, and scenes like the training data",
                    api_visibility="private",
                    examples_per_page=len(self.examples),
                )
            grid_open = gr.State(False)  # whether the grid's tab is showing: only then is it drawn
            with gr.Tabs():
                with gr.Tab("Animated GIF") as gif_tab:
                    gif = gr.Image(
                        label="All words, animated",
                        format="gif",
                        interactive=False,
                        height=400,
                        buttons=["download"],
                        elem_id="gif",
                    )
                with gr.Tab("All words", elem_id="grid-tab") as grid_tab:
                    grid = gr.Image(
                        label="All words (the paper's figure)",
                        format="png",
                        interactive=False,
                        buttons=["download", "fullscreen"],
                        elem_id="grid",
                    )
                with gr.Tab("JSON (API)") as json_tab:
                    as_json = gr.JSON(label="What the caption API returns", open=False)
                soft_models, hard_models = self.store.of_kind("soft"), self.store.of_kind("hard")
                with gr.Tab(
                    "Compare soft and hard",
                    visible=bool(soft_models and hard_models),
                    elem_id="compare-tab",
                ) as compare_tab:
                    gr.Markdown(
                        "The paper's two models on the picture above: **soft** attention takes a "
                        "weighted mean of the whole grid for each word, **hard** attention looks "
                        "at one cell (lit)."
                    )
                    with gr.Row():
                        soft_pick = gr.Dropdown(
                            soft_models,
                            value=next((m for m in soft_models if m.startswith("soft")), None)
                            or (soft_models[0] if soft_models else None),
                            label="Soft-attention model",
                        )
                        hard_pick = gr.Dropdown(
                            hard_models,
                            value=hard_models[0] if hard_models else None,
                            label="Hard-attention model",
                        )
                        compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn")
                    shown = {}  # kind -> (its caption, its figure)
                    with gr.Row(equal_height=False):
                        for kind in ("soft", "hard"):
                            with gr.Column():
                                shown[kind] = (
                                    gr.Markdown("", elem_id=f"{kind}-text"),
                                    gr.Image(
                                        label=f"{kind.capitalize()} attention",
                                        format="png",
                                        interactive=False,
                                        buttons=["download", "fullscreen"],
                                        elem_id=f"{kind}-grid",
                                    ),
                                )

            inputs = [image, beam, model]
            model_run = dict(
                outputs=[as_json, captioned],
                preprocess=False,
                concurrency_id="model",
                concurrency_limit=self.model_concurrency,
                show_progress="minimal",
                show_progress_on=[caption_box],
            )
            api_run = caption_btn.click(
                self.caption,
                inputs,
                api_name="caption",
                api_description="Caption a picture: words, score and 14x14 attention per word.",
                **model_run,
            )
            page_run = gr.on(
                [image.change, beam.input, model.input],
                self.caption_if_image,
                inputs,
                api_visibility="private",
                trigger_mode="always_last",
                **model_run,
            )
            fast = dict(api_visibility="private", show_progress="hidden", queue=False)
            for run in (api_run, page_run):
                (
                    run.success(
                        self.show,
                        [captioned],
                        [
                            rendered,
                            caption_box,
                            info,
                            chips,
                            slider,
                            attention,
                            gif,
                            grid,
                            beam,
                            view,
                        ],
                        api_visibility="private",
                        show_progress="hidden",
                        queue=False,
                        # a caption succeeded: an earlier error ("add a picture first") is stale
                        js=CLOSE_ERRORS,
                    )
                    .success(
                        self.animate,
                        [rendered],
                        [gif],
                        api_visibility="private",
                        concurrency_id="render",
                        show_progress="minimal",
                    )
                    .success(
                        self.figure_if_open,
                        [rendered, grid_open],
                        [grid],
                        api_visibility="private",
                        concurrency_id="render",
                        show_progress="minimal",
                    )
                )
            grid_tab.select(
                self.open_grid,
                [rendered],
                [grid_open, grid],
                api_visibility="private",
                concurrency_id="render",
                show_progress="minimal",
            )
            gr.on(
                [gif_tab.select, json_tab.select, compare_tab.select],
                lambda: False,
                None,
                [grid_open],
                **fast,
            )
            compare_btn.click(
                self.compare,
                [image, beam, soft_pick, hard_pick],
                [*shown["soft"], *shown["hard"]],
                preprocess=False,
                api_visibility="private",
                concurrency_id="model",
                concurrency_limit=self.model_concurrency,
                show_progress="minimal",
            )

            prev_btn.click(
                self.previous_word, [rendered, slider, view], [attention, slider, chips], **fast
            )
            next_btn.click(
                self.next_word, [rendered, slider, view], [attention, slider, chips], **fast
            )
            slider.input(
                self.on_slide,
                [rendered, slider, view],
                [attention, chips],
                trigger_mode="always_last",
                **fast,
            )
            chips.input(self.on_chip, [rendered, chips, view], [attention, slider], **fast)
            view.input(self.on_view, [rendered, slider, view], [attention], **fast)
            chips.change(self.word_info, [rendered, chips], [word_names], **fast)
            model.input(
                self.model_note,
                [model],
                [model_note],
                api_visibility="private",
                show_progress="hidden",
            )
            scene_btn.click(self.new_scene, None, [image, scene_note], api_visibility="private")
            # another picture: the scene's reference caption no longer applies (cleared in the browser)
            gr.on(
                [image.upload, image.clear] + ([examples.dataset.click] if examples else []),
                None,
                None,
                [scene_note],
                js="() => ''",
            )
        demo.queue(default_concurrency_limit=2, max_size=16)
        return demo

    def launch_options(self) -> dict:
        """Arguments for `Blocks.launch` that this page needs (style, files it may serve)."""
        return dict(
            css_paths=[HERE / "style.css"],
            js=(HERE / "page.js").read_text(encoding="utf-8"),
            theme=_theme(),
            max_file_size="25mb",
            allowed_paths=[str(folder) for folder in self._served_folders()],
            footer_links=["api", "gradio"],
            # a file not uploaded here gets one sentence, not Gradio's silent refusal
            app_kwargs={"middleware": [Middleware(RefuseForeignFiles, allowed=self._file_folders)]},
        )

    def _served_folders(self) -> list[Path]:
        """The app's own files that Gradio may serve: the drawn frames and the examples."""
        return [self.workspace.root.resolve(), (HERE / "examples").resolve()]

    def _file_folders(self) -> list[Path]:
        """Where files named in requests may lie: Gradio's upload folder and what the app serves."""
        return [upload_folder(), *self._served_folders()]

    def launch(self, **kwargs) -> gr.Blocks:
        demo = self.build()
        demo.launch(**{**self.launch_options(), **kwargs})
        return demo


def _position(value: Any) -> int:
    try:
        return int(round(float(value)))
    except (TypeError, ValueError, OverflowError):
        return 1


def _theme() -> gr.themes.Base:
    """Gradio's Soft look with system fonts (no font downloads, which a Space or an offline box
    may not have) and text dark enough to read: WCAG AA contrast (4.5:1) for labels, hints and
    the primary button, checked by the browser test's accessibility scan."""
    system = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"]
    theme = gr.themes.Soft(font=system, font_mono=["ui-monospace", "SFMono-Regular", "monospace"])
    return theme.set(
        block_label_text_color="*primary_700",
        block_title_text_color="*primary_700",
        body_text_color_subdued="*neutral_600",
        button_primary_background_fill="*primary_600",
        button_primary_background_fill_hover="*primary_700",
    )
