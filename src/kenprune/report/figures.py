"""Figures as pure functions: arrays in, matplotlib Figures out (no pyplot, no global state).

The array transforms (downsampling, neighbour counts) are separate functions so tests can check
the data a figure shows without looking at pixels.
"""
from __future__ import annotations

import math
import re
import textwrap
from typing import Mapping, Sequence

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

# A colour-blind-safe cycle (Okabe-Ito) shared by every figure, so a method keeps its colour.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
KEPT_CMAP = ListedColormap(["#ffffff", "#0b3c5d"])  # not kept = white, kept = dark blue
FRACTION_CMAP = "Blues"
# Neighbour view: not kept = white, then 0..4 kept 4-neighbours from isolated (light) to clustered (dark).
NEIGHBOUR_COLOURS = ("#ffffff", "#fde725", "#5ec962", "#21918c", "#3b528b", "#440154")
MAX_SIDE = 256  # larger matrices are block-averaged down to at most this many cells per side
CROP_SIDE = 96  # the neighbour view shows a full-resolution crop: averaging would destroy local structure


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _title(ax, title: str, fontsize: float = 11) -> None:
    """A left-aligned axes title wrapped to the figure's width, so no title runs off the picture."""
    if not title:
        return
    width_in = ax.figure.get_figwidth()
    chars = max(30, int(width_in * 72 / (fontsize * 0.6)) - 6)
    ax.set_title("\n".join(textwrap.fill(line, chars) for line in title.split("\n")), loc="left", fontsize=fontsize)


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


# ----------------------------------------------------------------------------- array transforms

