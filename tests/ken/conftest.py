"""A real (pre-trained, fine-tuned) minilm-l6 pair on pang-lee, fine-tuned once per session for a few steps."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def minilm_pair(tmp_path_factory):
    """Folder of minilm-l6 fine-tuned 3 steps on pang-lee (with initial/ = KEN's base) and its record."""
    from kenprune.jobs.finetune import finetune

    out = tmp_path_factory.mktemp("ft") / "minilm-pang-lee"
    record = finetune("minilm-l6", "pang-lee", out=out, steps=3, batch_size=8, seqlen=48, lr=5e-4, seed=0,
                      progress=False)
    return out, record
