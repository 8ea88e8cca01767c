"""`kenprune structured` with the seed list's systems: --importance beta-rank / polarization, --stability,
--steps and --from-scratch, on a tiny Llama folder."""
from __future__ import annotations

import pytest

from kenprune.cli import main
from kenprune.record import read
from tests.cli.test_structured import tiny_folder  # noqa: F401  (fixture)
from tests.ken.conftest import minilm_pair  # noqa: F401  (fixture)
from tests.structured.conftest import smollm2_tokenizer, tiny_loaded  # noqa: F401  (fixtures)

TRAIN = ["--steps", "2", "--train-data", "lee:calib", "--train-seqlen", "16"]
EVAL = ["--eval", "lee:test", "--eval-windows", "2", "--eval-seqlen", "32", "--no-latency"]


def test_beta_rank_with_stability_recovery_and_scratch_side_by_side(tiny_folder, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "beta"
    code = main(["structured", "--model", str(tiny_folder), "--out", str(out), "--importance", "beta-rank",
                 "--beta", "0.8", "--ratio", "0.5", "--calib", "lee:calib", "--nsamples", "3", "--seqlen", "16",
                 "--stability", "2", "--from-scratch", *TRAIN, *EVAL])
    assert code == 0
    printed = capsys.readouterr().out
    assert "selection stability over 2 calibration subsets" in printed and "scratch: perplexity" in printed
    record = read(out)
    d = record.details
    assert d["beta"] == 0.8 and d["stability"]["runs"] == 2
    assert d["recovery"]["steps"] == d["scratch"]["steps"] == 2 and d["recovery"]["data"] == d["scratch"]["data"]
    labels = {q.model: q for q in record.quality}
    assert {"dense", "pruned", "pruned, not recovered", "scratch"} <= set(labels)
    assert record.quality_of("after").value > 0 and labels["scratch"].value > 0
    html = (out / "report.html").read_text()
    assert "selection stability" in html and "scratch" in html


def test_polarization_gates_from_the_command_line(tiny_folder, tmp_path, capsys):  # noqa: F811
    from transformers import AutoModelForCausalLM

    out = tmp_path / "gates"
    code = main(["structured", "--model", str(tiny_folder), "--out", str(out), "--importance", "polarization",
                 "--ratio", "0.5", "--gate-lr", "0.2", *TRAIN, "--no-latency"])
    assert code == 0
    d = read(out).details
    assert d["training"]["kind"] == "gates+LoRA" and "recovery" not in d and d["uniform_widths"]
    assert AutoModelForCausalLM.from_pretrained(out).config.intermediate_size == d["widths_after"][0]["intermediate"]


@pytest.mark.parametrize("argv, message", [
    (["--from-scratch"], "--from-scratch trains; give --steps N"),
    (["--importance", "polarization"], "--importance polarization trains; give --steps N"),
    (["--beta", "1.5"], "--beta must be in [0, 1], got 1.5"),
    (["--stability", "1"], "--stability must be 0 (off) or at least 2 runs"),
])
def test_bad_seed_options_are_one_line(tiny_folder, tmp_path, capsys, argv, message):  # noqa: F811
    out = tmp_path / "never"
    assert main(["structured", "--model", str(tiny_folder), "--out", str(out), "--no-latency", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in err and err.startswith("kenprune: error:")
    assert not out.exists()


@pytest.fixture
def bert_folder(tmp_path):
    from transformers import AutoTokenizer

    from kenprune.models.loading import MODELS, LoadedModel, save_model
    from tests.structured.test_seed_systems import _tiny_bert_classifier

    tokenizer = AutoTokenizer.from_pretrained(MODELS.get("minilm-l6").folder())
    loaded = LoadedModel(model=_tiny_bert_classifier(), tokenizer=tokenizer, name="tiny-bert", source="tiny",
                         task="sequence-classification")
    return save_model(loaded, tmp_path / "bert", {})


def test_beta_rank_prunes_a_bert_classifier_which_reloads(bert_folder, tmp_path):
    import kenprune

    out = tmp_path / "bert-beta"
    code = main(["structured", "--model", str(bert_folder), "--out", str(out), "--importance", "beta-rank",
                 "--ratio", "0.5", "--calib", "lee:calib", "--nsamples", "3", "--seqlen", "16", "--stability", "2"])
    assert code == 0
    d = read(out).details
    assert d["widths_after"][0] == {"heads": 2, "kv_heads": 2, "intermediate": 32} and "latency" not in d
    reloaded = kenprune.load(str(out))
    assert reloaded.task == "sequence-classification" and reloaded.model.config.num_attention_heads == 4
    assert reloaded.model.bert.encoder.layer[1].attention.self.query.out_features == 16


def test_gradient_importance_on_a_classifier_without_labelled_data_is_one_line(bert_folder, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["structured", "--model", str(bert_folder), "--out", str(out), "--importance", "taylor",
                 "--calib", "lee:calib", "--nsamples", "2", "--seqlen", "16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "is a classifier: --calib must be a labelled split" in err and err.startswith("kenprune: error:")
    assert not out.exists()


def test_taylor_recovery_and_scratch_on_a_classifier_report_accuracy(bert_folder, tmp_path, capsys):
    out = tmp_path / "bert-taylor"
    code = main(["structured", "--model", str(bert_folder), "--out", str(out), "--importance", "taylor",
                 "--ratio", "0.5", "--calib", "pang-lee:calib", "--nsamples", "3", "--seqlen", "16",
                 "--steps", "2", "--train-data", "pang-lee:calib", "--train-seqlen", "16", "--from-scratch",
                 "--eval", "pang-lee:test"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "widths (reloads with kenprune.load" in printed and "scratch: accuracy" in printed
    record = read(out)
    d = record.details
    assert d["calibration"]["loss"] == "classification" and d["loader"] == "kenprune"
    assert d["recovery"]["data"] == d["scratch"]["data"] == "pang-lee:calib"
    assert d["recovery"]["steps"] == d["scratch"]["steps"] == 2
    labels = {q.model: q for q in record.quality}
    assert {"dense", "pruned", "pruned, not recovered", "scratch"} <= set(labels)
    assert all(q.metric == "accuracy" and q.data == "pang-lee:test" and 0 <= q.value <= 1 for q in record.quality)
    assert "reloads with kenprune.load only" in (out / "report.html").read_text()


def test_polarization_on_a_fine_tuned_minilm_folder_trains_on_its_own_labelled_split(minilm_pair, tmp_path,
                                                                                    capsys):  # noqa: F811
    """The real model: minilm-l6 fine-tuned on pang-lee (a run folder); --train-data left at its text default,
    so the gates train on the split the folder was fine-tuned on; the pruned folder reloads at its new widths."""
    import kenprune

    folder, _ = minilm_pair
    out = tmp_path / "minilm-gates"
    code = main(["structured", "--model", str(folder), "--out", str(out), "--importance", "polarization",
                 "--ratio", "0.25", "--steps", "2", "--train-seqlen", "32", "--gate-lr", "0.2"])
    assert code == 0
    d = read(out).details
    assert d["training"]["data"] == "pang-lee:calib" and d["block_parameters_removed"] > 0.1
    reloaded = kenprune.load(str(out))
    assert reloaded.task == "sequence-classification"
    assert [w["intermediate"] for w in d["widths_after"]] == \
        [layer.intermediate.dense.out_features for layer in reloaded.model.bert.encoder.layer]


def test_a_head_less_encoder_has_no_loss_to_train_with(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["structured", "--model", "minilm-l6", "--out", str(out), "--importance", "l1", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "minilm-l6 is an encoder model without a loss to score or train with" in err and "kenprune finetune" in err
    assert not out.exists()
