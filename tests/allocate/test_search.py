"""Search mechanics with a cheap deterministic fitness (a pure function of the allocation)."""
import json

import numpy as np
import pytest

from kenprune.allocate.executors import SequentialExecutor, make_executor
from kenprune.allocate.layers import block_scores, block_sizes
from kenprune.allocate.search import AllocationSpace, SearchConfig, search
from kenprune.errors import KenpruneError


def ramp_loss(ratios):
    """Best allocation: sparsity rising linearly with depth (what DSA found for LLaMA)."""
    r = np.asarray(ratios)
    return float(np.sum((r - np.linspace(r.mean() - 0.05, r.mean() + 0.05, r.size)) ** 2))


class Killed(Exception):
    pass


class KillAfter(SequentialExecutor):
    """Dies in the middle of the batch after `n` evaluations, like a killed process."""

    def __init__(self, evaluator, n):
        super().__init__(evaluator)
        self.left = n

    def map(self, payloads):
        out = []
        for p in payloads:
            if self.left == 0:
                raise Killed
            self.left -= 1
            out.append(self.evaluator(p))
        return out


@pytest.fixture(scope="module")
def space(layer_factory):
    layers = layer_factory(blocks=8)
    return AllocationSpace(block_scores(layers), block_sizes(layers), target=0.7, lam=0.08)


CONFIG = SearchConfig(budget=30, population=6, children=4, seed=3)


def test_same_seed_same_result_and_evolution_improves(space):
    a = search(space, SequentialExecutor(ramp_loss), CONFIG, progress=False)
    b = search(space, SequentialExecutor(ramp_loss), CONFIG, progress=False)
    assert _same(a, b)
    assert a.evaluations == 30 and a.fitness == min(h["best_fitness"] for h in a.history)
    assert a.history[-1]["best_fitness"] <= a.history[0]["best_fitness"]
    assert abs(np.dot(a.ratios, space.sizes) / np.sum(space.sizes) - 0.7) < 1e-12
    other = search(space, SequentialExecutor(ramp_loss), SearchConfig(budget=30, population=6, children=4, seed=4),
                   progress=False)
    assert [h["best"] for h in other.history] != [h["best"] for h in a.history]


def _same(a, b):
    strip = lambda r: {**r.to_dict(), "seconds": 0, "history": [{**h, "seconds": 0} for h in r.history]}
    return strip(a) == strip(b)


def test_killed_search_resumes_to_the_uninterrupted_result(space, tmp_path):
    whole = search(space, SequentialExecutor(ramp_loss), CONFIG, progress=False)
    ckpt = tmp_path / "checkpoint.json"
    with pytest.raises(Killed):
        search(space, KillAfter(ramp_loss, 17), CONFIG, checkpoint=ckpt, progress=False)
    saved = json.loads(ckpt.read_text())["state"]
    assert 0 < saved["evaluations"] < 17
    resumed = search(space, SequentialExecutor(ramp_loss), CONFIG, checkpoint=ckpt, progress=False)
    assert _same(whole, resumed)


def test_random_search_baseline_uses_the_same_budget(space):
    rand = search(space, SequentialExecutor(ramp_loss), SearchConfig(strategy="random", budget=30, population=6,
                                                                     children=4, seed=3), progress=False)
    assert rand.evaluations == 30 and rand.strategy == "random"


def test_time_budget_stops_between_generations(space):
    result = search(space, SequentialExecutor(ramp_loss), SearchConfig(budget=10_000, seconds=0.2, seed=0),
                    progress=False)
    assert 0 < result.evaluations < 10_000


def test_corrupt_or_foreign_checkpoint_is_a_one_line_error(space, tmp_path):
    ckpt = tmp_path / "checkpoint.json"
    ckpt.write_text('{"version": 1, "state": {"rng": [3, [1, 2')
    with pytest.raises(KenpruneError, match="corrupt.*delete it"):
        search(space, SequentialExecutor(ramp_loss), CONFIG, checkpoint=ckpt, progress=False)
    ckpt.unlink()
    search(space, SequentialExecutor(ramp_loss), SearchConfig(budget=4, population=4, seed=1), checkpoint=ckpt,
           progress=False)
    with pytest.raises(KenpruneError, match="different search"):
        search(space, SequentialExecutor(ramp_loss), CONFIG, checkpoint=ckpt, progress=False)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(KenpruneError, match="unknown search strategy"):
        SearchConfig(strategy="annealing")
    with pytest.raises(KenpruneError, match="--workers"):
        make_executor(ramp_loss, workers=0)


def test_each_evaluation_is_a_new_allocation(space):
    seen = []

    def loss(ratios):
        seen.append(tuple(np.round(ratios, 9)))
        return ramp_loss(ratios)

    result = search(space, SequentialExecutor(loss), SearchConfig(strategy="random", budget=40, seed=0),
                    progress=False)
    assert len(seen) == result.evaluations == len(set(seen)) == 40
    assert result.rejected > 0  # random functions often yield NaN or constants on these scores
