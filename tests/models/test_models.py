import json
import shutil

import pytest
import torch

from kenprune import provenance
from kenprune.models import loading as models
from kenprune.models.loading import MODELS, load_model, resolve_model, verify_manifest
from kenprune.errors import KenpruneError


def test_registry_names_resolve_to_real_folders(smollm2):
    name, folder, spec = resolve_model("smollm2-135m")
    assert name == "smollm2-135m" and spec is MODELS.get("smollm2-135m")
    assert folder == smollm2.source
    # the cache key holds the GGUF's hash AND the transformers version
    assert f"transformers-{provenance.package_version('transformers')}" in folder
    manifest = json.loads((models.Path(folder) / models.MANIFEST_FILE).read_text())
    assert manifest["transformers"] == provenance.package_version("transformers")
    assert manifest["gguf_sha256"].startswith(models.Path(folder).name.split("-")[0])


def test_default_model_is_the_real_smollm2(smollm2):
    config = smollm2.model.config
    assert type(smollm2.model).__name__ == "LlamaForCausalLM"
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.num_key_value_heads, config.intermediate_size) == (30, 576, 9, 3, 1536)
    assert sum(p.numel() for p in smollm2.model.parameters()) == 134_515_008


def test_known_sentence_tokenizes_with_byte_level_spaces(smollm2):
    # the transformers-version trap: a broken tokenizer loses the 'Ġ' space markers
    assert smollm2.tokenizer.tokenize("The cat is a political animal") == [
        "The", "Ġcat", "Ġis", "Ġa", "Ġpolitical", "Ġanimal"]


def test_second_load_hits_the_cache_without_converting(smollm2, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("converted again although the cache is valid")

    monkeypatch.setattr(models, "_convert_gguf", fail)
    name, folder, _ = resolve_model("smollm2-135m")
    assert folder == smollm2.source


def test_corrupted_cache_file_is_detected_and_rebuilt(smollm2, tmp_path, monkeypatch):
    cached = models.Path(smollm2.source)
    monkeypatch.setenv("KENPRUNE_CACHE", str(tmp_path))
    copy = tmp_path / cached.relative_to(cached.parents[2])
    shutil.copytree(cached, copy)
    assert verify_manifest(copy) is None
    weights = copy / "model.safetensors"
    with open(weights, "r+b") as fh:  # flip one byte inside the tensor data
        fh.seek(weights.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert "sha256" in verify_manifest(copy)
    _, folder, _ = resolve_model("smollm2-135m")  # rebuilds from the GGUF
    assert folder == str(copy) and verify_manifest(copy) is None
    rebuilt = load_model(folder).model.state_dict()
    original = smollm2.model.state_dict()
    assert all(torch.equal(rebuilt[k], original[k]) for k in original)


def test_minilm_loads_as_encoder_and_as_classifier(minilm):
    assert minilm.task == "encoder" and type(minilm.model).__name__ == "BertModel"
    clf = load_model("minilm-l6", task="sequence-classification", labels=["neg", "pos"])
    assert clf.model.config.label2id == {"neg": 0, "pos": 1}
    assert torch.equal(clf.model.bert.embeddings.word_embeddings.weight,
                       minilm.model.embeddings.word_embeddings.weight)


def test_bad_model_names_and_paths(tmp_path, monkeypatch):
    with pytest.raises(KenpruneError, match="unknown model 'nosuch'"):
        resolve_model("nosuch")
    with pytest.raises(KenpruneError, match="no such model folder: .*missing"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(KenpruneError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(KenpruneError, match="HF_HUB_OFFLINE is set; give a local folder"):
        resolve_model("someorg/some-model")  # offline here, and not in the hub cache
    monkeypatch.setattr(models, "check_hub_reachable", lambda hub_id: None)
    assert resolve_model("someorg/some-model")[1] == "someorg/some-model"  # a hub id, for users online


def test_identity_records_the_weights_hash(smollm2):
    ident = smollm2.identity()
    assert ident["name"] == "smollm2-135m"
    assert ident["weights_sha256"] == provenance.model_sha256(smollm2.model)
    assert len(ident["weights_sha256"]) == 64


def test_tokenizer_is_released_for_a_block_and_loaded_again(smollm2):
    text = "Kernel density estimation, 2:4 sparsity and Wanda."
    before = smollm2.tokenizer(text)["input_ids"]
    with smollm2.tokenizer_released():
        assert smollm2.tokenizer is None
    assert smollm2.tokenizer(text)["input_ids"] == before