def downsample(mask: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, tuple[int, int]]:
    """Block-average a 2-D mask so neither side exceeds `max_side`; returns (fraction kept per block, block shape).

    Blocks are square (b x b, b = ceil(longest side / max_side)) so the picture keeps the matrix's proportions;
    edge blocks average over the entries they have. A matrix that fits is returned unchanged (as float), block (1, 1).
    """
    m = np.asarray(mask, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {m.shape}")
    br = bc = max(1, math.ceil(max(m.shape) / max_side))
    if br == 1 and bc == 1:
        return m, (1, 1)
    rows, cols = math.ceil(m.shape[0] / br), math.ceil(m.shape[1] / bc)
    padded = np.full((rows * br, cols * bc), np.nan, dtype=np.float32)
    padded[: m.shape[0], : m.shape[1]] = m
    return np.nanmean(padded.reshape(rows, br, cols, bc), axis=(1, 3)), (br, bc)


def neighbour_counts(mask: np.ndarray) -> np.ndarray:
    """For each kept entry, how many of its 4 neighbours (up, down, left, right) are kept; -1 where not kept.

    Works for any shape (KEN_viz's original only handled square matrices).
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 1:
        m = m[None, :]
    padded = np.pad(m, 1).astype(np.int8)
    counts = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    return np.where(m, counts, -1).astype(np.int8)


def as_matrix(tensor: np.ndarray) -> np.ndarray:
    """View any tensor as 2-D for display: vectors become one row, >2-D tensors keep their first dim as rows."""
    t = np.asarray(tensor)
    if t.ndim == 0:
        return t.reshape(1, 1)
    if t.ndim == 1:
        return t[None, :]
    return t.reshape(t.shape[0], -1)


# ----------------------------------------------------------------------------- bar charts

def _thin_ticks(ax, labels: Sequence[str], max_labels: int = 40) -> None:
    """One tick per run of equal labels (bars of one layer share it), at most `max_labels` of them."""
    runs: list[tuple[float, str]] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append(((start + i - 1) / 2, labels[start]))
            start = i
    runs = runs[:: max(1, math.ceil(len(runs) / max_labels))]
    longest = max((len(label) for _, label in runs), default=0)
    ax.set_xticks([x for x, _ in runs], [label for _, label in runs], rotation=90 if longest > 3 else 0,
                  fontsize=7 if len(runs) > 20 else 9)


def layer_bars(labels: Sequence[str], values: Sequence[float], *, ylabel: str = "sparsity",
               title: str = "", groups: Sequence[str] | None = None, reference: float | None = None) -> Figure:
    """One bar per layer (or tensor), any number of them; `groups` colours bars by kind (e.g. matrix type)."""
    labels, values = [str(x) for x in labels], np.asarray(values, dtype=float)
    if len(labels) != len(values):
        raise ValueError("labels and values differ in length")
    width = min(14.0, max(7.0, 0.1 * len(labels) + 4))
    fig = _figure(width, 3.6)
    ax = fig.add_subplot()
    kinds = list(dict.fromkeys(groups)) if groups is not None else []
    colours = ([PALETTE[kinds.index(g) % len(PALETTE)] for g in groups] if groups is not None
               else PALETTE[0])
    ax.bar(range(len(values)), values, color=colours, width=0.8 if len(values) < 200 else 1.0)
    if reference is not None:
        ax.axhline(reference, color="#444444", linestyle="--", linewidth=1, label=f"target {reference:.3g}")
    handles = [Patch(color=PALETTE[i % len(PALETTE)], label=k) for i, k in enumerate(kinds)] if len(kinds) > 1 else []
    if handles or reference is not None:
        ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False)
    _thin_ticks(ax, labels)
    ax.set_xlim(-0.6, len(values) - 0.4)
    top = float(np.nanmax(values)) if len(values) else 1.0
    ax.set_ylim(0, max(1.0, top * 1.05) if top <= 1.0 else top * 1.08)
    ax.set_ylabel(ylabel)
    _title(ax, title)
    _style(ax)
    return fig


_LAYER_INDEX = re.compile(r"\d+")


def matrix_type(name: str) -> str:
    """A tensor name with its layer numbers replaced by 'N' (model.layers.N.mlp.up_proj.weight): its matrix type."""
    return _LAYER_INDEX.sub("N", name)


def layer_label(name: str) -> str:
    """The layer number(s) in a tensor name ('model.layers.3.mlp.up_proj' -> '3'), else the name itself."""
    return ".".join(_LAYER_INDEX.findall(name)) or name


def short_type(type_name: str) -> str:
    """model.layers.N.self_attn.q_proj.weight -> self_attn.q_proj.weight: the part after the layer index."""
    parts = type_name.split(".N.", 1)
    return parts[1] if len(parts) == 2 else type_name


def _layer_key(label: str) -> tuple:
    return tuple(int(d) for d in _LAYER_INDEX.findall(label))


def layer_grid(values: Mapping[str, float], title: str = "KEN: kept fraction per tensor",
               quantity: str = "kept fraction") -> Figure:
    """Every tensor's value as a (layer x matrix type) grid: one row per layer in numeric order (2 before 10),
    one column per matrix type; tensors outside layers get the last row, 'other'.

    Scales to any number of layers and tensor types, where one bar per tensor would not be readable.
    """
    in_layer = {n: ".N." in matrix_type(n) for n in values}
    ordered = sorted(values, key=lambda n: (not in_layer[n], _layer_key(layer_label(n)) if in_layer[n] else ()))
    types = list(dict.fromkeys(short_type(matrix_type(n)) for n in ordered))
    layers = sorted({layer_label(n) for n in values if in_layer[n]}, key=_layer_key)
    rows = layers + (["other"] if not all(in_layer.values()) else [])
    grid = np.full((len(rows), len(types)), np.nan)
    for name, value in values.items():
        row = layer_label(name) if in_layer[name] else "other"
        grid[rows.index(row), types.index(short_type(matrix_type(name)))] = value
    longest = max((len(t) for t in types), default=4)
    width = min(16.0, max(6.5, 2.2 + 0.62 * len(types) + 0.05 * longest))
    height = min(30.0, max(2.8, 1.9 + 0.24 * len(rows) + 0.06 * longest))
    fig = _figure(width, height)
    ax = fig.add_subplot()
    top = 1.0 if quantity != "removed fraction" else max(1e-3, float(np.nanmax(grid)))
    img = ax.imshow(np.ma.masked_invalid(grid), cmap=FRACTION_CMAP, vmin=0, vmax=top, aspect="auto",
                    interpolation="nearest")
    if grid.size <= 600:
        for (r, c), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=6.5,
                        color="white" if value > 0.6 * top else "#1f2328")
    step = max(1, math.ceil(len(rows) / 60))
    ax.set_yticks(range(0, len(rows), step), rows[::step], fontsize=7 if len(rows) > 30 else 8)
    ax.set_xticks(range(len(types)), types, fontsize=8, rotation=30 if longest > 8 and len(types) > 3 else 0,
                  ha="right" if longest > 8 and len(types) > 3 else "center")
    ax.xaxis.tick_top()
    ax.set_ylabel("layer")
    _title(ax, title)
    fig.colorbar(img, ax=ax, shrink=0.8, label=quantity)
    return fig


def kept_fraction_grid(fractions: Mapping[str, float], title: str = "KEN: kept fraction per tensor") -> Figure:
    """KEN's per-tensor kept fractions as a (layer x matrix type) grid (see layer_grid)."""
    return layer_grid(fractions, title, "kept fraction")


# ----------------------------------------------------------------------------- curves

def fitness_curves(histories: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
                   ylabel: str = "best fitness", title: str = "Search: best fitness vs evaluations",
                   baselines: Mapping[str, float] | None = None) -> Figure:
    """One step line per search strategy: best fitness found so far against evaluations spent; `baselines`
    (e.g. uniform and OWL on the same proxy) as horizontal dashed lines."""
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot()
    for i, (name, (evals, best)) in enumerate(histories.items()):
        ax.step(evals, best, where="post", color=PALETTE[i % len(PALETTE)], linewidth=2, label=name,
                marker="o", markersize=3)
    styles = ("--", ":", "-.")
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, color="#444444", linestyle=styles[i % len(styles)], linewidth=1.2,
                   label=f"{'OWL' if name == 'owl' else name} {value:.4g}")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(ylabel)
    _title(ax, title)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _style(ax)
    return fig


