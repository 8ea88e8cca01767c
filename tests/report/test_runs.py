"""Run folders are read through one adapter per kind; bad folders give one clear error and write nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kenprune.cli import main
from kenprune.errors import KenpruneError
from kenprune.report import read_run, write_report
from kenprune.report.build import layer_figure


def test_prune_run_summary_and_bar_heights_equal_the_json(run_dirs):
    run = read_run(run_dirs["prune"])
    data = json.loads((run_dirs["prune"] / "report.json").read_text())
    expected = [layer["sparsity"] for layer in data["layers"]]
    assert run.kind == "prune" and run.method == "sparsegpt" and run.sparsity == 0.5
    assert run.quality == ("perplexity", 29.6, 35.0)
    heights = [p.get_height() for p in layer_figure(run).axes[0].patches]
    assert heights == pytest.approx(expected)
    for row in ("perplexity before", "perplexity after", "size: sparse file", "time", "peak memory (RSS)"):
        assert row in run.summary
    assert run.protocol["seqlen"] == 512 and run.protocol["calibration"]["data"] == "wiki:calib"


def _write_json(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "search.json").write_text(json.dumps(data))
    return folder


def test_other_kinds(run_dirs, tmp_path):
    search = read_run(run_dirs["search"])
    data = json.loads((run_dirs["search"] / "search.json").read_text())
    assert search.kind == "search" and list(search.histories) == ["evolution"]
    evals, best = search.histories["evolution"]
    assert evals == [h["evaluations"] for h in data["result"]["history"]]
    assert best == [h["best_fitness"] for h in data["result"]["history"]]
    assert search.layers.values == data["block_ratios"] and search.protocol["proxy"] == "oneshot"
    several = read_run(_write_json(tmp_path / "both", {"model": "m", "method": "wanda", "strategies": {
        "evolution": {"history": data["result"]["history"]}, "random": {"history": data["result"]["history"][:3]}}}))
    assert list(several.histories) == ["evolution", "random"] and len(several.histories["random"][0]) == 3
    structured = read_run(run_dirs["structured"])
    assert structured.kind == "structured" and structured.quality == ("perplexity", 29.6, 48.2)
    assert structured.layers.values[0] == 0 and structured.layers.values[1] == pytest.approx((3 / 9 + 256 / 1536) / 2)
    recovered = read_run(_write_json(tmp_path / "lora", {
        "method": "lora-recovery", "model": "pruned-folder", "training": {"steps": 50, "loss_first": 3.2},
        "perplexity": {"data": "wiki:test", "seqlen": 512, "max_windows": 8, "before": 48.2, "after": 39.0}}))
    assert recovered.kind == "recover" and recovered.quality == ("perplexity", 48.2, 39.0)
    assert recovered.summary["training steps"] == "50"
    ken = read_run(run_dirs["ken"])
    assert ken.kind == "ken" and ken.model == "tiny-ft" and len(ken.layers.values) == 8
    assert ken.quality == ("accuracy", None, 0.83) and ken.optimized == run_dirs["ken"] / "model"
    assert ken.summary["ratio"] == "0.650" and ken.summary["size: subnetwork"] == "20.0 KB"


def test_per_layer_spellings(tmp_path):
    for layers in ({"a": 0.1, "b": 0.2}, {"a": {"sparsity": 0.1}, "b": {"sparsity": 0.2}}, [0.1, 0.2],
                   [{"name": "a", "sparsity": 0.1}, {"name": "b", "sparsity": 0.2}]):
        folder = tmp_path / "run"
        folder.mkdir(exist_ok=True)
        (folder / "report.json").write_text(json.dumps({"method": "magnitude", "model": "m", "sparsity": 0.15,
                                                        "layers": layers}))
        assert read_run(folder).layers.values == [0.1, 0.2]


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "should hold a JSON object"),
    (json.dumps({"model": "m", "sparsity": 0.5}), "has no method"),
    (json.dumps({"method": "wanda", "model": "m", "sparsity": 0.5}), "has no per-layer sparsity"),
    (json.dumps({"method": "wanda", "model": "m", "layers": {"a": "half"}}), "should be a number"),
    (json.dumps({"method": "dsa-search", "model": "m", "history": []}), "no per-generation history"),
    (json.dumps({"method": "structured", "model": "m", "widths_before": [{"heads": "9"}],
                 "widths_after": [{"heads": 6}]}), "not a well-formed structured result"),
])
def test_malformed_run_folder_clear_error_and_nothing_written(tmp_path, run_dirs, content, message):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "kenprune-report.json").write_text(content)
    out = tmp_path / "out" / "r.html"
    with pytest.raises(KenpruneError, match=message):
        write_report([run_dirs["prune"], bad], out=out)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_json_cli_one_line_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kenprune: error:") and "no kenprune result JSON" in err and "\n" not in err
    assert list(empty.iterdir()) == []
    assert main(["report", str(tmp_path / "nowhere")]) == 2


def test_report_single_run_default_out_and_pngs(tmp_path, capsys, prune_json):
    folder = tmp_path / "magnitude-50"
    folder.mkdir()
    (folder / "kenprune-report.json").write_text(json.dumps(prune_json("magnitude")))
    assert main(["report", str(folder)]) == 0
    assert "report written: open file://" in capsys.readouterr().out
    html = (folder / "report.html").read_text()
    assert "kenprune report: magnitude on smollm2-135m" in html and "http://" not in html and "https://" not in html
    assert [p.name for p in (folder / "report-figures").iterdir()] == ["magnitude-50-layers.png"]


def test_several_runs_quality_curves_and_search_comparison(run_dirs, tmp_path):
    from kenprune.report.build import quality_points

    runs = [read_run(d) for d in run_dirs.values()]
    quality = quality_points(runs)
    metric, dense, points = quality.metric, quality.dense, quality.points
    assert metric == "perplexity" and dense == 29.6
    assert sorted(points["magnitude"]) == [(0.4, 40.0), (0.5, 90.0), (0.6, 400.0)]
    assert sorted(points["wanda"]) == [(0.4, 33.0), (0.5, 45.0), (0.6, 120.0)]
    assert points["structured"] == [(0.2, 48.2)]
    assert "ken" not in points and "measured accuracy on pang-lee:test" in quality.left_out["ken-run"]
    out = write_report(list(run_dirs.values()), out=tmp_path / "all.html")
    names = {p.name for p in (tmp_path / "all-figures").iterdir()}
    assert {"comparison.png", "comparison-search.png"} <= names
    html = out.read_text()
    assert html.index("Comparison") < html.index("sparsegpt-50 (prune)")
