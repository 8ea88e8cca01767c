"""Output safety for every command: nothing a user had is lost, nothing half-written is left, and every
refusal is one line before any work (in-process through the CLI, on tiny models)."""
from __future__ import annotations

import errno
import os
import stat

import pytest

from kenprune.cli import main
from tests.faults.conftest import leftovers, snapshot

PRUNE = ["prune", "--method", "magnitude", "--sparsity", "0.5"]


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def one_line_error(err: str) -> str:
    line = err.splitlines()[-1]
    assert line.startswith("kenprune: error: ") and "Traceback" not in err
    return line


@pytest.fixture
def never_load(monkeypatch):
    """Fail the test if a model's weights are loaded: the check under test must come first."""
    import kenprune.models.loading as loading

    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(loading, "load_model", refuse)


def test_existing_folder_of_the_user_is_refused_and_untouched(capsys, tiny_llama_folder, user_folder, never_load):
    before = snapshot(user_folder)
    code, _, err = run(capsys, *PRUNE, "--model", str(tiny_llama_folder), "--out", str(user_folder))
    assert code == 2 and "already exists and is not empty; pass --overwrite" in one_line_error(err)
    code, _, err = run(capsys, *PRUNE, "--model", str(tiny_llama_folder), "--out", str(user_folder), "--overwrite")
    assert code == 2 and "is not a kenprune run folder" in one_line_error(err)
    assert snapshot(user_folder) == before and not leftovers(user_folder.parent)


def test_overwrite_replaces_a_run_folder_only_after_the_new_one_is_complete(capsys, tiny_llama_folder, tmp_path,
                                                                             monkeypatch):
    out = tmp_path / "run"
    assert run(capsys, *PRUNE, "--model", str(tiny_llama_folder), "--out", str(out))[0] == 0
    code, _, err = run(capsys, *PRUNE, "--model", str(tiny_llama_folder), "--out", str(out))
    assert code == 2 and "--overwrite" in one_line_error(err)
    first = snapshot(out)

    import kenprune.formats as formats

    def full_disk(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "model.sparse.safetensors"))

    monkeypatch.setattr(formats, "save_sparse", full_disk)
    code, _, err = run(capsys, *PRUNE, "--model", str(tiny_llama_folder), "--out", str(out), "--overwrite",
                       "--sparsity", "0.7")
    assert code == 2 and "No space left on device" in one_line_error(err)
    assert snapshot(out) == first and not leftovers(tmp_path)  # the old run is intact, no debris
    monkeypatch.undo()
    assert run(capsys, *PRUNE, "--model", str(tiny_llama_folder), "--out", str(out), "--overwrite",
               "--sparsity", "0.7")[0] == 0
    assert snapshot(out) != first and not leftovers(tmp_path)


@pytest.mark.parametrize("where", ["same", "inside", "contains"])
def test_output_apart_from_the_inputs(capsys, tiny_llama_folder, tmp_path, where, never_load):
    import shutil

    model = tmp_path / "parent" / "model"
    shutil.copytree(tiny_llama_folder, model)
    out = {"same": model, "inside": model / "pruned", "contains": model.parent}[where]
    before = snapshot(model)
    code, _, err = run(capsys, *PRUNE, "--model", str(model), "--out", str(out), "--overwrite")
    word = {"same": " is the input", "inside": " is inside the input", "contains": " contains the input"}[where]
    assert code == 2 and word in one_line_error(err)
    assert snapshot(model) == before and not (model / "pruned").exists()


def test_ken_refuses_to_write_over_its_finetuned_input(capsys, tmp_path):
    folder = tmp_path / "ft"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    code, _, err = run(capsys, "ken", "--finetuned", str(folder), "--out", str(folder), "--overwrite")
    assert code == 2 and "is the input" in one_line_error(err) and (folder / "config.json").exists()


@pytest.mark.parametrize("mask,folder_mode,file_mode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_outputs_respect_the_umask(capsys, tiny_llama_folder, tmp_path, mask, folder_mode, file_mode):
    previous = os.umask(mask)
    try:
        out = tmp_path / "run"
        assert run(capsys, *PRUNE, "--model", str(tiny_llama_folder), "--out", str(out))[0] == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == folder_mode
    for path in (out / "run.json", out / "model.sparse.safetensors", out / "model" / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == file_mode, path


def test_read_only_location_fails_before_any_work(capsys, tiny_llama_folder, tmp_path, monkeypatch, never_load):
    import kenprune.fileio as fileio

    def read_only(*_a, **_k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fileio.tempfile, "mkstemp", read_only)
    code, _, err = run(capsys, *PRUNE, "--model", str(tiny_llama_folder), "--out", str(tmp_path / "ro" / "run"))
    assert code == 2 and "cannot write to" in one_line_error(err) and "Read-only file system" in err
    assert not (tmp_path / "ro").exists()


@pytest.mark.parametrize("argv,message", [
    (["prune", "--method", "wanda", "--device", "cuda"], "--device cuda"),
    (["prune", "--method", "wanda", "--calib", "hf:wikitext"], "needs the `datasets` package"),
    (["prune", "--method", "wanda", "--nsamples", "100000", "--seqlen", "512"], "lower --nsamples or --seqlen"),
    (["prune", "--method", "wanda", "--sparsity", "1.2"], "[0, 1)"),
    (["prune", "--method", "wanda", "--pattern", "2:x"], "0 < N < M"),
    (["prune", "--method", "wanda", "--sparsity", "0.6", "--allocation", "dsa:nope|mean"], "needs 3 or 4 stages"),
    (["prune", "--method", "wanda", "--allocation", "missing-best.json"], "does not exist"),
    (["structured", "--ratio", "1.5", "--out", "{tmp}/s"], "--ratio must be in [0, 1)"),
    (["structured", "--nsamples", "100000", "--seqlen", "128", "--out", "{tmp}/s"], "lower --nsamples or --seqlen"),
    (["recover", "--steps", "-1", "--out", "{tmp}/r"], "--steps must be >= 1"),
    (["eval", "--seqlen", "1"], "--eval-seqlen must be >= 2"),
])
def test_bad_input_fails_before_the_model_loads(capsys, tiny_llama_folder, tmp_path, argv, message, never_load,
                                                monkeypatch):
    import importlib.util

    if "hf:" in " ".join(argv):  # as on a machine without `datasets` (lm-eval's extra installs it here)
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "datasets"
                            else find_spec(name, *a))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = run(capsys, *argv, "--model", str(tiny_llama_folder))
    assert code == 2 and message in one_line_error(err)
    assert not leftovers(tmp_path) and not (tmp_path / "s").exists() and not (tmp_path / "r").exists()


def test_a_mistyped_local_path_is_named_with_the_closest_match(capsys, tmp_path, monkeypatch):
    (tmp_path / "runs" / "wanda-50").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "eval", "--model", "runs/wanda-5")
    line = one_line_error(err)
    assert code == 2 and "no such model folder: runs/wanda-5" in line and "did you mean runs/wanda-50" in line


def test_an_offline_hub_id_fails_in_seconds_with_a_hint(capsys, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    code, _, err = run(capsys, "eval", "--model", "someorg/some-model")
    line = one_line_error(err)
    assert code == 2 and "give a local folder" in line and time.perf_counter() - start < 10
