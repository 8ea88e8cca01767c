import math

import pytest
import torch
import torch.nn.functional as F

from kenprune.data.corpora import join_text, load_documents
from kenprune.errors import KenpruneError
from kenprune.evaluate import make_windows, perplexity
from kenprune.evaluate.protocol import PerplexityProtocol

PROTOCOL = PerplexityProtocol(data="wiki:test", seqlen=256, max_windows=4)


@pytest.fixture(scope="module")
def dense_result(smollm2):
    return perplexity(smollm2, PROTOCOL, progress=False)


def test_dense_perplexity_is_in_band(dense_result):
    # SmolLM2-135M on clean Wikipedia prose: ~20-30 at 512 tokens; a broken tokenizer gives >100.
    assert 12.0 < dense_result.perplexity < 45.0
    assert dense_result.windows == 4 and dense_result.predicted_tokens == 4 * 255


def test_perplexity_equals_an_independent_computation(smollm2, dense_result):
    text = "\n\n".join(d.text for d in load_documents("wiki:test"))
    ids = smollm2.tokenizer(text, add_special_tokens=False)["input_ids"][: 4 * 256]
    total_nll, count = 0.0, 0
    with torch.no_grad():
        for i in range(4):
            window = torch.tensor([ids[i * 256:(i + 1) * 256]])
            out = smollm2.model(input_ids=window, labels=window)  # HF's own shifted mean loss
            total_nll += out.loss.item() * 255
            count += 255
    assert math.isclose(dense_result.perplexity, math.exp(total_nll / count), rel_tol=1e-4)


def test_result_records_protocol_model_and_versions(dense_result):
    record = dense_result.to_dict()
    assert record["protocol"]["data"] == "wiki:test" and record["protocol"]["seqlen"] == 256
    assert record["protocol"]["predicted_tokens"] == 1020 and record["protocol"]["bos_token_id"] is None
    assert len(record["protocol"]["text_sha256"]) == 64
    assert record["model"]["weights_sha256"] and record["model"]["name"] == "smollm2-135m"
    assert {"python", "torch", "transformers", "kenprune"} <= set(record["versions"])


def test_windows_with_bos_hold_bos_then_text():
    tokens = torch.arange(10, 30)
    w = make_windows(tokens, 5, bos_id=1, max_windows=None)
    assert w.shape == (5, 5) and (w[:, 0] == 1).all() and w[0, 1:].tolist() == [10, 11, 12, 13]
    w = make_windows(tokens, 5, bos_id=None, max_windows=2)
    assert w.tolist() == [[10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]
    with pytest.raises(KenpruneError, match="fewer than one window"):
        make_windows(tokens[:3], 5, None, None)


def test_bad_protocols_are_refused(smollm2):
    with pytest.raises(KenpruneError, match="exceeds"):
        perplexity(smollm2, PerplexityProtocol(seqlen=100_000), progress=False)
    with pytest.raises(KenpruneError, match="at least 2"):
        PerplexityProtocol(seqlen=1)


def _full_logits_nll(model, windows):
    logits = model(input_ids=windows, use_cache=False).logits.float()
    return torch.stack([F.cross_entropy(logits[i, :-1], windows[i, 1:], reduction="sum").double()
                        for i in range(windows.shape[0])])


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])
def test_window_nll_never_needs_the_full_logits_and_equals_them(arch, monkeypatch):
    import kenprune.evaluate.language_model as evaluate
    from kenprune.testing import random_windows, tiny_causal_lm

    model = tiny_causal_lm(arch)
    windows = random_windows(2, 40)
    monkeypatch.setattr(evaluate, "CE_ROWS", 16)  # 39 predicted positions: chunks of 16, 16, 7
    rows_seen = []
    model.get_output_embeddings().register_forward_hook(lambda m, a, out: rows_seen.append(out.shape[-2]))
    with torch.no_grad():
        got = evaluate.window_nll(model, windows)
    assert max(rows_seen) <= 16  # the head never ran on the whole window
    assert torch.allclose(got, _full_logits_nll(model, windows), rtol=1e-6)


def test_window_nll_falls_back_to_full_logits_when_the_model_post_processes_them():
    import kenprune.evaluate.language_model as evaluate
    from kenprune.testing import random_windows, tiny_causal_lm

    class SoftCapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny_causal_lm("llama")

        def get_output_embeddings(self):
            return self.inner.get_output_embeddings()

        def forward(self, **kwargs):
            out = self.inner(**kwargs)
            out.logits = 3.0 * torch.tanh(out.logits / 3.0)
            return out

    model = SoftCapped()
    windows = random_windows(2, 24)
    with torch.no_grad():
        assert torch.allclose(evaluate.window_nll(model, windows), _full_logits_nll(model, windows), rtol=1e-6)


def test_an_encoder_has_no_evaluator_and_the_error_says_how_to_fine_tune():
    from kenprune.errors import KenpruneError
    from kenprune.evaluate import evaluator_for

    with pytest.raises(KenpruneError) as info:
        evaluator_for("encoder")
    message = str(info.value)
    assert "no evaluator for an encoder model" in message
    assert "kenprune finetune --model minilm-l6 --data pang-lee --out ft/" in message
    with pytest.raises(KenpruneError, match="accuracy needs a sequence-classification model, not an encoder model"):
        evaluator_for("encoder", "accuracy")
