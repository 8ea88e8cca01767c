"""The figures show the right data for known inputs (checked on the figure objects, not pixels)."""
from __future__ import annotations

import numpy as np
import pytest

from kenprune.report import figures


def test_neighbour_counts_hand_made_non_square():
    mask = np.array([[1, 1, 0, 0, 1],
                     [1, 0, 0, 1, 1],
                     [0, 0, 0, 0, 1]], dtype=bool)
    expected = np.array([[2, 1, -1, -1, 1],
                         [1, -1, -1, 1, 3],
                         [-1, -1, -1, -1, 1]])
    np.testing.assert_array_equal(figures.neighbour_counts(mask), expected)
    full = np.ones((3, 4), dtype=bool)  # corners 2, edges 3, interior 4
    np.testing.assert_array_equal(figures.neighbour_counts(full), [[2, 3, 3, 2], [3, 4, 4, 3], [2, 3, 3, 2]])


def test_downsample_is_block_mean_and_keeps_small_matrices():
    mask = np.zeros((8, 6), dtype=bool)
    mask[:4, :3] = True
    small, block = figures.downsample(mask, max_side=8)
    assert block == (1, 1) and np.array_equal(small, mask)
    data, block = figures.downsample(mask, max_side=4)
    assert block == (2, 2) and data.shape == (4, 3)
    np.testing.assert_allclose(data, [[1, 0.5, 0], [1, 0.5, 0], [0, 0, 0], [0, 0, 0]])
    odd, _ = figures.downsample(np.ones((5, 5)), max_side=2)  # uneven edge blocks average what they have
    np.testing.assert_allclose(odd, np.ones((2, 2)))


def test_heatmap_array_is_the_mask_and_downsampling_is_stated():
    rng = np.random.default_rng(0)
    mask = rng.random((12, 30)) < 0.3
    fig = figures.mask_heatmap(mask, title="m")
    np.testing.assert_array_equal(np.asarray(fig.axes[0].images[0].get_array()), mask.astype(np.float32))
    big = rng.random((600, 300)) < 0.3
    fig = figures.mask_heatmap(big, max_side=100)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    np.testing.assert_allclose(shown, figures.downsample(big, 100)[0])
    assert "600 x 300 downsampled to 100 x 50" in fig.axes[0].get_title(loc="left")


def test_neighbour_heatmap_shows_counts_and_states_the_crop():
    mask = np.eye(200, 150, dtype=bool) | np.eye(200, 150, k=1, dtype=bool)
    fig = figures.neighbour_heatmap(mask, crop=50)
    np.testing.assert_array_equal(np.asarray(fig.axes[0].images[0].get_array()),
                                  figures.neighbour_counts(mask)[:50, :50])
    assert "top-left 50 x 50 of 200 x 150" in fig.axes[0].get_title(loc="left")


def test_layers_grid_any_number_of_layers():
    masks = {f"layer {i}": np.eye(4, 7, k=i, dtype=bool) for i in range(7)}
    fig = figures.layers_grid(masks)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 7
    for ax, mask in zip(shown, masks.values()):
        np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), mask.astype(np.float32))


def test_layer_bars_heights_and_curves_data():
    fig = figures.layer_bars(["a", "b", "c"], [0.1, 0.5, 0.9], reference=0.5)
    assert [p.get_height() for p in fig.axes[0].patches] == pytest.approx([0.1, 0.5, 0.9])
    fig = figures.fitness_curves({"evolution": ([10, 14], [5.0, 3.0]), "random": ([10, 14], [5.0, 4.0])})
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    np.testing.assert_allclose(lines["random"].get_ydata(), [5.0, 4.0])
    fig = figures.quality_curves({"wanda": [(0.6, 50.0), (0.5, 40.0)]}, dense=30.0)
    line = next(l for l in fig.axes[0].get_lines() if l.get_label() == "wanda")
    np.testing.assert_allclose(line.get_xdata(), [0.5, 0.6])
    np.testing.assert_allclose(line.get_ydata(), [40.0, 50.0])


def test_matrix_type_and_labels():
    assert figures.matrix_type("model.layers.12.mlp.up_proj.weight") == "model.layers.N.mlp.up_proj.weight"
    assert figures.short_type("model.layers.N.mlp.up_proj.weight") == "mlp.up_proj.weight"
    assert figures.layer_label("model.layers.12.mlp.up_proj") == "12"


def test_kept_fraction_grid_cells_equal_the_fractions_rows_in_layer_order():
    # names in lexicographic order (as a file lists them): layer 10 before layer 2
    names = sorted(f"enc.layer.{i}.{t}" for i in (0, 1, 2, 10) for t in ("query.weight", "value.weight"))
    fractions = {n: 0.01 * int(n.split(".")[2]) + (0.05 if "value" in n else 0.0) for n in names}
    fractions["embeddings.word.weight"] = 0.7
    fig = figures.kept_fraction_grid(fractions, title="KEN on a model with a long name: kept fraction per tensor "
                                                      "(a title long enough to run off a narrow figure)")
    ax = fig.axes[0]
    grid = np.ma.filled(ax.images[0].get_array(), np.nan)
    assert grid.shape == (5, 3)  # layers 0, 1, 2, 10 + other x query, value, embeddings
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2", "10", "other"]
    np.testing.assert_allclose(grid[:4, 0], [0.0, 0.01, 0.02, 0.1])
    np.testing.assert_allclose(grid[:4, 1], [0.05, 0.06, 0.07, 0.15])
    assert grid[4, 2] == pytest.approx(0.7) and np.isnan(grid[4, 0]) and np.isnan(grid[0, 2])
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    title = ax.title if ax.title.get_text() else ax._left_title
    box = title.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width + 1, "the grid's title runs off the figure"


def test_square_matrix_is_drawn_square():
    mask = np.random.default_rng(1).random((384, 384)) < 0.25
    for fig in (figures.mask_heatmap(mask, title="layer 0 query"), figures.neighbour_heatmap(mask)):
        ax = fig.axes[0]
        assert ax.get_aspect() == 1.0
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig).draw()
        box = ax.get_window_extent()
        assert box.width == pytest.approx(box.height, rel=0.02)


def test_fitness_curves_draw_baselines():
    fig = figures.fitness_curves({"evolution": ([10, 14], [5.0, 3.0])}, baselines={"uniform": 4.5, "owl": 4.0})
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "uniform 4.5" in labels and "OWL 4" in labels
