"""Every file reader refuses a damaged file (half written, 7 bytes, 4 KiB overwritten, garbled header,
empty) with ONE line naming the file, through the Python API and every command that reads it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from kenprune.cli import main
from kenprune.errors import KenpruneError
from tests.faults.corrupt import KINDS, corrupt_copy, damaged_folder

# what damages the header (safetensors' size + JSON): readers that only look at the header see these
HEADER_KINDS = ("half", "seven-bytes", "garbled-header", "empty")


def one_line(exc: BaseException | str, path: Path) -> str:
    message = str(exc)
    assert "\n" not in message, message
    assert str(path) in message, message
    return message


def cli_one_line(capsys, argv: list[str], path: Path) -> str:
    """Run the CLI: exit 2, a single stderr line `kenprune: error: ...` naming `path`."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("kenprune: error: "), err
    assert "Traceback" not in err, err
    return one_line(lines[-1], path)


# ------------------------------------------------------------------------------------ sparse file
@pytest.fixture(scope="module")
def sparse_file(tmp_path_factory):
    from kenprune.formats import save_sparse
    from kenprune.testing import tiny_causal_lm

    model = tiny_causal_lm("llama", layers=1, hidden=32)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p[p.abs() < p.abs().median()] = 0
    path = tmp_path_factory.mktemp("sparse") / "model.safetensors"
    save_sparse(model, path)
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_sparse_file_damage_is_one_line(kind, sparse_file, tmp_path):
    from kenprune.formats import load_sparse, load_sparse_model, read_manifest

    bad = corrupt_copy(sparse_file, tmp_path, kind)
    readers = (load_sparse, load_sparse_model) + ((read_manifest,) if kind in HEADER_KINDS else ())
    for reader in readers:
        with pytest.raises(KenpruneError) as info:
            reader(bad)
        one_line(info.value, bad)