def quality_curves(series: Mapping[str, Sequence[tuple[float, float]]], *, xlabel: str = "sparsity",
                   ylabel: str = "perplexity", dense: float | None = None,
                   title: str = "Quality vs sparsity") -> Figure:
    """One line per method or allocation through its (sparsity, quality) points, sorted by sparsity."""
    fig = _figure(8.0, 4.2)
    ax = fig.add_subplot()
    for i, (name, points) in enumerate(series.items()):
        xs, ys = zip(*sorted(points)) if points else ((), ())
        ax.plot(xs, ys, color=PALETTE[i % len(PALETTE)], marker="o", linewidth=2, label=name)
    if dense is not None:
        ax.axhline(dense, color="#444444", linestyle="--", linewidth=1, label=f"dense {dense:.4g}")
    values = [y for pts in series.values() for _, y in pts] + ([dense] if dense else [])
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _title(ax, title)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _style(ax)
    return fig


# ----------------------------------------------------------------------------- KEN_viz views

def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(map(str, shape))


def _matrix_size(rows: int, cols: int, width: float = 6.5, extra_h: float = 1.4) -> tuple[float, float]:
    """A figure size whose image area has the matrix's proportions (a square matrix draws square)."""
    image_w = width - 1.6  # room for the row axis and the colour bar
    image_h = image_w * rows / cols
    if image_h > 7.0:  # a tall matrix: narrower, not squashed
        image_h, image_w = 7.0, 7.0 * cols / rows
    return max(3.5, image_w + 1.6), max(2.0, image_h + extra_h)


