"""kenprune finetune: a real training loop that records its base, data, steps, seed and metrics."""
from __future__ import annotations

import json

import pytest
import torch

from kenprune.errors import KenpruneError


def test_classifier_record_and_initial(minilm_pair):
    from kenprune.models.loading import load_model

    folder, record = minilm_pair
    saved = json.loads((folder / "run.json").read_text())
    d = saved["details"]
    assert saved["kind"] == "finetune" and d["steps"] == 3 and d["seed"] == 0 and d["initial"] == "initial"
    assert saved["model"]["name"] == "minilm-l6" and len(saved["model"]["weights_sha256"]) == 64
    after = record.quality_of("after")
    assert after.metric == "accuracy" and after.data == "pang-lee:test" and d["data"]["heldout"] == "pang-lee:test"
    assert len(d["loss"]["curve"]) == 3 and record.file("initial") is not None
    note = json.loads((folder / "kenprune.json").read_text())  # the model folder's own note, read by `ken`
    assert note["initial"] == "initial" and note["base"]["weights_sha256"] == saved["model"]["weights_sha256"]
    initial, tuned = load_model(str(folder / "initial")), load_model(str(folder))
    assert initial.weights_sha256() == record.model["weights_sha256"]
    w0 = initial.model.state_dict()["classifier.weight"]
    assert not torch.equal(w0, tuned.model.state_dict()["classifier.weight"])  # it trained


def test_causal_lm_adaptation(smollm2, tmp_path):
    import copy

    from kenprune.jobs.finetune import finetune

    from kenprune.settings import Evaluation

    record = finetune(copy.deepcopy(smollm2), "lee", out=tmp_path / "lm", steps=1, batch_size=1, seqlen=16,
                      evaluation=Evaluation(seqlen=64, windows=1), progress=False)
    assert record.details["task"] == "causal-lm" and record.details["initial"] is None
    before, after = record.quality_of("before"), record.quality_of("after")
    assert before.metric == "perplexity" and after.data == "lee:test" and after.protocol["seqlen"] == 64
    assert (tmp_path / "lm" / "model.safetensors").is_file()


def test_bad_inputs(tmp_path):
    from kenprune.jobs.finetune import finetune

    with pytest.raises(KenpruneError, match="causal LM"):
        finetune("minilm-l6", "lee", out=tmp_path / "x", steps=1, progress=False)
    with pytest.raises(KenpruneError, match="steps"):
        finetune("minilm-l6", "pang-lee", out=tmp_path / "y", steps=0, progress=False)
    assert not (tmp_path / "x").exists()
