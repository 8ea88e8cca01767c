"""A non-finite quality figure is an error naming the split and windows, never a silent NaN in run.json."""
from __future__ import annotations

import math

import pytest

from kenprune.cli import main
from kenprune.errors import KenpruneError


@pytest.fixture(scope="module")
def nan_llama_folder(tiny_llama_folder, tmp_path_factory):
    """The tiny Llama folder with one NaN in a weight: every window's loss is NaN."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("nan") / "tiny-nan"
    shutil.copytree(tiny_llama_folder, folder)
    state = load_file(str(folder / "model.safetensors"))
    name = next(n for n in state if n.endswith("mlp.down_proj.weight"))
    state[name][0, 0] = math.nan
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def test_check_finite_nll_names_the_split_and_windows():
    from kenprune.evaluate.language_model import check_finite_nll

    check_finite_nll("wiki:test", [], 16)
    with pytest.raises(KenpruneError) as info:
        check_finite_nll("wiki:test", [3, 7], 16)
    assert str(info.value) == ("perplexity on wiki:test is not finite: windows 3, 7 of 16 gave non-finite loss "
                               "(the weights may be corrupt)")
    with pytest.raises(KenpruneError, match=r"windows 0, 1, 2, 3, 4, 5, 6, 7, \.\.\. \(20 in all\) of 20"):
        check_finite_nll("lee:test", list(range(20)), 20)


def test_perplexity_of_a_model_with_a_nan_weight_is_an_error(nan_llama_folder):
    from kenprune.evaluate import PerplexityProtocol, perplexity
    from kenprune.models.loading import load_model

    loaded = load_model(str(nan_llama_folder))
    with pytest.raises(KenpruneError, match=r"perplexity on lee:test is not finite: windows 0, 1, 2 of 3") as info:
        perplexity(loaded, PerplexityProtocol(data="lee:test", seqlen=32, max_windows=3), batch_size=2,
                   progress=False)
    assert "\n" not in str(info.value)


def test_only_the_bad_windows_are_named(tiny_llama_folder, monkeypatch):
    """Per-window losses: window 1 of 4 infinite, the rest finite -> `window 1 of 4`."""
    from kenprune.evaluate import PerplexityProtocol, language_model, perplexity
    from kenprune.models.loading import load_model

    real = language_model.window_nll
    calls = []

    def one_bad(model, batch):
        nll = real(model, batch)
        if not calls:
            nll[1] = math.inf
        calls.append(1)
        return nll

    monkeypatch.setattr(language_model, "window_nll", one_bad)
    loaded = load_model(str(tiny_llama_folder))
    with pytest.raises(KenpruneError, match=r"window 1 of 4 gave non-finite loss"):
        perplexity(loaded, PerplexityProtocol(data="lee:test", seqlen=32, max_windows=4), batch_size=2,
                   progress=False)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, None, "12"])
def test_evaluate_refuses_a_non_finite_figure(value, tiny_llama_folder, monkeypatch):
    import kenprune.evaluate as evaluation
    from kenprune.models.loading import load_model
    from kenprune.settings import Evaluation

    fake = evaluation.Evaluator("perplexity", ("causal-lm",), lambda loaded, spec, progress: (value, {}, 0.0))
    monkeypatch.setattr(evaluation, "evaluator_for", lambda task, metric=None: fake)
    loaded = load_model(str(tiny_llama_folder))
    if value == "12":  # a number in a string is still a number
        assert evaluation.evaluate(loaded, Evaluation(data="lee:test"), progress=False).value == "12"
        return
    with pytest.raises(KenpruneError, match="perplexity of .* on lee:test is not finite") as info:
        evaluation.evaluate(loaded, Evaluation(data="lee:test"), progress=False)
    assert "\n" not in str(info.value)


def test_eval_command_with_a_nan_weight_exits_2_in_one_line_and_writes_nothing(nan_llama_folder, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--model", str(nan_llama_folder), "--data", "lee:test", "--seqlen", "32",
                 "--max-windows", "3", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert lines[-1] == ("kenprune: error: perplexity on lee:test is not finite: windows 0, 1, 2 of 3 gave "
                         "non-finite loss (the weights may be corrupt)"), captured.err
    assert "Traceback" not in captured.err
    assert not (out / "run.json").exists() and not out.exists()
