"""Values and geometry of the attention pictures, checked against their definitions.

Written to kill the mutants of `captioner/attention_viz.py` that survived a mutation run
(docs/testing.md). Every expected value below comes from a docstring, a formula or the layout's
geometry (sizes in inches, 100 pixels an inch), never from a saved picture: the focus of hand-made
maps, the opacity bounds, the colour a black or white pixel takes, a hard-attention cell seen
through the dark with its 2-pixel yellow frame, the label band, the GIF's frames and the grid's
panels, columns, margins and labels.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from captioner.attention_viz import (
    attention_focus,
    attention_frames,
    attention_grid,
    blend,
    frame_opacity,
    label,
    lit_cell,
    save_gif,
    spotlight,
    upsample_attention,
)

YELLOW = (255, 214, 0)


def one_hot(row: int, col: int, n: int = 14) -> np.ndarray:
    alpha = np.zeros((n, n), dtype=np.float32)
    alpha[row, col] = 1.0
    return alpha


def random_picture(width: int, height: int, seed: int = 0, low: int = 20, high: int = 230):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(low, high, (height, width, 3), dtype=np.uint8))


def inferno(x: float) -> np.ndarray:
    """The colour `blend` paints for heat x, in 0..255 (matplotlib's own colormap, truncated)."""
    from matplotlib import colormaps

    return np.floor(np.asarray(colormaps["inferno"](x)[:3]) * 255)


def ring_around(shape, y0, y1, x0, x1, width=2) -> np.ndarray:
    """The pixels within `width` pixels (Chebyshev) outside the rectangle [y0, y1] x [x0, x1]."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    dy = np.maximum(np.maximum(y0 - yy, yy - y1), 0)
    dx = np.maximum(np.maximum(x0 - xx, xx - x1), 0)
    distance = np.maximum(dy, dx)
    return (distance >= 1) & (distance <= width)


# --- the smooth map -------------------------------------------------------------------------------


def test_an_all_zero_map_upsamples_to_zeros_not_nan():
    """Nothing to scale: the map stays 0 instead of 0 / 0."""
    heat = upsample_attention(np.zeros((14, 14), np.float32), (112, 84))
    assert heat.shape == (84, 112) and np.isfinite(heat).all() and (heat == 0).all()


@pytest.mark.parametrize("cell", [(0, 0), (13, 13), (6, 7)])
def test_the_smooth_map_stays_in_zero_to_one(cell):
    """Scaled to [0, 1]: bilinear resampling never overshoots below 0 next to a sharp peak."""
    heat = upsample_attention(one_hot(*cell), (224, 224))
    assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)


def test_transposing_the_map_transposes_the_picture():
    """Rows and columns are treated alike: the intermediate grid is square (4 per cell)."""
    alpha = np.random.default_rng(3).random((14, 14)).astype(np.float32)
    heat = upsample_attention(alpha, (224, 224))
    assert np.allclose(upsample_attention(alpha.T, (224, 224)), heat.T, atol=1e-5)


# --- hard attention's lit cell ----------------------------------------------------------------------


def test_a_lit_cell_is_a_float32_mask_of_zeros_and_ones():
    """The same dtype as the smooth map, and a mask: exactly 1 in the cell, 0 elsewhere."""
    lit = lit_cell(15, (140, 70))  # row 1, column 1
    assert lit.dtype == upsample_attention(one_hot(1, 1), (140, 70)).dtype == np.float32
    assert set(np.unique(lit).tolist()) == {0.0, 1.0}
    ys, xs = np.nonzero(lit)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (5, 9, 10, 19)


# --- focus and opacity ------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", [-1, 196, 400])
def test_a_cell_outside_the_grid_is_refused(cell):
    """Rather than a frame with nothing lit and no yellow frame."""
    with pytest.raises(ValueError, match=f"cell {cell} is outside the 14x14 grid"):
        lit_cell(cell, (64, 64))


def test_focus_of_hand_made_maps_follows_one_minus_entropy_over_log_cells():
    assert attention_focus(np.zeros((14, 14))) == 0.0  # no attention at all: no focus
    assert attention_focus(one_hot(4, 5)) == 1.0  # a single cell
    assert attention_focus(np.array([0.7])) == 1.0  # a one-cell grid is always focused
    for n in (2, 3, 7, 14):  # spread evenly: 0, never a rounding error below it
        assert 0.0 <= attention_focus(np.full((n, n), 1 / n**2)) < 1e-12
    two = np.zeros((14, 14))
    two[3, 3] = two[9, 1] = 0.5  # entropy log 2 over log 196 cells
    assert attention_focus(two) == pytest.approx(1 - math.log(2) / math.log(196), rel=1e-12)
    four = np.zeros((2, 2))
    four[0, 0] = four[1, 1] = 0.5  # log 2 over log 4
    assert attention_focus(four) == pytest.approx(0.5, rel=1e-12)


def test_focus_does_not_depend_on_the_map_s_scale():
    """The weights are normalised first: counts 2 and 2 are the distribution 1/2, 1/2."""
    two = np.zeros((14, 14))
    two[3, 3] = two[9, 1] = 0.5
    assert attention_focus(two * 4) == pytest.approx(attention_focus(two), rel=1e-12)
    three = np.zeros((14, 14))
    three[0, 0], three[5, 5], three[7, 2] = 3.0, 1.0, 1.0
    p = np.array([0.6, 0.2, 0.2])
    assert attention_focus(three) == pytest.approx(
        1 + (p * np.log(p)).sum() / math.log(196), rel=1e-12
    )


def test_focus_of_a_half_precision_map_is_computed_in_double_precision():
    """A model run in float16 gets the same focus as in float64, not float16's rounding."""
    three = np.zeros((14, 14))
    three[0, 0], three[5, 5], three[7, 2] = 0.6, 0.2, 0.2
    half = three.astype(np.float16)
    exact = attention_focus(half.astype(np.float64))
    assert attention_focus(half) == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_opacity_runs_from_a_faint_tint_to_full_strength():
    """Uniform attention: 15% of the strongest; one cell: the strongest, no more."""
    assert frame_opacity(np.full((14, 14), 1 / 196)) == pytest.approx(0.6 * 0.15)
    assert frame_opacity(one_hot(2, 2)) == pytest.approx(0.6)
    assert frame_opacity(one_hot(2, 2), strongest=0.8) == pytest.approx(0.8)


# --- blend --------------------------------------------------------------------------------------------


def test_blend_paints_the_colormap_with_weight_opacity_times_0_35_to_1():
    """On black, heat 1 shows 0.6 x inferno(1); on white, heat 0 keeps 1 - 0.6 x 0.35 of white
    and adds that much of inferno(0)."""
    heat = np.zeros((8, 12), np.float32)
    heat[:, 6:] = 1.0
    on_black = np.asarray(blend(Image.new("RGB", (12, 8)), heat), np.float64)
    assert np.abs(on_black[:, 6:] - 0.6 * inferno(1.0)).max() <= 1
    assert np.abs(on_black[:, :6] - 0.6 * 0.35 * inferno(0.0)).max() <= 1
    on_white = np.asarray(blend(Image.new("RGB", (12, 8), (255, 255, 255)), heat), np.float64)
    weight = 0.6 * 0.35
    assert np.abs(on_white[:, :6] - (255 * (1 - weight) + weight * inferno(0.0))).max() <= 1
    assert np.abs(on_white[:, 6:] - (255 * 0.4 + 0.6 * inferno(1.0))).max() <= 1


def test_blend_s_default_opacity_is_0_6_and_other_opacities_scale_the_weight():
    picture = random_picture(20, 10)
    heat = np.random.default_rng(1).random((10, 20)).astype(np.float32)
    assert np.array_equal(np.asarray(blend(picture, heat)), np.asarray(blend(picture, heat, 0.6)))
    none = np.asarray(blend(picture, heat, 0.0))
    assert np.array_equal(none, np.asarray(picture))  # opacity 0: the picture unchanged


def test_blend_gives_the_same_bytes_as_blending_all_bands_at_once():
    """The docstring's promise: band by band is the same float32 arithmetic per pixel as the
    straightforward (H, W, 3) version, so the same bytes."""
    from matplotlib import colormaps

    picture = random_picture(64, 48, seed=5, low=0, high=256)
    heat = upsample_attention(np.random.default_rng(6).random((14, 14)), (64, 48))
    lut = (colormaps["inferno"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)
    index = (np.clip(heat, 0, 1) * 255).astype(np.uint8)
    weight = (0.45 * (0.35 + 0.65 * heat))[..., None]
    rgb = np.asarray(picture, np.float32)
    want = (rgb * (1.0 - weight) + lut[index].astype(np.float32) * weight).astype(np.uint8)
    assert np.array_equal(np.asarray(blend(picture, heat, 0.45)), want)


def test_heat_outside_0_1_blends_as_its_nearest_bound():
    """Colour and weight both read the clipped heat: 1.7 looks like 1, -0.4 like 0."""
    picture = random_picture(10, 6, seed=2, low=0, high=256)
    heat = np.random.default_rng(3).random((6, 10)).astype(np.float32)
    wild = heat.copy()
    wild[:3] = np.where(heat[:3] > 0.5, 1.7, -0.4)
    tame = np.clip(wild, 0, 1)
    assert np.array_equal(np.asarray(blend(picture, wild)), np.asarray(blend(picture, tame)))


def test_a_grayscale_picture_blends_to_colour():
    """An "L" picture is drawn in colour: the bands differ where attention is high."""
    gray = Image.new("L", (16, 16), 120)
    heat = np.zeros((16, 16), np.float32)
    heat[4:12, 4:12] = 1.0
    out = blend(gray, heat)
    assert out.mode == "RGB" and out.size == (16, 16)
    r, g, b = np.asarray(out, np.int32)[8, 8]
    assert r != b and g != b


# --- spotlight: a hard-attention cell -------------------------------------------------------------


def check_spotlight(picture: Image.Image, out: Image.Image, lit: np.ndarray, dim: float = 0.35):
    """Full brightness in the lit cell, `dim` outside, a yellow 2-pixel frame just outside it."""
    assert out.mode == "RGB" and out.size == picture.size
    rgb = np.asarray(picture.convert("RGB"), np.float32)
    got = np.asarray(out, np.int32)
    ys, xs = np.nonzero(lit)
    ring = ring_around(lit.shape, ys.min(), ys.max(), xs.min(), xs.max())
    inside = lit > 0
    assert (got[ring] == YELLOW).all()
    assert np.array_equal(got[inside], rgb[inside].astype(np.int32))
    dark = ~ring & ~inside
    assert np.abs(got[dark] - rgb[dark] * dim).max() <= 1
    return ring


@pytest.mark.parametrize("cell", [0, 13, 14 * 13, 195, 14 * 6 + 7])
def test_spotlight_shows_the_cell_bright_the_rest_dim_and_a_yellow_frame(cell):
    """Corner cells: the frame is cut at the picture's edges, only the inner sides remain."""
    picture = random_picture(140, 112, seed=cell)
    lit = lit_cell(cell, picture.size)
    ring = check_spotlight(picture, spotlight(picture, lit), lit)
    row, col = divmod(cell, 14)
    sides_y, sides_x = 2 - (row in (0, 13)), 2 - (col in (0, 13))  # sides not at an edge
    assert ring.sum() == (10 + 2 * sides_x) * (8 + 2 * sides_y) - 10 * 8  # cells are 10 x 8


def test_spotlight_of_a_grayscale_picture_and_another_dim():
    gray = Image.fromarray(np.random.default_rng(2).integers(0, 256, (70, 70), dtype=np.uint8))
    lit = lit_cell(14 * 7 + 7, gray.size)
    check_spotlight(gray, spotlight(gray, lit, dim=0.5), lit, dim=0.5)


def test_spotlight_without_a_lit_cell_dims_everything_and_draws_no_frame():
    picture = random_picture(30, 20)
    got = np.asarray(spotlight(picture, np.zeros((20, 30), np.float32)), np.float64)
    assert np.abs(got - np.asarray(picture, np.float64) * 0.35).max() <= 1


# --- frames -----------------------------------------------------------------------------------------


def test_frames_are_labelled_by_default_and_plain_without_labels():
    picture = random_picture(224, 168)
    words = ["a", "cat"]
    alphas = np.stack([one_hot(3, 3), one_hot(10, 10)])
    plain = attention_frames(picture, words, alphas, with_labels=False)
    labelled = attention_frames(picture, words, alphas)
    for word, p, f in zip(words, plain, labelled):
        assert np.array_equal(np.asarray(f), np.asarray(label(p, word)))
        assert not np.array_equal(np.asarray(f), np.asarray(p))
        assert (np.asarray(f)[-1] == 0).all() and not (np.asarray(p)[-1] == 0).all()


def test_frames_with_cells_light_each_word_s_cell():
    """`cells`: each frame is the picture (already 448 wide, so not resized) seen through the
    dark, bright in the cell the word looked at; the cell is one of the map's own grid (7x7)."""
    picture = random_picture(448, 336, seed=7)
    alphas = np.full((2, 7, 7), 1 / 49, dtype=np.float32)
    frames = attention_frames(picture, ["a", "dog"], alphas, with_labels=False, cells=[8, 48])
    for frame, (row, col) in zip(frames, [(1, 1), (6, 6)]):
        lit = np.zeros((336, 448), np.float32)
        lit[row * 48 : (row + 1) * 48, col * 64 : (col + 1) * 64] = 1.0
        check_spotlight(picture, frame, lit)


def test_cells_must_match_the_words():
    picture = random_picture(40, 30)
    alphas = np.full((2, 14, 14), 1 / 196)
    with pytest.raises(ValueError, match="^2 words but 3 looked-at cells$"):
        attention_frames(picture, ["a", "b"], alphas, cells=[1, 2, 3])


def test_pictures_are_fitted_to_the_size_in_colour():
    """A small picture is enlarged to the longest side asked for."""
    small = random_picture(100, 50)
    frames = attention_frames(small, ["a"], np.full((1, 14, 14), 1 / 196), size=448)
    assert frames[0].size == (448, 224) and frames[0].mode == "RGB"


# --- the GIF ------------------------------------------------------------------------------------------


def test_a_gif_has_one_frame_per_word_and_loops_forever(tmp_path):
    frames = attention_frames(
        random_picture(64, 48), ["a", "b", "c", "d"], np.stack([one_hot(i, i) for i in range(4)])
    )
    with Image.open(save_gif(frames, tmp_path / "a.gif")) as gif:
        assert gif.n_frames == 4 and gif.info["loop"] == 0 and gif.info["duration"] == 700
    with Image.open(save_gif(frames[:1], tmp_path / "one.gif", duration_ms=250)) as gif:
        assert gif.n_frames == 1


# --- the grid -----------------------------------------------------------------------------------------


def panel_inches(fig):
    """(left, bottom, width, height) of each panel, in inches."""
    w, h = fig.get_figwidth(), fig.get_figheight()
    return [
        (p.x0 * w, p.y0 * h, p.width * w, p.height * h)
        for p in (ax.get_position() for ax in fig.axes)
    ]


def panel_pixels(fig):
    return [np.asarray(ax.get_images()[0].get_array()) for ax in fig.axes]


def uniform(n):
    return np.full((n, 14, 14), 1 / 196, dtype=np.float32)


def test_the_grid_s_panels_are_224_pixels_long_by_default():
    picture = random_picture(320, 240)
    words = ["a", "b"]
    panels = panel_pixels(attention_grid(picture, words, uniform(2)))
    assert [p.shape for p in panels] == [(168, 224, 3)] * 3
    panels = panel_pixels(attention_grid(picture, words, uniform(2), size=112))
    assert [p.shape for p in panels] == [(84, 112, 3)] * 3


@pytest.mark.parametrize("mode", ["RGBA", "L"])
def test_the_grid_shows_any_picture_in_rgb(mode):
    """The picture's own panel is RGB too: an "L" one would be drawn in a false-colour map."""
    picture = random_picture(64, 48).convert(mode)
    panels = panel_pixels(attention_grid(picture, ["a"], uniform(1)))
    assert [p.shape for p in panels] == [(168, 224, 3)] * 2


@pytest.mark.parametrize("cells", [None, [20, 100, 190]])
def test_the_grid_s_word_panels_are_the_unlabelled_frames(cells):
    picture = random_picture(300, 200)
    words = ["a", "red", "star"]
    alphas = np.stack([one_hot(2, 2), one_hot(7, 7), one_hot(12, 3)])
    panels = panel_pixels(attention_grid(picture, words, alphas, cells=cells))
    base = picture.resize((224, 149), Image.BILINEAR)
    assert np.array_equal(panels[0], np.asarray(base))
    frames = attention_frames(base, words, alphas, size=None, with_labels=False, cells=cells)
    for panel, frame in zip(panels[1:], frames):
        assert np.array_equal(panel, np.asarray(frame))


@pytest.mark.parametrize(
    ("size", "width"), [((320, 320), 2.0), ((640, 40), 4.0), ((40, 640), 1.2), ((90, 160), 1.5)]
)
def test_panel_width_grows_with_the_aspect_ratio_within_1_2_to_4_inches(size, width):
    """2 x sqrt(aspect) inches, clipped to [1.2, 4]; the height keeps the picture's shape."""
    fig = attention_grid(random_picture(*size), ["a", "b"], uniform(2))
    aspect = size[0] / size[1]
    for _, _, w, h in panel_inches(fig):
        assert w == pytest.approx(width) and h == pytest.approx(width / aspect)


def test_as_many_columns_as_fit_in_the_width():
    """n panels of 2 inches (square picture) and n + 1 gaps of 0.15 inch, the margins
    included: 3 fit in 6.6, not in 6.55, 5 in exactly 10.9; the figure is never wider than
    `max_width` unless one panel alone is; `columns` overrides the width."""
    picture = random_picture(200, 200)
    words = list("abcdefg")

    def columns(**kw):
        fig = attention_grid(picture, words, uniform(7), **kw)
        if "columns" not in kw and kw.get("max_width", 11.0) >= 2.3:
            assert fig.get_figwidth() <= kw.get("max_width", 11.0) + 1e-9
        return len({round(x, 6) for x, *_ in panel_inches(fig)})

    assert columns(max_width=6.6) == 3
    assert columns(max_width=6.55) == 2
    assert columns(max_width=5 * 2 + 6 * 0.15) == 5  # an exact fit is not lost to rounding
    assert columns(max_width=10.85) == 4
    assert columns(max_width=1.0) == 1
    assert columns(columns=1) == 1
    assert columns(columns=5, max_width=1.0) == 5
    assert columns() == 5  # 11 inches: 5 x 2 + 6 x 0.15 = 10.9
    # 1.5-inch panels (a 9:16 picture): 6 fit in the default 11 inches (10.8), 7 would not (12.45)
    fig = attention_grid(random_picture(90, 160), list("abcdefgh"), uniform(8))
    assert len({round(x, 6) for x, *_ in panel_inches(fig)}) == 6


def test_a_full_row_has_equal_margins_left_and_right():
    fig = attention_grid(random_picture(200, 150), list("abcde"), uniform(5), columns=3)
    panels = panel_inches(fig)
    left = panels[0][0]
    right = fig.get_figwidth() - (panels[2][0] + panels[2][2])
    assert left == pytest.approx(0.15) and right == pytest.approx(left)


def test_the_figure_is_100_pixels_an_inch_whatever_the_rc_settings(tmp_path):
    import matplotlib

    with matplotlib.rc_context({"figure.dpi": 37}):
        fig = attention_grid(random_picture(200, 150), ["a"], uniform(1), path=tmp_path / "g.png")
    assert fig.dpi == 100
    with Image.open(tmp_path / "g.png") as png:
        assert abs(png.width - fig.get_figwidth() * 100) <= 1


def drawn(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def test_each_label_is_centred_in_the_band_under_its_panel():
    """The band is label_h = 0.4 inch between a panel and the next row (or the bottom gap)."""
    fig = attention_grid(random_picture(200, 150), ["a", "dog", "sat"], uniform(3), columns=2)
    renderer = drawn(fig)
    labels = [t for t in fig.texts if t.get_text()]
    for text, ax in zip(labels, fig.axes[1:]):
        box, panel = text.get_window_extent(renderer), ax.get_window_extent(renderer)
        band_middle = panel.y0 - 0.2 * 100
        assert abs((box.y0 + box.y1) / 2 - band_middle) < 1.5
        assert abs((box.x0 + box.x1) / 2 - (panel.x0 + panel.x1) / 2) < 1.5


@pytest.mark.parametrize(
    ("size", "word"),
    [
        ((200, 200), "photographically-overexposed"),  # 2-inch panels
        ((40, 640), "photographically-overexposed"),  # 1.2-inch panels
        ((40, 640), "skateboarding"),
        ((200, 200), "m" * 20),  # wide letters
        ((200, 200), "W" * 14),
    ],
)
def test_a_long_word_is_shrunk_to_just_about_its_panel_s_width(size, word):
    """Shrunk so that it fits, not so much that it is needlessly small (80% of the panel)."""
    fig = attention_grid(random_picture(*size), [word], uniform(1))
    renderer = drawn(fig)
    text = next(t for t in fig.texts if t.get_text())
    box, panel = text.get_window_extent(renderer), fig.axes[1].get_window_extent(renderer)
    assert text.get_fontsize() < 12  # too long for 12 points
    assert 0.8 * panel.width <= box.width <= panel.width, box.width / panel.width


def test_a_label_s_size_is_the_largest_that_fits_down_to_1_point():
    """`_fitting_fontsize`: at most the given width by matplotlib's own measure, as large as
    that allows (to the bisection's 1/4096), the full size when it fits exactly, never below 1."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    from captioner.attention_viz import _fitting_fontsize

    def width(text, size):
        return RendererAgg(1, 1, 100).get_text_width_height_descent(
            text, FontProperties(size=size), False
        )[0]

    at_11 = width("giraffe", 11)  # too narrow for 12 points, wide enough for 11
    size = _fitting_fontsize("giraffe", 12, at_11, 100)
    assert 11 - 12 / 4096 <= size < 12 and width("giraffe", size) <= at_11
    assert _fitting_fontsize("giraffe", 12, width("giraffe", 12), 100) == 12  # an exact fit
    assert _fitting_fontsize("m" * 400, 12, 100, 100) == 1.0  # too long even at 1 point


def test_a_word_of_narrow_letters_that_fits_keeps_its_full_size():
    """20 "i"s are 100 pixels at 12 points: they fit a 1.2-inch panel (114 pixels) as they are."""
    fig = attention_grid(random_picture(40, 640), ["i" * 20], uniform(1))
    assert next(t for t in fig.texts if t.get_text()).get_fontsize() == 12


def test_the_title_is_centred_in_its_band_and_wrapped_to_the_figure():
    fig = attention_grid(random_picture(200, 150), list("abc"), uniform(3), title="a b c")
    renderer = drawn(fig)
    title = fig.texts[-1]
    box = title.get_window_extent(renderer)
    width, height = fig.get_figwidth() * 100, fig.get_figheight() * 100
    assert abs((box.x0 + box.x1) / 2 - width / 2) < 1.5
    assert abs((box.y0 + box.y1) / 2 - (height - 0.55 / 2 * 100)) < 1.5
    long = " ".join(["a very long title"] * 12)
    fig = attention_grid(random_picture(200, 150), list("ab"), uniform(2), title=long)
    renderer = drawn(fig)
    box = fig.texts[-1].get_window_extent(renderer)
    assert box.width <= fig.get_figwidth() * 100


# --- the label band -----------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["giraffe", "jump"])
def test_a_label_on_a_large_picture_is_centred_to_within_two_pixels(word):
    """Centred in its band both ways: as much dark band above the text as below, left as right."""
    picture = Image.new("RGB", (1200, 900), (128, 128, 128))
    pixels = np.asarray(label(picture, word), np.int32)
    band = np.flatnonzero((pixels[:, 0] == 0).all(axis=1))
    assert band[-1] == 899 and band.size == band[-1] - band[0] + 1
    text = np.argwhere(pixels.min(axis=2) > 128)
    above, below = text[:, 0].min() - band[0], 899 - text[:, 0].max()
    left, right = text[:, 1].min(), 1199 - text[:, 1].max()
    assert abs(above - below) <= 2 and abs(left - right) <= 2, (above, below, left, right)
    assert (pixels[text[:, 0], text[:, 1]].max(axis=0) == 255).all()  # white text


def test_a_label_s_text_grows_with_the_picture():
    """Readable at any size: the text on a 900-pixel-high picture is several times as tall as
    on a 200-pixel one (the font scales with the height), not a fixed small default font."""

    def text_height(height):
        pixels = np.asarray(label(Image.new("RGB", (1200, height), (128, 128, 128)), "dog"))
        rows = np.flatnonzero((pixels.min(axis=2) > 128).any(axis=1))
        return rows.max() - rows.min() + 1

    small, large = text_height(200), text_height(900)
    assert small >= 8 and large >= 3 * small, (small, large)
