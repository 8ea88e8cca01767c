"""kenprune ken / ken apply end to end on a real fine-tuned minilm-l6 pair."""
from __future__ import annotations

import json

import pytest

from kenprune.cli import main
from kenprune.errors import KenpruneError
from kenprune.jobs.ken import apply as ken_apply
from kenprune.jobs.ken import ken
from kenprune.settings import Evaluation


@pytest.fixture(scope="module")
def ken_run(minilm_pair, tmp_path_factory):
    folder, _ = minilm_pair
    out = tmp_path_factory.mktemp("ken") / "k25"
    return out, ken(str(folder), k="25%", out=out, evaluation=Evaluation(data="pang-lee:test"), progress=False)


def test_summary_and_files(ken_run, minilm_pair):
    out, record = ken_run
    res = record.details
    saved = json.loads((out / "run.json").read_text())
    assert (out / "subnetwork.safetensors").is_file() and saved["kind"] == "ken" and saved["details"]["k"] == res["k"]
    assert record.file("subnetwork").bytes == res["sizes"]["subnetwork_bytes"]
    assert res["pretrained"]["weights_sha256"] == minilm_pair[1].model["weights_sha256"]  # initial/ is the base
    assert res["totals"]["kept_fraction_of_selected"] == pytest.approx(0.25, abs=1e-3)
    assert res["tensors"]["bert.encoder.layer.0.attention.self.query.weight"]["k_per_row"] == 96
    assert 0 < res["sizes"]["subnetwork_bytes"] < 0.35 * res["sizes"]["finetuned_safetensors_bytes"]
    after = record.quality_of("after")
    assert after.metric == "accuracy" and 0 <= after.value <= 1
    assert res["clipped_tensors"] == []


def test_apply_rebuilds_bit_identical(ken_run, minilm_pair, tmp_path):
    from kenprune.models.loading import load_model

    out, record = ken_run
    res = record.details
    rebuilt = ken_apply(str(minilm_pair[0] / "initial"), out / "subnetwork.safetensors", tmp_path / "m",
                        progress=False)
    assert rebuilt.details["optimized_sha256"] == res["optimized_sha256"]
    assert rebuilt.kind == "ken-apply" and (tmp_path / "m" / "run.json").is_file()
    model = load_model(str(tmp_path / "m"))
    assert model.weights_sha256() == res["optimized_sha256"]
    # every entry is either the fine-tuned or the pre-trained value, exactly 25% fine-tuned per row
    ft = load_model(str(minilm_pair[0])).model.state_dict()
    pre = load_model(str(minilm_pair[0] / "initial")).model.state_dict()
    w, f, p = (m["bert.encoder.layer.2.intermediate.dense.weight"] for m in (model.model.state_dict(), ft, pre))
    from_ft = (w == f) & (f != p)
    assert ((w == f) | (w == p)).all() and (from_ft.sum(dim=1) <= 96).all()


def test_wrong_base_is_refused_naming_both(ken_run, tmp_path):
    out, _ = ken_run
    with pytest.raises(KenpruneError, match=r"minilm-l6 \(weights sha256 .*is not the model.*initial"):
        ken_apply("minilm-l6", out / "subnetwork.safetensors", tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


def test_headless_base_and_bad_k_write_nothing(minilm_pair, tmp_path, capsys):
    folder, _ = minilm_pair
    with pytest.raises(KenpruneError, match="initial"):
        ken(str(folder), pretrained="minilm-l6", k=0.25, out=tmp_path / "a", progress=False)
    assert main(["ken", "--finetuned", str(folder), "--k", "1.5", "--out", str(tmp_path / "b")]) == 2
    assert "(0, 1]" in capsys.readouterr().err
    assert main(["ken", "--finetuned", str(folder), "--k", "zero", "--out", str(tmp_path / "c")]) == 2
    assert not any(tmp_path.iterdir())


def test_blocks_only_copies_the_rest_and_clips_k(minilm_pair, tmp_path):
    folder, _ = minilm_pair
    res = ken(str(folder), k=500, out=tmp_path / "b", tensors="blocks", value_dtype="fp16",
              exclude=["*LayerNorm*"], progress=False).details
    names = set(res["tensors"])
    assert all(".layer." in n and "LayerNorm" not in n for n in names)
    assert "bert.encoder.layer.0.attention.self.query.bias" in res["clipped_tensors"]  # 384 < 500
    assert res["totals"]["copied_whole"] > 0  # the classifier head changed and is stored whole


def test_cli_ken_and_apply(ken_run, minilm_pair, tmp_path, capsys):
    out, record = ken_run
    res = record.details
    code = main(["ken", "apply", "--base", str(minilm_pair[0] / "initial"), "--subnetwork",
                 str(out / "subnetwork.safetensors"), "--out", str(tmp_path / "cli")])
    assert code == 0 and res["optimized_sha256"][:12] in capsys.readouterr().out


def test_a_base_with_the_same_weights_but_other_labels_is_refused(ken_run, minilm_pair, tmp_path, capsys):
    """Another fine-tune's initial/ can hold identical weights; its label names (config) still tell it apart."""
    import shutil

    out, _ = ken_run
    other = tmp_path / "other-initial"
    shutil.copytree(minilm_pair[0] / "initial", other)
    config = json.loads((other / "config.json").read_text())
    config["id2label"] = {"0": "atheism", "1": "space"}
    config["label2id"] = {"atheism": 0, "space": 1}
    (other / "config.json").write_text(json.dumps(config))
    code = main(["ken", "apply", "--base", str(other), "--subnetwork", str(out / "subnetwork.safetensors"),
                 "--out", str(tmp_path / "rebuilt")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "label names ['atheism', 'space']" in err and "['neg', 'pos']" in err
    assert not (tmp_path / "rebuilt").exists()
