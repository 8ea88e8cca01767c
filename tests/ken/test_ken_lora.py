"""kenprune ken lora: LoRA at the bytes of a KEN subnetwork, on the fine-tune's own data and steps."""
from __future__ import annotations

import json

import pytest

from kenprune.cli import main
from kenprune.errors import KenpruneError
from kenprune.jobs.ken import ken
from kenprune.jobs.ken_lora import ken_lora
from kenprune.settings import Evaluation


@pytest.fixture(scope="module")
def ken_folder(minilm_pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("ken") / "k10"
    ken(str(minilm_pair[0]), k="10%", out=out, evaluation=Evaluation(data=None), progress=False)
    return out


def test_adapter_fits_the_ken_subnetwork_and_trains_on_the_finetune_recipe(minilm_pair, ken_folder, tmp_path):
    folder, ft_record = minilm_pair
    budget = (ken_folder / "subnetwork.safetensors").stat().st_size
    record = ken_lora(str(folder), match=str(ken_folder), out=tmp_path / "lora",
                      evaluation=Evaluation(data="pang-lee:test"), progress=False)
    d = record.details
    assert d["budget_bytes"] == budget and d["adapter_bytes"] <= budget
    assert d["adapter_bytes"] > budget - (d["adapter_values"] // d["rank"]) * 4 - 64 * 1024  # within one rank
    assert d["steps"] == ft_record.details["steps"] and d["finetune"]["data"] == "pang-lee:calib"
    assert set(d["targets"]) == {"query", "key", "value", "dense"}
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").is_file()
    roles = {(q.role, q.model) for q in record.quality}
    assert {("reference", "pre-trained"), ("reference", "fine-tuned")} <= roles and record.quality_of("after")
    assert json.loads((tmp_path / "lora" / "run.json").read_text())["kind"] == "ken-lora"


def test_cli_and_one_line_errors(minilm_pair, ken_folder, tmp_path, capsys):
    folder, _ = minilm_pair
    assert main(["ken", "lora", "--finetuned", str(folder), "--rank", "2",
                 "--out", str(tmp_path / "r2")]) == 0
    out = capsys.readouterr().out
    assert "LoRA rank 2" in out and (tmp_path / "r2" / "report.html").is_file()
    with pytest.raises(KenpruneError, match="exactly one of"):
        ken_lora(str(folder), match=str(ken_folder), rank=2, out=tmp_path / "x", progress=False)
    assert main(["ken", "lora", "--finetuned", str(folder), "--match", str(tmp_path / "r2"),
                 "--out", str(tmp_path / "y")]) == 2
    assert "not a KEN run" in capsys.readouterr().err and not (tmp_path / "y").exists()
    assert main(["ken", "lora", "--finetuned", "minilm-l6", "--rank", "2", "--out", str(tmp_path / "z")]) == 2
    assert not (tmp_path / "z").exists()
