"""kenprune.precision: what `auto` picks on which hardware, and the compute context leaves no trace."""
import pytest
import torch

from kenprune import precision
from kenprune.errors import KenpruneError
from kenprune.precision import canonical, compute_dtype, resolve_dtype
from kenprune.testing import random_windows, tiny_causal_lm


@pytest.mark.parametrize("flags,expected", [
    ({"amx_bf16", "amx_tile", "avx512_bf16"}, precision.AUTO_POLICY["amx"]),  # Sapphire Rapids and later
    ({"avx512_bf16"}, precision.AUTO_POLICY["avx512_bf16"]),  # Zen 4: bf16 instructions, no AMX
    (set(), "float32"),
])
def test_auto_follows_the_cpu_and_says_why(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    chosen = resolve_dtype("auto", "cpu")
    assert chosen.dtype == expected and chosen.requested == "auto"
    assert chosen.reason.startswith("auto: ") and chosen.hardware["amx_bf16"] == ("amx_bf16" in flags)
    assert chosen.reason.startswith("auto: AMX on this CPU") == ("amx_bf16" in flags)
    assert chosen.to_dict()["dtype"] == expected


def test_a_requested_dtype_is_kept_and_aliases_are_understood():
    assert resolve_dtype("bf16").dtype == "bfloat16"
    assert resolve_dtype("float32").reason == "as requested"
    assert canonical(torch.float16) == "float16"
    with pytest.raises(KenpruneError, match="--dtype"):
        canonical("int8")
    with pytest.raises(KenpruneError, match="choose one of"):
        canonical("auto", allow_auto=False)


def test_settings_refuse_an_unknown_dtype_in_one_line():
    from kenprune.settings import Calibration, Evaluation

    with pytest.raises(KenpruneError, match="--dtype"):
        Calibration(dtype="fp8").check()
    with pytest.raises(KenpruneError, match="--eval-dtype"):
        Evaluation(dtype="fp8").check()
    assert Evaluation().dtype == "float32"  # the pinned protocol


def test_compute_dtype_runs_linears_in_bf16_and_restores_the_weights():
    model = tiny_causal_lm("llama", layers=1)
    originals = {n: p for n, p in model.named_parameters()}
    seen = []
    handle = model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, a, out: seen.append(
        (m.weight.dtype, out.dtype)))
    ids = random_windows(1, 16)
    with torch.no_grad():
        dense = model(input_ids=ids).logits
        with compute_dtype(model, "bfloat16"):
            low = model(input_ids=ids).logits
    handle.remove()
    assert seen[0] == (torch.float32, torch.float32) and seen[1] == (torch.bfloat16, torch.bfloat16)
    assert all(p is originals[n] and p.dtype == torch.float32 for n, p in model.named_parameters())
    assert not torch.equal(dense, low) and torch.allclose(dense, low.float(), atol=0.1, rtol=0.1)
