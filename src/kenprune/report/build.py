"""`kenprune report` and `kenprune viz`: read runs, draw figures, write one self-contained HTML page plus PNGs."""
from __future__ import annotations

import datetime as _dt
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import KenpruneError
from ..fileio import atomic_dir, atomic_file
from . import figures
from .html import FigureBlock, Section, png_bytes, render_html
from .runs import Run, format_number, present, read_run

REPORT_NAME = "report.html"
REPORT_LAYER_VARIANTS = 12  # layers a run report embeds per KEN matrix view (evenly spaced); `viz` embeds all


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "run"


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): data}


MAX_BARS = 48  # more per-layer values than this, with several matrix types, are drawn as a (layer x type) grid


def layer_figure(run: Run) -> "figures.Figure":
    """Per-layer values: bars coloured by matrix type for a few, a (layer x matrix type) grid for many or for KEN."""
    layers = run.layers
    groups = [figures.short_type(figures.matrix_type(label)) for label in layers.labels]
    what = _layer_word(run)
    if len(set(groups)) > 1 and (run.kind == "ken" or len(groups) > MAX_BARS):
        title = (f"KEN on {run.model}: kept fraction per tensor ({len(groups)} tensors)" if run.kind == "ken" else
                 f"{run.method} on {run.model}: {layers.quantity} per layer and matrix type ({len(groups)} matrices)")
        return figures.layer_grid(dict(zip(layers.labels, layers.values)), title=title, quantity=layers.quantity)
    typed = 1 < len(set(groups)) <= 12
    fig = figures.layer_bars([figures.layer_label(x) for x in layers.labels] if typed else layers.labels,
                             layers.values, ylabel=layers.quantity, reference=layers.target,
                             groups=groups if typed else None,
                             title=(f"best allocation for {run.method} on {run.model}: {layers.quantity} per block"
                                    if run.kind == "search" else
                                    f"{run.method} on {run.model}: {layers.quantity} per {what} ({len(layers.values)})"))
    if typed:
        fig.axes[0].set_xlabel("layer (colour: matrix type)")
    return fig


def _layer_caption(run: Run) -> str:
    quantity, what = run.layers.quantity, _layer_word(run)
    grid = len({figures.matrix_type(x) for x in run.layers.labels}) > 1 and (
        run.kind == "ken" or len(run.layers.labels) > MAX_BARS)
    how = ("How to read: one row per layer (top = first), one column per matrix type; darker = higher "
           f"{quantity}." if grid else f"How to read: one bar per {what}" + (
               "; the dashed line is the target, bars above it got more than their share." if run.layers.target
               is not None else "."))
    return f"{quantity.capitalize()} per {what}, from {run.source.name}. {how}"


def _layer_word(run: Run) -> str:
    return {"ken": "tensor", "structured": "block", "search": "block"}.get(run.kind, "layer")


def _ken_mask_figures(run: Run) -> tuple[list[FigureBlock], list[str]]:
    """KEN_viz views for a KEN run: from its subnetwork file, else from its optimized model vs its base."""
    from .kenviz import TensorSource, default_matrix, family_masks, load_masks, subnetwork_masks

    if run.subnetwork is not None:
        masks = subnetwork_masks(run.subnetwork)
        matrix = default_matrix({n: m.shape for n, m in masks.items()})
        if matrix is None:
            return [], ["The subnetwork holds no per-layer matrix to draw."]
        return kenviz_blocks(family_masks(matrix, masks), _slug(run.name), fractions=False,
                             max_variants=REPORT_LAYER_VARIANTS), []
    optimized = run.optimized
    if optimized is None or not run.pretrained:
        return [], ["The mask views need the subnetwork file (or the optimized model and its pre-trained base): "
                    "run `kenprune viz --optimized RUN/subnetwork.safetensors --matrix NAME`."]
    matrix = default_matrix(TensorSource(optimized).shapes())
    if matrix is None:
        return [], ["No 2-D per-layer matrix found in the optimized model for the mask views."]
    return kenviz_blocks(load_masks(run.pretrained, optimized, matrix), _slug(run.name), fractions=False,
                             max_variants=REPORT_LAYER_VARIANTS), []


