"""kenprune finetune: a real training loop that records its base, data, steps, seed and metrics."""
from __future__ import annotations

import json

import pytest
import torch

from kenprune.errors import KenpruneError


def test_classifier_record_and_initial(minilm_pair):
    from kenprune.models.loading import load_model

    folder, record = minilm_pair
    saved = json.loads((folder / "kenprune.json").read_text())
    assert saved["steps"] == 3 and saved["seed"] == 0 and saved["initial"] == "initial"
    assert saved["base"]["name"] == "minilm-l6" and len(saved["base"]["weights_sha256"]) == 64
    assert saved["metrics"]["after"]["metric"] == "accuracy" and saved["data"]["heldout"] == "pang-lee:test"
    assert len(saved["loss"]["curve"]) == 3
    initial, tuned = load_model(str(folder / "initial")), load_model(str(folder))
    assert initial.weights_sha256() == record["base"]["weights_sha256"]
    w0 = initial.model.state_dict()["classifier.weight"]
    assert not torch.equal(w0, tuned.model.state_dict()["classifier.weight"])  # it trained


def test_causal_lm_adaptation(smollm2, tmp_path):
    import copy

    from kenprune.jobs.finetune import finetune

    record = finetune(copy.deepcopy(smollm2), "lee", out=tmp_path / "lm", steps=1, batch_size=1, seqlen=16,
                      eval_windows=1, progress=False)
    assert record["task"] == "causal-lm" and record["initial"] is None
    assert record["metrics"]["before"]["metric"] == "perplexity" and record["metrics"]["after"]["data"] == "lee:test"
    assert (tmp_path / "lm" / "model.safetensors").is_file()


def test_bad_inputs(tmp_path):
    from kenprune.jobs.finetune import finetune

    with pytest.raises(KenpruneError, match="causal LM"):
        finetune("minilm-l6", "lee", out=tmp_path / "x", steps=1, progress=False)
    with pytest.raises(KenpruneError, match="steps"):
        finetune("minilm-l6", "pang-lee", out=tmp_path / "y", steps=0, progress=False)
    assert not (tmp_path / "x").exists()
