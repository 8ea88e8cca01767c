"""`kenprune prune` streamed: the same files as in memory, which path ran in the record, resume after SIGKILL
bit-identical to an uninterrupted run (subprocesses), one-line errors that leave previous output intact."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys

import pytest

from kenprune.cli import main
from kenprune.engine.checkpoint import KILL_ENV, checkpoint_folder
from kenprune.models.lazy import folder_sha256
from kenprune.record import read
from tests.faults.conftest import leftovers, snapshot

CALIBRATION = ["--nsamples", "6", "--seqlen", "32", "--batch-size", "2"]
EVAL = ["--eval", "lee:test", "--eval-seqlen", "32", "--eval-windows", "3"]


@pytest.fixture(scope="module")
def four_blocks(tmp_path_factory, tiny_llama_folder):
    """tiny_llama_folder's tokenizer (smollm2's) with a 4-block tiny random Llama: room to kill at block k."""
    import shutil

    from kenprune.testing import tiny_causal_lm

    folder = tmp_path_factory.mktemp("four-blocks")
    for path in tiny_llama_folder.iterdir():
        if "token" in path.name or path.suffix == ".jinja":
            shutil.copy(path, folder / path.name)
    vocab = tiny_llama_folder.joinpath("config.json").read_text()
    model = tiny_causal_lm("llama", layers=4, vocab=json.loads(vocab)["vocab_size"])
    model.config.architectures = ["LlamaForCausalLM"]
    model.save_pretrained(folder)
    return folder


def prune_argv(model, out, *extra):
    return ["prune", "--model", str(model), "--method", "sparsegpt", *CALIBRATION, *EVAL, "--out", str(out), *extra]


def run(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def same_output(a, b):
    return ((a / "model.sparse.safetensors").read_bytes() == (b / "model.sparse.safetensors").read_bytes()
            and folder_sha256(a / "model") == folder_sha256(b / "model"))


def test_streamed_run_equals_the_in_memory_run(capsys, four_blocks, tmp_path):
    assert run(capsys, *prune_argv(four_blocks, tmp_path / "mem", "--stream", "off"))[0] == 0
    assert run(capsys, *prune_argv(four_blocks, tmp_path / "str", "--stream", "on"))[0] == 0
    assert same_output(tmp_path / "mem", tmp_path / "str")
    mem, streamed = read(tmp_path / "mem"), read(tmp_path / "str")
    assert mem.details["memory"]["path"] == "in-memory" and streamed.details["memory"]["path"] == "streamed"
    assert [q.value for q in mem.quality] == [q.value for q in streamed.quality]
    assert mem.layers == streamed.layers and mem.details["overall"] == streamed.details["overall"]
    assert mem.model["weights_sha256"] == streamed.model["weights_sha256"]
    assert mem.details["weights_sha256"] == streamed.details["weights_sha256"] == folder_sha256(tmp_path / "str" / "model")
    assert mem.details["weights_sha256"] != mem.model["weights_sha256"]  # the pruned weights, not the input's
    assert all(stage.peak_rss_bytes for stage in streamed.stages)  # the peak per stage
    from kenprune.report.runs import read_run

    assert read_run(tmp_path / "str").summary["memory path"].startswith("streamed block by block (--stream on)")
    assert "memory path" not in read_run(tmp_path / "mem").summary
    index = json.loads((tmp_path / "str" / "model" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 5  # one shard per block + the rest
    assert not checkpoint_folder(tmp_path / "str").exists() and not leftovers(tmp_path)


def test_auto_streams_when_the_model_exceeds_max_memory(capsys, four_blocks, tmp_path):
    assert main(["prune", "--model", str(four_blocks), "--method", "magnitude", "--no-eval",
                 "--max-memory", "100MB", "--out", str(tmp_path / "small")]) == 0
    assert "streamed block by block from safetensors (auto: the in-memory estimate" in capsys.readouterr().out
    assert run(capsys, "prune", "--model", str(four_blocks), "--method", "magnitude", "--no-eval",
               "--max-memory", "64GB", "--out", str(tmp_path / "big"))[0] == 0
    small, big = read(tmp_path / "small").details["memory"], read(tmp_path / "big").details["memory"]
    assert small["path"] == "streamed" and "exceeds" in small["reason"] and small["budget_bytes"] == 10**8
    assert big["path"] == "in-memory" and "fits" in big["reason"]
    assert same_output(tmp_path / "small", tmp_path / "big")


@pytest.mark.parametrize("method,allocation", [("wanda", "owl"), ("sparsegpt", "global"), ("magnitude", "global"),
                                               ("wanda", "dsa:abslog|mean|noop|noop")])
def test_an_allocation_that_needs_scores_streams_and_equals_in_memory(capsys, four_blocks, tmp_path, method,
                                                                      allocation):
    argv = ["prune", "--model", str(four_blocks), "--method", method, "--allocation", allocation, "--sparsity", "0.6",
            *CALIBRATION, "--no-eval"]
    code, err = run(capsys, *argv, "--out", str(tmp_path / "mem"), "--stream", "off")
    assert code == 0, err
    assert run(capsys, *argv, "--out", str(tmp_path / "str"), "--stream", "on", "--max-memory", "1MB")[0] == 0
    assert same_output(tmp_path / "mem", tmp_path / "str")
    mem, streamed = read(tmp_path / "mem"), read(tmp_path / "str")
    assert mem.details["allocation"] == streamed.details["allocation"]
    assert len(set(mem.details["allocation"]["ratios"].values())) > 1  # the allocation is not uniform
    assert streamed.details["memory"]["scoring_pass"].startswith("streamed, scores in files")
    assert streamed.details["memory"]["scores_file_bytes"] == 4 * sum(x.parameters for x in streamed.layers)
    assert not checkpoint_folder(tmp_path / "str").exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_federated_rounds_stream_and_equal_in_memory(capsys, four_blocks, tmp_path, method):
    argv = ["prune", "--model", str(four_blocks), "--method", method, "--clients", "wiki,lee", *CALIBRATION,
            "--no-eval"]
    assert run(capsys, *argv, "--out", str(tmp_path / "mem"), "--stream", "off")[0] == 0
    assert run(capsys, *argv, "--out", str(tmp_path / "str"), "--stream", "on", "--max-memory", "1MB")[0] == 0
    assert same_output(tmp_path / "mem", tmp_path / "str")
    mem, streamed = read(tmp_path / "mem"), read(tmp_path / "str")
    assert streamed.details["memory"]["path"] == "streamed"
    assert mem.details["federated"]["agreement"] == streamed.details["federated"]["agreement"]
    assert mem.details["federated"]["clients"] == streamed.details["federated"]["clients"]
    assert not checkpoint_folder(tmp_path / "str").exists() and not leftovers(tmp_path)


def test_statistics_files_prune_streamed_like_in_memory(capsys, four_blocks, tmp_path):
    for client, data in (("a", "wiki:calib"), ("b", "lee:calib")):
        assert run(capsys, "stats", "export", "--model", str(four_blocks), "--method", "wanda", "--calib", data,
                   *CALIBRATION, "--out", str(tmp_path / client))[0] == 0
    argv = ["prune", "--model", str(four_blocks), "--method", "wanda", "--stats", str(tmp_path / "a"),
            str(tmp_path / "b"), "--no-eval"]
    assert run(capsys, *argv, "--out", str(tmp_path / "mem"), "--stream", "off")[0] == 0
    assert run(capsys, *argv, "--out", str(tmp_path / "str"), "--stream", "on")[0] == 0
    assert same_output(tmp_path / "mem", tmp_path / "str")
    assert read(tmp_path / "str").details["federated"]["mode"] == "dense"


@pytest.mark.parametrize("argv,words", [
    (["--max-memory", "lots"], "is not a size"),
    (["--stream", "on", "--clients", "wiki,lee", "--workers", "2"], "runs its clients in this process"),
])
def test_bad_streaming_requests_are_one_line(capsys, four_blocks, tmp_path, argv, words):
    code, err = run(capsys, *prune_argv(four_blocks, tmp_path / "x", *argv))
    assert code == 2 and words in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def start(argv, **env):
    return subprocess.run([sys.executable, "-m", "kenprune", *argv], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **env})


def test_sigkill_at_block_k_then_the_same_command_resumes_bit_identical(four_blocks, tmp_path):
    reference = start(prune_argv(four_blocks, tmp_path / "whole", "--stream", "on"))
    assert reference.returncode == 0, reference.stderr[-2000:]
    argv = prune_argv(four_blocks, tmp_path / "run", "--stream", "on")
    killed = start(argv, **{KILL_ENV: "1"})
    assert killed.returncode == -signal.SIGKILL
    checkpoint = checkpoint_folder(tmp_path / "run")
    assert json.loads((checkpoint / "state.json").read_text())["next_block"] == 2
    assert not (tmp_path / "run").exists()
    resumed = start(argv)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read(tmp_path / "run").details["memory"]["resumed_from_block"] == 2
    assert same_output(tmp_path / "run", tmp_path / "whole")
    assert [q.value for q in read(tmp_path / "run").quality] == [q.value for q in read(tmp_path / "whole").quality]
    assert not checkpoint.exists() and not leftovers(tmp_path)


def test_a_checkpoint_of_other_settings_is_refused_unless_overwrite(capsys, four_blocks, tmp_path):
    killed = start(prune_argv(four_blocks, tmp_path / "run", "--stream", "on"), **{KILL_ENV: "0"})
    assert killed.returncode == -signal.SIGKILL
    other = prune_argv(four_blocks, tmp_path / "run", "--stream", "on", "--sparsity", "0.6")
    code, err = run(capsys, *other)
    assert code == 2 and "checkpoint of another run" in err.splitlines()[-1]
    assert run(capsys, *other, "--overwrite")[0] == 0  # starts afresh
    assert read(tmp_path / "run").details["memory"]["resumed_from_block"] == 0
    assert not checkpoint_folder(tmp_path / "run").exists()


@pytest.mark.parametrize("error", [errno.EROFS, errno.ENOSPC])
def test_an_unwritable_or_full_output_is_one_line_and_the_previous_output_stays(capsys, four_blocks, tmp_path,
                                                                               monkeypatch, error):
    out = tmp_path / "run"
    assert run(capsys, *prune_argv(four_blocks, out, "--stream", "on"))[0] == 0
    before = snapshot(out)
    import kenprune.engine.checkpoint as checkpoint

    def fail(path, *_a, **_k):
        raise OSError(error, os.strerror(error), str(path))

    monkeypatch.setattr(checkpoint, "write_safetensors", fail)
    code, err = run(capsys, *prune_argv(four_blocks, out, "--stream", "on", "--overwrite", "--sparsity", "0.7"))
    last = err.splitlines()[-1]
    assert code == 2 and last.startswith("kenprune: error: ") and os.strerror(error) in last
    assert "Traceback" not in err and snapshot(out) == before and not leftovers(tmp_path)


def test_a_read_only_output_location_is_refused_before_any_work(capsys, four_blocks, tmp_path, monkeypatch):
    import kenprune.jobs.common as common

    def read_only(folder):
        raise OSError(errno.EROFS, "Read-only file system", str(folder))

    monkeypatch.setattr(common, "check_writable", read_only)
    code, err = run(capsys, *prune_argv(four_blocks, tmp_path / "run", "--stream", "on"))
    assert code == 2 and "cannot write to" in err.splitlines()[-1] and "Read-only file system" in err
    assert not (tmp_path / "run").exists() and not checkpoint_folder(tmp_path / "run").exists()


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_a_streamed_prune_on_cuda_agrees_with_the_streamed_cpu_run(capsys, four_blocks, tmp_path, method):
    """One block on the GPU at a time: the masks match the CPU run up to float ties."""
    from safetensors.torch import load_file

    argv = ["prune", "--model", str(four_blocks), "--method", method, *CALIBRATION, "--no-eval", "--stream", "on"]
    assert run(capsys, *argv, "--device", "cpu", "--out", str(tmp_path / "cpu"))[0] == 0
    assert run(capsys, *argv, "--device", "cuda", "--out", str(tmp_path / "gpu"))[0] == 0
    cpu, gpu = ({k: v for f in sorted((tmp_path / p / "model").glob("*.safetensors")) for k, v in load_file(f).items()}
                for p in ("cpu", "gpu"))
    assert cpu.keys() == gpu.keys()
    for name in cpu:
        agree = float(((cpu[name] == 0) == (gpu[name] == 0)).float().mean())
        assert agree > 0.98, f"{name}: masks agree on only {agree:.3f}"
    assert read(tmp_path / "gpu").details["memory"]["path"] == "streamed"