def test_sparse_file_with_a_garbled_manifest_is_one_line(sparse_file, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from kenprune.formats import load_sparse

    with safe_open(str(sparse_file), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    for garbled in (meta["kenprune"][:40], json.dumps({"format": "kenprune-sparse", "version": 1, "tensors": []}),
                    json.dumps({"format": "kenprune-sparse", "version": 7, "tensors": {}})):
        bad = tmp_path / "garbled.safetensors"
        save_file(tensors, str(bad), metadata={"kenprune": garbled})
        with pytest.raises(KenpruneError) as info:
            load_sparse(bad)
        one_line(info.value, bad)
    # a manifest that names a tensor the file lacks
    manifest = json.loads(meta["kenprune"])
    manifest["tensors"]["ghost.weight"] = {"encoding": "dense", "shape": [2], "dtype": "float32"}
    save_file(tensors, str(bad), metadata={"kenprune": json.dumps(manifest)})
    with pytest.raises(KenpruneError, match="ghost.weight") as info:
        load_sparse(bad)
    one_line(info.value, bad)


# ------------------------------------------------------------------------------------ KEN subnetwork file
@pytest.fixture(scope="module")
def subnetwork_file(tmp_path_factory):
    from kenprune.ken.subnetwork import Subnetwork, write_subnetwork

    gen = torch.Generator().manual_seed(0)
    masks = {f"model.layers.{i}.self_attn.q_proj.weight": torch.rand(48, 48, generator=gen) > 0.5 for i in range(2)}
    sub = Subnetwork(masks=masks, values={n: torch.randn(int(m.sum()), generator=gen) for n, m in masks.items()},
                     rows={n: 48 for n in masks}, meta={"base": {"name": "tiny", "weights_sha256": "0" * 64}})
    path = tmp_path_factory.mktemp("sub") / "subnetwork.safetensors"
    write_subnetwork(path, sub)
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_subnetwork_damage_is_one_line_in_api_ken_apply_and_viz(kind, subnetwork_file, tiny_llama_folder,
                                                                tmp_path, capsys):
    from kenprune.ken.subnetwork import read_subnetwork

    bad = corrupt_copy(subnetwork_file, tmp_path, kind)
    with pytest.raises(KenpruneError) as info:
        read_subnetwork(bad)
    one_line(info.value, bad)
    out = tmp_path / "applied"
    cli_one_line(capsys, ["ken", "apply", "--base", tiny_llama_folder, "--subnetwork", bad, "--out", out], bad)
    assert not out.exists()
    cli_one_line(capsys, ["viz", "--optimized", bad, "--matrix", "q_proj", "--out", tmp_path / "v.html"], bad)
    assert not (tmp_path / "v.html").exists()


def test_viz_of_a_damaged_model_file_is_one_line(tmp_path, capsys):
    from safetensors.torch import save_file

    pre = tmp_path / "pre.safetensors"
    save_file({"layers.0.q.weight": torch.zeros(4, 4)}, str(pre))
    for kind in HEADER_KINDS:
        bad = corrupt_copy(pre, tmp_path, kind)
        cli_one_line(capsys, ["viz", "--pretrained", pre, "--optimized", bad, "--matrix", "q",
                              "--out", tmp_path / "v.html"], bad)


# ------------------------------------------------------------------------------------ run record
@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    import kenprune.record as records

    folder = tmp_path_factory.mktemp("run")
    record = records.RunRecord(kind="eval", model={"name": "tiny", "source": "tiny"},
                               quality=[records.Quality("perplexity", 12.5, "lee:test", "after", "tiny")])
    records.write(record, folder)
    return folder


def damaged_run(run_folder: Path, tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / f"run-{kind}"
    shutil.copytree(run_folder, folder)
    from tests.faults.corrupt import corrupt

    corrupt(run_folder / "run.json", folder / "run.json", kind)
    return folder


@pytest.mark.parametrize("kind", KINDS)
def test_run_record_damage_is_one_line_in_api_report_and_eval(kind, run_folder, tmp_path, capsys):
    import kenprune.record as records

    folder = damaged_run(run_folder, tmp_path, kind)
    source = folder / "run.json"
    with pytest.raises(KenpruneError) as info:
        records.read(folder)
    one_line(info.value, source)
    cli_one_line(capsys, ["report", folder, "--out", tmp_path / "report.html"], source)
    cli_one_line(capsys, ["eval", "--model", folder, "--data", "lee:test", "--out", tmp_path / "ev"], source)
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_run_record_with_a_non_finite_literal_is_refused(literal, run_folder, tmp_path):
    import kenprune.record as records

    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    text = (folder / "run.json").read_text()
    (folder / "run.json").write_text(text.replace("12.5", literal))
    with pytest.raises(records.RecordError, match=f"non-finite number {literal}") as info:
        records.read(folder)
    one_line(info.value, folder / "run.json")


# ------------------------------------------------------------------------------------ search checkpoint
def _checkpoint(tmp_path: Path) -> Path:
    from random import Random

    from kenprune.allocate.search import SearchState, _rng_state, _save

    state = SearchState(rng=_rng_state(Random(0)), generation=1, evaluations=1,
                        population=["abslog|var|atan,asin|noop"], cache={"abslog|var|atan,asin|noop": {"fitness": 3.0}})
    path = tmp_path / "good" / "checkpoint.json"
    path.parent.mkdir()
    _save(path, {"config": {}}, state)
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_search_checkpoint_damage_is_one_line(kind, tmp_path, capsys):
    from kenprune.allocate.search import check_checkpoint

    good = _checkpoint(tmp_path)
    check_checkpoint(good)
    bad = corrupt_copy(good, tmp_path, kind)
    with pytest.raises(KenpruneError) as info:
        check_checkpoint(bad)
    message = one_line(info.value, bad)
    assert "delete it" in message and "--out" in message
    cli_one_line(capsys, ["search", "--out", bad.parent, "--workers", "1"], bad)


@pytest.mark.parametrize("edit", [
    lambda d: d.update(state=[]),
    lambda d: d["state"].update(rng=[3, [1, 2], None]),
    lambda d: d["state"].update(population=["abslog|var|atan,asin|noop", "nonsense"]),
    lambda d: d["state"].update(generation="two"),
    lambda d: d["state"].update(cache={"abslog|var|atan,asin|noop": {"same_as": "abslog|var|atan,asin|noop"}}),
    lambda d: d.pop("identity"),
])
def test_search_checkpoint_with_a_malformed_state_is_one_line(edit, tmp_path):
    from kenprune.allocate.search import check_checkpoint

    path = _checkpoint(tmp_path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(KenpruneError) as info:
        check_checkpoint(path)
    assert "delete it" in one_line(info.value, path)


# ------------------------------------------------------------------------------------ allocation file
@pytest.fixture
def allocation_file(tmp_path):
    path = tmp_path / "good" / "best.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"allocation": "dsa:abslog|var|atan,asin|noop", "lambda": 0.05,
                                "ratios": {"a": 0.4, "b": 0.6}}, indent=2))
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_allocation_file_damage_is_one_line(kind, allocation_file, tmp_path, capsys):
    from kenprune.allocate import Layer, check_allocation, resolve_allocation

    bad = corrupt_copy(allocation_file, tmp_path, kind)
    if kind == "middle-4k":  # a small JSON file: its middle third overwritten
        assert bad.read_bytes() != allocation_file.read_bytes()
    for call in (lambda: check_allocation(str(bad)),
                 lambda: resolve_allocation(str(bad), [Layer("a", 0, (2, 5)), Layer("b", 1, (2, 5))], 0.5)):
        with pytest.raises(KenpruneError) as info:
            call()
        one_line(info.value, bad)
    cli_one_line(capsys, ["prune", "--allocation", bad, "--sparsity", "0.5", "--out", tmp_path / "p"], bad)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("content", [
    '{"allocation": 3}', '{"allocation": "uniform", "lambda": "x"}', '{"allocation": "best.json"}',
    '{"ratios": {"a": NaN, "b": 0.5}}', '{"ratios": {"a": "0.5", "b": 0.5}}', '{"ratios": {"a": 1.5}}', "[1, 2]",
    '{"ratios": [0.5]}',
])
def test_allocation_file_with_malformed_content_is_one_line(content, tmp_path):
    from kenprune.allocate import check_allocation

    path = tmp_path / "best.json"
    path.write_text(content)
    with pytest.raises(KenpruneError) as info:
        check_allocation(str(path))
    one_line(info.value, path)


# ------------------------------------------------------------------------------------ GGUF cache
def test_a_damaged_gguf_cache_is_rebuilt_not_loaded(tmp_path, monkeypatch):
    from kenprune import provenance
    from kenprune.fileio import write_json
    from kenprune.models import loading

    monkeypatch.setattr(provenance, "cache_root", lambda: tmp_path / "cache")
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    content = bytes(range(256)) * 64  # the "converted" model.safetensors
    conversions = []

    def fake_convert(gguf_path, folder, gguf_sha, transformers_version):
        conversions.append(folder)
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(content)
        write_json(folder / loading.MANIFEST_FILE, {"files": {"model.safetensors": {
            "bytes": len(content), "sha256": provenance.file_sha256(folder / "model.safetensors")}}})

    monkeypatch.setattr(loading, "_convert_gguf", fake_convert)
    folder = loading.cached_gguf_folder("tiny", gguf)
    assert loading.verify_manifest(folder) is None and len(conversions) == 1
    assert loading.cached_gguf_folder("tiny", gguf) == folder and len(conversions) == 1  # verified, reused
    for kind in KINDS:
        from tests.faults.corrupt import corrupt

        weights = folder / "model.safetensors"
        corrupt(weights, weights, kind)
        assert loading.verify_manifest(folder) is not None
        real_convert = fake_convert

        def rebuild(gguf_path, target, *args):  # the real code converts into a fresh folder (atomic_dir)
            shutil.rmtree(target)
            real_convert(gguf_path, target, *args)

        monkeypatch.setattr(loading, "_convert_gguf", rebuild)
        assert loading.cached_gguf_folder("tiny", gguf) == folder
        assert weights.read_bytes() == content and loading.verify_manifest(folder) is None
    assert len(conversions) == 1 + len(KINDS)
    (folder / loading.MANIFEST_FILE).write_text("{garbled")
    assert "unreadable manifest" in loading.verify_manifest(folder)


# ------------------------------------------------------------------------------------ model folder
@pytest.mark.parametrize("kind", HEADER_KINDS)
def test_damaged_model_weights_are_one_line_in_load_model_and_eval(kind, tiny_llama_folder, tmp_path, capsys):
    from kenprune.models.loading import load_model

    folder = damaged_folder(tiny_llama_folder, tmp_path, kind)
    weights = folder / "model.safetensors"
    with pytest.raises(KenpruneError) as info:
        load_model(str(folder))
    one_line(info.value, weights)
    out = tmp_path / "ev"
    cli_one_line(capsys, ["eval", "--model", folder, "--data", "lee:test", "--seqlen", "32", "--max-windows", "1",
                          "--out", out], weights)
    assert not out.exists()
