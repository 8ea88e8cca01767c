"""Streamed and in-memory pruning give the same weights and the same sparse file, for every engine method,
on tiny Llama, GPT-2 and OPT folders; activations spilled to disk change nothing; perplexity streamed
block by block equals the in-memory one."""
from __future__ import annotations

import torch
import pytest

from kenprune.engine.checkpoint import BlockSink
from kenprune.engine.elementwise import prune_model
from kenprune.engine.streaming import PruneStream, parse_size, plan, spill, streamed_window_nll
from kenprune.errors import KenpruneError
from kenprune.evaluate.language_model import window_nll
from kenprune.formats.sparse import save_sparse
from kenprune.models.lazy import LazyModel, folder_sha256
from kenprune.provenance import model_sha256
from kenprune.testing import random_windows, tiny_causal_lm


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for arch in ("llama", "gpt2", "opt"):
        model = tiny_causal_lm(arch, layers=3, hidden=64)
        model.config.architectures = [type(model).__name__]
        folder = tmp_path_factory.mktemp(arch)
        model.save_pretrained(folder)
        out[arch] = folder
    return out


def in_memory(folder):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def streamed_prune(folder, work, *, budget=1 << 62, nm=None, **options):
    lazy = LazyModel.open(folder, tokenizer=False)
    sink = BlockSink(lazy, work / "ckpt", "test", nm=nm)
    stream = PruneStream(lazy, sink, activation_budget=budget, spill_dir=work / "spill")
    windows = options.pop("windows", None)
    inputs = stream.capture(windows, 2) if windows is not None else None
    report = prune_model(lazy.model, inputs, stream=stream, progress=False, **options)
    summary = sink.assemble(work / "model", work / "sparse.safetensors", None, {})
    return report, summary, stream


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])
@pytest.mark.parametrize("method,pattern", [("magnitude", None), ("wanda", None), ("sparsegpt", None),
                                            ("wanda", "2:4")])
def test_streamed_equals_in_memory_weights_and_sparse_file(folders, tmp_path, arch, method, pattern):
    windows = random_windows(6, 16)
    model = in_memory(folders[arch])
    expected = prune_model(model, windows if method != "magnitude" else None, method=method, pattern=pattern,
                           batch_size=2, progress=False)
    nm = (2, 4) if pattern else None
    save_sparse(model, tmp_path / "memory.safetensors", nm=nm)
    report, _, _ = streamed_prune(folders[arch], tmp_path, nm=nm, method=method, pattern=pattern,
                                  windows=windows if method != "magnitude" else None)
    assert folder_sha256(tmp_path / "model") == model_sha256(model)
    assert (tmp_path / "sparse.safetensors").read_bytes() == (tmp_path / "memory.safetensors").read_bytes()
    assert report["layers"] == expected["layers"] and report["overall"] == expected["overall"]
    assert in_memory(tmp_path / "model").state_dict().keys() == model.state_dict().keys()


def test_spilled_activations_give_the_same_weights(folders, tmp_path):
    windows = random_windows(6, 16)
    _, _, kept = streamed_prune(folders["llama"], tmp_path / "a", method="sparsegpt", windows=windows)
    _, _, spilled = streamed_prune(folders["llama"], tmp_path / "b", budget=0, method="sparsegpt", windows=windows)
    assert kept.spilled_bytes == 0 and spilled.spilled_bytes == spilled.activation_bytes > 0
    assert folder_sha256(tmp_path / "a" / "model") == folder_sha256(tmp_path / "b" / "model")
    assert list((tmp_path / "b" / "spill").iterdir())


def test_include_embeddings_streamed_equals_in_memory(folders, tmp_path):
    windows = random_windows(4, 16)
    model = in_memory(folders["opt"])
    prune_model(model, windows, method="wanda", include_embeddings=True, batch_size=2, progress=False)
    streamed_prune(folders["opt"], tmp_path, method="wanda", include_embeddings=True, windows=windows)
    assert folder_sha256(tmp_path / "model") == model_sha256(model)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])
def test_streamed_perplexity_equals_in_memory(folders, arch):
    windows = random_windows(5, 24)
    model = in_memory(folders[arch])
    with torch.no_grad():
        expected = torch.cat([window_nll(model, windows[i:i + 2]) for i in range(0, 5, 2)])
    got = streamed_window_nll(LazyModel.open(folders[arch], tokenizer=False), windows, batch_size=2, progress=False)
    assert torch.equal(got, expected)


def test_sizes_and_the_plan():
    assert parse_size("600MB") == 600_000_000 and parse_size("1.5GiB") == 3 << 29 and parse_size("4g") == 4 * 10**9
    for bad in ("lots", "-1GB", "0", "5 parsecs"):
        with pytest.raises(KenpruneError, match="max-memory"):
            parse_size(bad)
    assert plan(10 << 30, [1 << 28] * 30, "4GB")["path"] == "streamed"
    assert plan(10 << 20, [1 << 18] * 30, "4GB")["path"] == "in-memory"
    assert plan(10 << 20, [1 << 18] * 30, "4GB", "on")["path"] == "streamed"
    small = plan(10 << 30, [1 << 28] * 30, "1GB", "off")
    assert small["path"] == "in-memory" and small["activation_budget_bytes"] == 0


def test_spill_writes_beyond_the_budget_to_files(tmp_path):
    hidden = [torch.randn(2, 8, 4) for _ in range(3)]
    out, spilled = spill([h.clone() for h in hidden], 2 * 2 * 8 * 4 * 4, tmp_path)
    assert spilled == 2 * 8 * 4 * 4 and len(list(tmp_path.iterdir())) == 1
    assert all(torch.equal(a, b) for a, b in zip(out, hidden))
    out[2].add_(1)  # written in place, through to the file
    assert torch.equal(torch.from_file(str(tmp_path / "hidden-00002.bin"), size=64, dtype=torch.float32).view(2, 8, 4),
                       hidden[2] + 1)


def test_a_truncated_shard_is_refused_naming_it(folders, tmp_path):
    model = in_memory(folders["llama"])
    model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    shards = sorted((tmp_path / "sharded").glob("model-*.safetensors"))
    assert len(shards) > 1
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(KenpruneError, match=shards[1].name) as info:
        LazyModel.open(tmp_path / "sharded", tokenizer=False)
    assert "\n" not in str(info.value)


def test_a_file_that_cannot_be_mapped_for_lack_of_memory_is_not_called_truncated(folders, monkeypatch):
    import safetensors

    from kenprune.formats.stream import open_safetensors

    def no_memory(path, **_kwargs):
        raise RuntimeError(f"unable to mmap 538090408 bytes from file <{path}>: Cannot allocate memory (12)")

    monkeypatch.setattr(safetensors, "safe_open", no_memory)
    with pytest.raises(KenpruneError, match="not enough memory to map") as info:
        with open_safetensors(folders["llama"] / "model.safetensors"):
            pass
    assert "truncated" not in str(info.value) and "--stream on" in str(info.value)
