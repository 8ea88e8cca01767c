from random import Random

import numpy as np
import pytest
import torch

from kenprune.allocate.dsa import (POST_OPS, PRE_OPS, REDUCTION_OPS, TRANSFORM_OPS, Function, crossover,
                                   evaluate, mutate, parse, random_function, validate)
from kenprune.errors import KenpruneError


@pytest.mark.parametrize("text", ["abslog|var|atan,asin|noop", "noop|entropy|noop|softmax", "norm,exp|l2|sin|rank"])
def test_canonical_strings_round_trip(text):
    assert str(parse(text)) == text


def test_short_legacy_and_case_forms_normalise():
    assert str(parse("abslog|var|atan,asin")) == "abslog|var|atan,asin|noop"
    assert str(parse(" ABSLOG | Var | atan, asin ")) == "abslog|var|atan,asin|noop"
    assert str(parse("W:(ABSLOG)-(VAR)-(ATAN,ASIN)-(7)")) == "abslog|var|atan,asin|noop"


def test_random_mutated_and_crossed_functions_round_trip():
    rng = Random(0)
    fns = [random_function(rng) for _ in range(50)]
    fns += [mutate(f, rng) for f in fns] + [crossover(a, b, rng) for a, b in zip(fns, fns[1:])]
    assert all(parse(str(f)) == f for f in fns)
    assert len({str(f) for f in fns}) > 60


def test_evaluate_computes_the_stages_in_order():
    scores = [torch.tensor([1.0, 3.0]), torch.tensor([2.0, 6.0])]
    got = evaluate(parse("pow|mean|sqrt|noop"), scores)
    assert np.allclose(got, [np.sqrt(5.0), np.sqrt(20.0)])
    assert np.allclose(evaluate(parse("noop|max|noop|rank"), scores), [0, 1])


@pytest.mark.parametrize("fn,reason", [
    ("noop|mean|log|noop", "NaN"),               # log of a negative mean
    ("noop|min|neg,exp,exp|noop", "infinity"),
    ("norm|var|noop|noop", "constant"),           # the variance of z-scores is always 1
    ("noop|var|tan|noop", None),
])
def test_invalid_functions_are_rejected_with_a_reason(fn, reason):
    scores = [torch.randn(100, generator=torch.Generator().manual_seed(i)) * (i + 1) - 30 for i in range(4)]
    values, why = validate(parse(fn), scores)
    if reason is None:
        assert why is None and values.shape == (4,)
    else:
        assert values is None and reason in why


def test_raising_functions_are_rejected():
    values, why = validate(Function((), "mean", (), ()), [torch.tensor([]), torch.tensor([1.0])])
    assert values is None and why


@pytest.mark.parametrize("stage,ops", [(0, PRE_OPS), (2, TRANSFORM_OPS), (3, POST_OPS)])
def test_unknown_operation_lists_the_valid_ones(stage, ops):
    parts = ["noop", "mean", "noop", "noop"]
    parts[stage] = "bogus"
    with pytest.raises(KenpruneError, match="unknown .* operation 'bogus'.*valid: noop, " + next(iter(ops))):
        parse("|".join(parts))
    with pytest.raises(KenpruneError, match="exactly one"):
        parse("noop|mean,var|noop|noop")
    assert "mean" in REDUCTION_OPS
