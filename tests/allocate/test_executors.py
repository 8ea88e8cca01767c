"""Ray and sequential evaluation agree, failed workers are retried, bad addresses fail fast."""
import os

import numpy as np
import pytest

from kenprune.allocate.executors import RayExecutor, SequentialExecutor, check_reachable
from kenprune.allocate.layers import block_scores, block_sizes
from kenprune.allocate.search import AllocationSpace, SearchConfig, search
from kenprune.errors import KenpruneError


def test_ray_matches_sequential_and_retries_a_crashed_worker(layer_factory, tmp_path):
    pytest.importorskip("ray")
    layers = layer_factory(blocks=8)
    space = AllocationSpace(block_scores(layers), block_sizes(layers), target=0.7)
    marker = str(tmp_path / "crashed")

    def loss(ratios):  # defined here so Ray ships it by value
        r = np.asarray(ratios)
        return float(np.sum((r - np.linspace(0.65, 0.75, r.size)) ** 2))

    def crash_once(ratios):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the worker process dies mid-task
        return loss(ratios)

    config = SearchConfig(budget=12, population=4, children=4, seed=0)
    sequential = search(space, SequentialExecutor(loss), config, progress=False)
    ray_executor = RayExecutor(crash_once, workers=2)
    try:
        parallel = search(space, ray_executor, config, progress=False)
    finally:
        ray_executor.close()
    assert os.path.exists(marker)
    assert (parallel.best, parallel.fitness, parallel.top) == (sequential.best, sequential.fitness, sequential.top)
    assert parallel.evaluations == sequential.evaluations == 12


def test_unreachable_ray_address_is_a_one_line_error():
    with pytest.raises(KenpruneError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        check_reachable("127.0.0.1:1", timeout=2)
    with pytest.raises(KenpruneError, match="not HOST:PORT"):
        check_reachable("nonsense")
