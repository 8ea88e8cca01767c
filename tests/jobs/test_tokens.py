"""`kenprune tokens` end to end on minilm-l6 (small sizes): the record, the report, one-line errors."""
from __future__ import annotations

import json

import pytest

from kenprune.cli import main
from kenprune.record import read


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _small(capsys, out, *argv):
    """`kenprune tokens` on minilm-l6 at small sizes (8 texts of at most 48 tokens, batch 4)."""
    return _run(capsys, "tokens", "--model", "minilm-l6", *argv, "--texts", "8", "--seqlen", "48", "--batch-size",
                "4", "--out", str(out))


def test_tokens_writes_a_record_and_a_report(capsys, tmp_path, minilm):
    out = tmp_path / "zt"
    code, stdout, err = _small(capsys, out, "--method", "zero-tprune", "--keep", "0.5", "--latency-repeats", "2",
                               "--examples", "2")
    assert code == 0, err
    assert "cosine to dense" in stdout and "FLOPs" in stdout
    record = read(out)
    assert record.kind == "tokens" and record.method == "zero-tprune"
    d = record.details
    assert d["schedule"] == pytest.approx({"1": 0.5 ** (1 / 3), "2": 0.5 ** (2 / 3), "3": 0.5})
    counts = [x["tokens_out"] for x in d["tokens_per_layer"]]
    assert counts == sorted(counts, reverse=True) and counts[-1] < counts[0]
    assert d["flops"]["ratio"] < 1 and 0 < record.quality_of("after").value <= 1
    assert len(d["examples"]) == 2
    ex = d["examples"][0]
    assert len(ex["survivors"]) == 6 and 0 in ex["survivors"][-1] and len(ex["tokens"]) - 1 in ex["survivors"][-1]
    assert len(d["latency"]["dense"]["seconds_all"]) == 2 and d["latency"]["loadavg"]["before"]
    assert _run(capsys, "report", str(out))[0] == 0
    html = (out / "report.html").read_text()
    assert "Tokens of one input (columns) still present after each layer" in html and "FLOPs vs dense" in html


def test_tokens_on_a_finetuned_classifier_reports_accuracy(capsys, tmp_path, minilm):
    ft = tmp_path / "ft"
    from kenprune.jobs.finetune import finetune

    finetune("minilm-l6", "pang-lee", out=ft, steps=2, progress=False)
    out = tmp_path / "tk"
    code, stdout, err = _run(capsys, "tokens", "--model", str(ft), "--method", "tome", "--keep", "0.6", "--data",
                             "pang-lee:test", "--texts", "8", "--latency-repeats", "1", "--examples", "1",
                             "--out", str(out))
    assert code == 0, err
    record = read(out)
    assert record.quality_of("after").metric == "accuracy" and record.details["options"]["wpr_start"] == "cls"


def test_tokens_with_a_flops_target_records_target_schedule_and_achieved(capsys, tmp_path, minilm):
    from kenprune.tokens.schedule import flops_schedule, lowest_flops_ratio

    out = tmp_path / "fl"
    code, stdout, err = _small(capsys, out, "--method", "truncate", "--flops", "0.7", "--latency-repeats", "1",
                               "--examples", "1")
    assert code == 0, err
    assert "FLOPs target 0.7: achieved" in stdout
    d = read(out).details
    t = d["flops_target"]
    config = minilm.model.config
    rho, schedule = flops_schedule(0.7, 6, 48, config.hidden_size, config.intermediate_size, 2)
    assert t["target"] == 0.7 and t["seqlen"] == 48 and t["rho_at_seqlen"] == pytest.approx(rho)
    assert t["schedule_at_seqlen"] == pytest.approx({str(k): v for k, v in schedule.items()}) == d["schedule"]
    assert t["model_ratio_at_seqlen"] == pytest.approx(0.7, abs=1e-6)
    # achieved: from each text's own token counts; at least the target (counts round up), at most one token per
    # pruning layer above it for each text (bound of tests/tokens/test_schedule.py), weighted by its dense FLOPs
    from kenprune.data.corpora import load_documents
    from kenprune.tokens.measure import paragraphs
    from tests.tokens.test_schedule import encoder_cost, one_token_tolerance

    h, m = config.hidden_size, config.intermediate_size
    texts = paragraphs(load_documents("wiki:test"))[:8]
    lengths = [len(ids) for ids in minilm.tokenizer(texts, truncation=True, max_length=48)["input_ids"]]
    dense = [encoder_cost([(n, n)] * 6, h, m) for n in lengths]
    bound = sum(c * (0.7 + one_token_tolerance(6, n, h, m)) for c, n in zip(dense, lengths)) / sum(dense)
    assert not t["lengths_out_of_reach"]
    assert 0.7 - 1e-9 <= t["achieved"] <= bound
    same = tmp_path / "same"  # the schedule form says the same
    assert _small(capsys, same, "--method", "truncate", "--schedule", "flops:0.7", "--latency-repeats", "1",
                  "--examples", "0")[0] == 0
    assert read(same).details["flops_target"]["achieved"] == t["achieved"]
    assert t["achieved"] == pytest.approx(d["flops"]["ratio"], abs=0.02)  # the mean-count estimate is close
    # every measured length reaches 0.7 unless listed; listed ones are those whose floor lies above it
    assert all(lowest_flops_ratio(6, n, config.hidden_size, config.intermediate_size, 2) > 0.7
               for n in t["lengths_out_of_reach"])


@pytest.mark.parametrize("argv, message", [
    (["--keep", "1.5"], "--keep must be in (0, 1], got 1.5"),
    (["--keep", "0"], "--keep must be in (0, 1], got 0.0"),
    (["--schedule", "0.9,0.8,0.7,0.6,0.5,0.4"], "the schedule has 6 ratios for layers 1..6, but the model has 6 "
                                                "layers"),
    (["--schedule", "9:0.5"], "names layer 9, but the model has 6 layers"),
    (["--keep", "0.5", "--schedule", "0.5"], "give --keep or --schedule, not both"),
    (["--similarity-share", "2"], "--similarity-share must be in [0, 1]"),
    (["--flops", "0"], "--flops must be in (0, 1] (a share of the dense FLOPs), got 0.0"),
    (["--flops", "1.2"], "--flops must be in (0, 1] (a share of the dense FLOPs), got 1.2"),
    (["--flops", "0.7", "--keep", "0.5"], "give --flops, --keep or --schedule, not two of them"),
    (["--flops", "0.1", "--seqlen", "32"], "FLOPs target 0.1 is out of reach at 32 tokens"),
])
def test_bad_input_is_one_line(capsys, tmp_path, argv, message, minilm):
    code, _, err = _run(capsys, "tokens", *argv, "--out", str(tmp_path / "x"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "x").exists()


def test_a_family_without_an_adapter_is_one_line(capsys, tmp_path, tiny_llama_folder):
    code, _, err = _run(capsys, "tokens", "--model", str(tiny_llama_folder), "--out", str(tmp_path / "x"))
    assert code == 2 and "does not support model family 'llama'; supported families: bert, vit" in err
    assert len(err.strip().splitlines()) == 1
