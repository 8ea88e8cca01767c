"""The spine refactor changed no result: the same `kenprune prune` command gives bit-identical weights and
sparse file, and the same perplexity, as the code before it (recorded in prune_golden.json)."""
import json

import pytest

from .prune_golden import CASES, EXTRA, GOLDEN, key, run_case

RECORDED = json.loads(GOLDEN.read_text())["cases"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("golden")


@pytest.mark.parametrize("arch,args", CASES, ids=[key(a, args) for a, args in CASES])
def test_prune_reproduces_the_pre_refactor_result(arch, args, root):
    result = run_case(arch, args, root, extra=EXTRA)
    expected = RECORDED[key(arch, args)]
    assert result["weights_sha256"] == expected["weights_sha256"]
    assert result["sparse_sha256"] == expected["sparse_sha256"]
    assert result["perplexity"] == expected["perplexity"]