def mask_heatmap(mask: np.ndarray, title: str = "", max_side: int = MAX_SIDE) -> Figure:
    """KEN_viz single-matrix view: kept entries dark, pruned white; large matrices block-averaged (stated).

    Drawn with equal aspect: one entry is a square cell, so a square matrix is a square picture."""
    m = as_matrix(mask)
    data, block = downsample(m, max_side)
    rows, cols = data.shape
    fig = _figure(*_matrix_size(rows, cols))
    ax = fig.add_subplot()
    if block == (1, 1):
        img = ax.imshow(data, cmap=KEPT_CMAP, vmin=0, vmax=1, interpolation="nearest", aspect="equal")
        method = f"{_shape_text(m.shape)}, every entry shown"
        fig.colorbar(img, ax=ax, ticks=[0.25, 0.75], shrink=0.6).ax.set_yticklabels(["pruned", "kept"])
    else:
        img = ax.imshow(data, cmap=FRACTION_CMAP, vmin=0, vmax=_colour_top(data), interpolation="nearest",
                        aspect="equal", extent=(0, cols * block[1], rows * block[0], 0))  # axes in matrix entries
        method = (f"{_shape_text(m.shape)} downsampled to {rows} x {cols}: "
                  f"colour = fraction kept in each {block[0]} x {block[1]} block")
        fig.colorbar(img, ax=ax, shrink=0.6, label="fraction kept")
    _title(ax, f"{title}\n{method}, {float(m.mean()):.1%} kept" if title else f"{method}, {float(m.mean()):.1%} kept",
           fontsize=9)
    ax.set_xlabel("column (input)")
    ax.set_ylabel("row (output)")
    return fig


def _colour_top(*arrays: np.ndarray) -> float:
    """Top of a fraction colour scale: the largest value shown (so 10 % kept is not a white page), at least 1e-3."""
    return max(1e-3, max(float(np.nanmax(a)) for a in arrays))


def neighbour_heatmap(mask: np.ndarray, title: str = "", crop: int = CROP_SIDE) -> Figure:
    """KEN_viz cluster view: each kept entry coloured by its kept 4-neighbours (0-4); large matrices cropped (stated)."""
    m = as_matrix(mask)
    counts = neighbour_counts(m)
    shown = counts[:crop, :crop]
    fig = _figure(*_matrix_size(*shown.shape, extra_h=1.8))
    ax = fig.add_subplot()
    cmap = ListedColormap(NEIGHBOUR_COLOURS)
    img = ax.imshow(shown, cmap=cmap, norm=BoundaryNorm(np.arange(-1.5, 5.5), len(NEIGHBOUR_COLOURS)), interpolation="nearest", aspect="equal")
    bar = fig.colorbar(img, ax=ax, ticks=range(-1, 5), shrink=0.6)
    bar.ax.set_yticklabels(["pruned", "0", "1", "2", "3", "4"])
    bar.set_label("kept neighbours")
    method = (f"top-left {shown.shape[0]} x {shown.shape[1]} of {_shape_text(m.shape)} at full resolution"
              if shown.shape != counts.shape else f"{_shape_text(m.shape)}, every entry shown")
    hist = np.bincount(counts[counts >= 0].ravel(), minlength=5)
    share = ", ".join(f"{k}: {v / max(1, hist.sum()):.0%}" for k, v in enumerate(hist))
    _title(ax, f"{title}\n{method}\nkept entries by neighbour count ({share})" if title else method, fontsize=9)
    ax.set_xlabel("column (input)")
    ax.set_ylabel("row (output)")
    return fig