def kenviz_blocks(masks, key: str, fractions: bool = True, max_variants: int | None = None) -> list[FigureBlock]:
    """The KEN_viz figures as page blocks; the single-matrix views get one variant per layer.

    `fractions=False` leaves out the kept-fraction bars (a run report already shows every tensor's).
    """
    from .kenviz import family_figures, matrix_figures

    names = list(masks.masks)
    labels = masks.labels()
    overview = {k: png_bytes(f) for k, f in family_figures(masks).items()}
    matrix, neighbours = {}, {}
    for name in names[:: max(1, -(-len(names) // (max_variants or len(names))))]:
        views = matrix_figures(masks, name)
        matrix[f"{labels[name]}: {name}"] = png_bytes(views["matrix"])
        neighbours[f"{labels[name]}: {name}"] = png_bytes(views["neighbours"])
    family = figures.short_type(figures.matrix_type(names[0]))
    kept = [FigureBlock(f"{key}-kept", f"Kept fraction of {family} in each layer.",
                        {"all": overview["kept_fraction"]})] if fractions else []
    return kept + [
        FigureBlock(f"{key}-matrix", "One matrix's kept entries (pick the layer). How to read: each cell is one "
                    "weight (or a block of them, as the title says), drawn to the matrix's proportions; dark = kept "
                    "from the fine-tuned model, white = left at the pre-trained value.", matrix),
        FigureBlock(f"{key}-neighbours", "Kept entries coloured by how many of their 4 neighbours "
                    "(up, down, left, right) are kept. How to read: scattered choices are light (0-1), "
                    "clusters dark (3-4).", neighbours),
        FigureBlock(f"{key}-all", f"{family} in every layer side by side. How to read: one panel per layer on one "
                    "colour scale, so darker panels kept more.", {"all": overview["layers"]}),
    ]


def _token_figures(run: Run) -> list[FigureBlock]:
    """Token pruning: each traced input, token by token, layer by layer."""
    blocks = []
    for i, example in enumerate(run.record.details.get("examples") or []):
        fig = figures.token_survival(example["tokens"], example["survivors"],
                                     title=f"{run.method}: tokens left after each layer (example {i + 1})")
        blocks.append(FigureBlock(f"{_slug(run.name)}-tokens-{i}", "Tokens of one input (columns) still present after "
                                  "each layer (rows, with the count). How to read: dark = still there; a column that "
                                  "turns white was pruned (or, for ToMe, merged into a similar token) at that layer.",
                                  {"all": png_bytes(fig)}))
    return blocks


def _phase_figures(run: Run) -> list[FigureBlock]:
    """The phase map: quality and loss barrier over temperature x density, each cell with its regime."""
    d = run.record.details
    cell = {(c["temperature"], c["density"]): c for c in d["cells"]}
    rows, cols = d["temperatures"], d["densities"]
    labels = [[cell[(t, x)]["regime"] for x in cols] for t in rows]
    blocks = []
    for key, quantity, caption in (
            ("quality", d["quality_metric"], f"{d['quality_metric']} of each pruned"
             + (" and recovered" if d["recover_steps"] else "") + " model. How to read: rows go up the temperature-"
             "like axis, columns from dense to sparse; " + ("higher is better" if d["higher_is_better"] else
                                                            "lower is better") + "; each cell names its regime."),
            ("barrier", "loss barrier (nats)", "Loss barrier on the straight line from the pruned model to its dense "
             f"parent. How to read: above {d['thresholds']['barrier']:g} nats a cell is Regime I (poorly connected); "
             f"connected cells are II-B when their CKA with the parent is at least {d['thresholds']['similarity']:g}, "
             "else II-A.")):
        fig = figures.phase_heatmap(rows, cols, [[cell[(t, x)][key] for x in cols] for t in rows], labels,
                                    quantity=quantity, cmap="viridis" if key == "quality" else "magma",
                                    title=f"{run.method} on {run.model}: {quantity}")
        blocks.append(FigureBlock(f"{_slug(run.name)}-phase-{key}", caption, {"all": png_bytes(fig)}))
    return blocks


def run_section(run: Run) -> Section:
    section = Section(f"{run.name} ({run.kind})")
    section.warnings += run.warnings
    section.notes += run.notes
    section.tables.append(("Summary", run.summary))
    if run.protocol:
        section.tables.append(("Evaluation protocol", _flatten(present(run.protocol))))
    if run.zero_shot is not None:
        _zero_shot_blocks(run, section)
    if run.layers is not None:
        section.figures.append(FigureBlock(f"{_slug(run.name)}-layers", _layer_caption(run),
                                           {"all": png_bytes(layer_figure(run))}))
    if run.histories:
        fig = figures.fitness_curves(run.histories, ylabel="best fitness (lower is better)",
                                     baselines=run.baselines,
                                     title=f"Search for {run.method}: best fitness vs evaluations")
        section.figures.append(FigureBlock(
            f"{_slug(run.name)}-search", "Best fitness found so far against model evaluations, per strategy. "
            "How to read: lower is better; " + ("a line below the dashed uniform / OWL lines means the search beat "
                                               "them on the same proxy." if run.baselines else
                                               "the record holds no uniform or OWL fitness to compare with."),
            {"all": png_bytes(fig)}))
    if run.curves:
        fig = figures.fitness_curves(run.curves, ylabel="loss", title="Training loss per step")
        fig.axes[0].set_xlabel("step")
        section.figures.append(FigureBlock(f"{_slug(run.name)}-loss", "Training loss at each step. How to read: "
                                           "a falling line is the model fitting its training data.",
                                           {"all": png_bytes(fig)}))
    if run.kind == "tokens":
        section.figures += _token_figures(run)
    if run.kind == "phase-map":
        section.figures += _phase_figures(run)
    if run.kind in ("ken", "ken-apply"):
        blocks, notes = _ken_mask_figures(run)
        section.figures += blocks
        section.notes += notes
    for when in ("given", "resolved"):
        settings = _flatten(present(run.record.settings.get(when) or {}))
        if settings:
            section.details.append((f"Settings ({when})", settings))
    provenance = _flatten(present(run.record.provenance))
    if provenance:
        section.details.append(("Provenance (command line, machine, versions)", provenance))
    section.details.append(("Source", {"run folder": str(run.path.resolve()), "record": run.source.name,
                                       "record version": run.record.version}))
    return section


def _zero_shot_blocks(run: Run, section: Section) -> None:
    """The zero-shot table (per task: every model with its 95 % interval, items scored, chance), its protocol,
    and the per-task bar chart."""
    view = run.zero_shot
    section.tables.append(("Zero-shot tasks (lm-evaluation-harness)", view.table))
    section.tables.append(("Zero-shot protocol", present(view.protocol)))
    fig = figures.task_bars(view.tasks, view.series, chance=view.chance,
                            title=f"{run.model}: zero-shot accuracy per task" + (
                                ", " + " vs ".join(view.series) if len(view.series) > 1 else ""))
    section.figures.append(FigureBlock(
        f"{_slug(run.name)}-tasks", "Zero-shot accuracy per task for each model in the run, the mean last. "
        "How to read: error bars are 95 % intervals (Wilson per task; normal for the mean), so bars whose "
        "intervals overlap are not shown to differ; the dashed line is the task's chance level (a cloze task's "
        "is near 0: it asks for the exact word).", {"all": png_bytes(fig)}))


@dataclass
class QualityPoints:
    """What one quality-vs-sparsity plot shows: runs measured under one metric, data split and seqlen.

    Runs whose protocols differ only in their window count are on the same plot, each series labelled with
    its window count; anything else is a different group (or left out, with why)."""
    metric: str | None = None
    protocol: tuple = ()  # (metric, data, seqlen)
    dense: float | None = None
    points: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    windows: Any = None  # the window count most of its runs used (others are labelled)
    left_out: dict[str, str] = field(default_factory=dict)  # run name -> why it is not on this plot


def protocol_key(run: Run) -> tuple:
    """What must match for two quality numbers to be on one plot: metric, data split, seqlen (windows are labelled)."""
    p = run.protocol
    return (run.quality[0] if run.quality else None, p.get("data"), p.get("seqlen"))


def windows_of(run: Run) -> Any:
    return run.protocol.get("windows", run.protocol.get("max_windows"))


def protocol_text(key: tuple) -> str:
    """'perplexity on wiki:test, seqlen 512 (, 8 windows)', leaving out what the protocol does not say."""
    metric, data, seqlen, *rest = key
    windows = rest[0] if rest else None
    return ", ".join([f"{metric} on {data}"] + ([f"seqlen {seqlen}"] if seqlen is not None else [])
                     + ([f"{windows} windows"] if windows is not None else []))


def quality_groups(runs: list[Run]) -> tuple[list[QualityPoints], dict[str, str]]:
    """One group per comparable protocol, largest first; and the runs left out of every plot, with why."""
    left_out: dict[str, str] = {}
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        if run.quality is None or run.quality[2] is None:
            left_out[run.name] = "no quality measured"
        elif run.kind == "search":
            left_out[run.name] = "search run: its quality is the search's proxy fitness, compared in the search figure"
        elif run.sparsity is None:
            left_out[run.name] = (f"{run.kind} run: no pruning sparsity to place it on the x axis"
                                  + (" (KEN keeps a fraction of selected values)" if run.kind == "ken" else ""))
        else:
            groups.setdefault(protocol_key(run), []).append(run)
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        group = QualityPoints(metric=key[0], protocol=key, runs=[r.name for r in members])
        group.windows = Counter(windows_of(r) for r in members).most_common(1)[0][0]
        counts = Counter(windows_of(r) for r in members)
        usual = counts.most_common(1)[0][0]
        for run in members:  # the usual window count is in the title; another one is in its series' label
            label = run.series + (f" ({windows_of(run)} windows)" if windows_of(run) != usual else "")
            group.points.setdefault(label, []).append((run.sparsity, run.quality[2]))
            if group.dense is None and run.quality[1] is not None:
                group.dense = run.quality[1]
        out.append(group)
    return out, left_out


def quality_points(runs: list[Run]) -> QualityPoints:
    """The largest comparable group, with every other run in `left_out` and why."""
    groups, left_out = quality_groups(runs)
    if not groups:
        return QualityPoints(left_out=left_out)
    first = groups[0]
    for other in groups[1:]:
        for name in other.runs:
            left_out[name] = f"measured {protocol_text(other.protocol)}; the plot's protocol is {protocol_text(first.protocol)}"
    first.left_out = left_out
    return first


def comparison_title(runs: list[Run]) -> str:
    models = sorted({r.model for r in runs})
    return f"Comparison: {len(runs)} runs on {', '.join(models)}"


def comparison_section(runs: list[Run]) -> Section:
    """Several runs: a table of them, search histories overlaid, quality vs sparsity per comparable protocol."""
    groups, left_out = quality_groups(runs)
    section = Section(comparison_title(runs))
    section.tables.append(("Runs", {run.name: run.headline or run.method for run in runs}))
    for run in runs:
        section.warnings += [f"{run.name}: {w}" for w in run.warnings]
    histories = {f"{label} ({run.name})": h for run in runs for label, h in run.histories.items()}
    if len(histories) > 1:
        baselines = next((r.baselines for r in runs if r.baselines), {})
        fig = figures.fitness_curves(histories, ylabel="best fitness (lower is better)", baselines=baselines,
                                     title=f"Search strategies: best fitness vs evaluations ({len(histories)} runs)")
        section.figures.append(FigureBlock("comparison-search", "Best fitness found so far against model "
                                           "evaluations, one line per search run. How to read: lower is better; "
                                           "the line that drops sooner found good allocations with fewer "
                                           "evaluations.", {"all": png_bytes(fig)}))
    plotted = 0
    for group in groups:
        sparsities = {x for points in group.points.values() for x, _ in points}
        if len(sparsities) < 2:
            why = (f"the only run measured {protocol_text(group.protocol)}" if len(group.runs) == 1 else
                   f"its group ({protocol_text(group.protocol)}) has one sparsity only, see the table")
            for name in group.runs:
                left_out[name] = why
            continue
        protocol = protocol_text(group.protocol + (group.windows,))
        key = "comparison" if plotted == 0 else f"comparison-{plotted + 1}"
        plotted += 1
        metric = group.metric
        fig = figures.quality_curves(group.points, ylabel=metric, dense=group.dense,
                                     title=f"{metric.capitalize()} vs sparsity ({protocol}, {len(group.runs)} runs)")
        windows = any("windows)" in label for label in group.points)
        section.figures.append(FigureBlock(key, f"{metric.capitalize()} after pruning against sparsity, "
                                           f"{protocol}: one line per method (+ allocation)"
                                           + ("; a series measured on another number of windows says so in its "
                                              "label" if windows else "")
                                           + "; dashed: dense model. How to read: "
                                           + ("lower" if metric == "perplexity" else "higher")
                                           + " is better; a line that stays flat further right prunes better.",
                                           {"all": png_bytes(fig)}))
    if left_out:
        section.notes.append("Not on a quality plot: " + "; ".join(f"{name} ({why})" for name, why in left_out.items())
                             + ".")
    if not plotted and len(histories) <= 1:
        section.notes.append("No two runs report a sparsity and a quality measured the same way: nothing to plot.")
    return section


def default_out(run_dirs: list[Path]) -> Path:
    """One run: RUN_DIR/report.html; several: kenprune-report.html in their common parent folder."""
    if len(run_dirs) == 1:
        return (run_dirs[0] if run_dirs[0].is_dir() else run_dirs[0].parent) / REPORT_NAME
    return Path(os.path.commonpath([str(p.resolve().parent) for p in run_dirs])) / "kenprune-report.html"


def write_report(run_dirs: list[str | Path] | str | Path, out: str | Path | None = None) -> Path:
    """Write one self-contained HTML report for the run folders (+ its PNGs beside it); returns the HTML path.

    Every run is read and every figure drawn before anything is written, so a bad run folder writes nothing.
    """
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    if not dirs:
        raise KenpruneError("give at least one run folder to report on")
    out = Path(out) if out else default_out(dirs)
    _check_out(out)
    runs = [read_run(d) for d in dirs]
    sections = [run_section(r) for r in runs]
    if len(runs) > 1:
        sections.insert(0, comparison_section(runs))
    what = {"search": f"{runs[0].method} allocation search", "ken-apply": "KEN rebuild"}.get(runs[0].kind,
                                                                                           runs[0].method)
    title = (f"kenprune report: {what} on {runs[0].model}" if len(runs) == 1
             else f"kenprune report: {comparison_title(runs).removeprefix('Comparison: ')}")
    return _write_page(out, title, ", ".join(r.name for r in runs), sections)


def write_viz(pretrained: str | Path, optimized: str | Path, matrix: str, out: str | Path | None = None) -> Path:
    """`kenprune viz`: the KEN_viz views of one matrix family as a self-contained HTML page (+ PNGs)."""
    from .kenviz import load_masks

    out = Path(out) if out else Path(f"kenviz-{_slug(matrix)}.html")
    _check_out(out)
    masks = load_masks(pretrained, optimized, matrix)
    kept = sum(int(m.sum()) for m in masks.masks.values()) / sum(m.size for m in masks.masks.values())
    section = Section(f"KEN_viz: {matrix}")
    section.tables.append(("Models", {"pre-trained": str(pretrained), "optimized": str(optimized),
                                      "matrices": len(masks.masks), "kept (these matrices)": f"{kept:.1%}"}))
    section.notes.append("Kept = entries where the optimized model differs from the pre-trained one "
                         "(the values KEN took from the fine-tuned model).")
    section.figures += kenviz_blocks(masks, _slug(matrix))
    return _write_page(out, f"KEN_viz: {matrix}", f"{optimized} vs {pretrained}", [section])


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in (".html", ".htm"):
        raise KenpruneError(f"--out {out} should end in .html")


def _write_page(out: Path, title: str, subtitle: str, sections: list[Section]) -> Path:
    """Write the HTML page and a folder of its PNGs beside it, each atomically."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = render_html(title, f"{subtitle} - written {stamp}", sections,
                       footer=f"kenprune {__version__}. Self-contained: opens offline; figures also saved as PNG "
                              f"in {out.stem}-figures/.")
    with atomic_dir(out.with_name(f"{out.stem}-figures")) as folder:
        for section in sections:
            for block in section.figures:
                for i, png in enumerate(block.variants.values()):
                    (folder / (block.key + (f"-{i}" if len(block.variants) > 1 else "") + ".png")).write_bytes(png)
        with atomic_file(out) as tmp:
            tmp.write_text(page, encoding="utf-8")
    return out