def layers_grid(masks: Mapping[str, np.ndarray], title: str = "", max_side: int = 96) -> Figure:
    """KEN_viz all-layers view: one matrix type across all layers side by side, any number of layers."""
    n = len(masks)
    if n == 0:
        raise ValueError("no matrices to show")
    ncols = min(6, n)
    nrows = math.ceil(n / ncols)
    first = as_matrix(next(iter(masks.values())))
    cell_h = 2.0 * first.shape[0] / first.shape[1]
    cell_h = min(3.2, max(0.5, cell_h)) + 0.35  # equal aspect: the cell has the matrix's proportions (+ its title)
    fig = _figure(2.0 * ncols + 1.0, cell_h * nrows + 0.9)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    shown = {label: downsample(as_matrix(mask), max_side)[0] for label, mask in masks.items()}
    top = _colour_top(*shown.values())  # one scale for all layers, so they compare
    img = None
    for ax, (label, mask) in zip(axes.flat, masks.items()):
        img = ax.imshow(shown[label], cmap=FRACTION_CMAP, vmin=0, vmax=top, interpolation="nearest", aspect="equal")
        ax.set_title(f"{label}  ({float(np.mean(mask)):.1%})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.colorbar(img, ax=axes, shrink=0.6, label="fraction kept")
    _, block = downsample(first, max_side)
    how = (f"each {_shape_text(first.shape)} matrix block-averaged by {block[0]} x {block[1]}" if block != (1, 1)
           else f"{_shape_text(first.shape)}, every entry shown")
    text = f"{title}  ({how})" if title else how
    fig.suptitle(textwrap.fill(text, max(30, int(fig.get_figwidth() * 72 / 6.5) - 4)), fontsize=10, x=0.01, ha="left")
    return fig


def token_survival(tokens: Sequence[str], survivors: Sequence[Sequence[int]], title: str = "") -> Figure:
    """Which tokens of one input are still present after each layer: one row per layer (top: the input), one
    column per token, dark where the token is left; the tokens are the column labels."""
    n, rows = len(tokens), len(survivors) + 1
    grid = np.zeros((rows, n), dtype=np.float32)
    grid[0] = 1
    for i, kept in enumerate(survivors):
        grid[i + 1, [p for p in kept if 0 <= p < n]] = 1
    fig = _figure(min(16.0, 1.6 + 0.13 * n), 1.6 + 0.28 * rows)
    ax = fig.add_subplot()
    ax.imshow(grid, cmap=KEPT_CMAP, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(rows), ["input"] + [f"layer {i} ({len(k)})" for i, k in enumerate(survivors)], fontsize=7)
    ax.set_xticks(range(n), [t[:12] for t in tokens], rotation=90, fontsize=6)
    _title(ax, title, 10)
    return fig


# ----------------------------------------------------------------------------- zero-shot tasks

def task_bars(tasks: Sequence[str], series: Mapping[str, Sequence[tuple[float, float, float] | None]], *,
              chance: Sequence[float | None] = (), title: str = "Zero-shot accuracy per task") -> Figure:
    """Grouped bars: per task, one bar per model (e.g. dense, pruned) with its 95 % interval as an error bar;
    each task's chance level as a short dashed line across its group."""
    fig = _figure(min(12.0, max(6.0, 1.3 * len(tasks) * max(1, len(series)) + 2.5)), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(series))
    for i, (name, points) in enumerate(series.items()):
        xs = [t + (i - (len(series) - 1) / 2) * width for t, p in enumerate(points) if p is not None]
        vals = [p for p in points if p is not None]
        ax.bar(xs, [v for v, _, _ in vals], width=width * 0.95, color=PALETTE[i % len(PALETTE)], label=name,
               yerr=np.array([[max(0.0, v - lo) for v, lo, _ in vals], [max(0.0, hi - v) for v, _, hi in vals]]),
               capsize=3,
               error_kw={"linewidth": 1, "ecolor": "#333333"})
    for t, level in enumerate(chance):
        if level is not None:
            ax.hlines(level, t - 0.45, t + 0.45, colors="#444444", linestyles="--", linewidth=1.2,
                      label="chance" if t == next(j for j, c in enumerate(chance) if c is not None) else None)
    ax.set_xticks(range(len(tasks)), list(tasks), fontsize=9)
    ax.set_xlim(-0.6, len(tasks) - 0.4)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _title(ax, title)
    _style(ax)
    return fig


# ----------------------------------------------------------------------------- phase map

def phase_heatmap(rows: Sequence[str], columns: Sequence[float], values: Sequence[Sequence[float]],
                  labels: Sequence[Sequence[str]], *, quantity: str, title: str = "",
                  cmap: str = "viridis") -> Figure:
    """A temperature (rows) x density (columns) grid of one quantity, each cell annotated with its value and
    regime label; columns from dense (left) to sparse (right)."""
    grid = np.array(values, dtype=float)
    fig = _figure(min(10.0, 2.2 + 1.1 * len(columns)), min(8.0, 1.6 + 0.55 * len(rows)))
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap=cmap, aspect="auto")
    finite = grid[np.isfinite(grid)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            colour = "white" if np.isfinite(grid[i, j]) and grid[i, j] < middle else "black"
            ax.text(j, i, f"{grid[i, j]:.3g}\n{labels[i][j]}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(columns)), [f"{c:g}" for c in columns])
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_xlabel("density (load-like)")
    ax.set_ylabel("temperature-like axis")
    fig.colorbar(image, ax=ax, label=quantity)
    _title(ax, title)
    return fig
