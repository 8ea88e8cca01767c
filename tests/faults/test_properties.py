"""Property-based tests (hypothesis): the file formats round-trip bit for bit, and the CLI's number and
spec parsers either return a value or raise KenpruneError with a one-line message, for ANY text."""
from __future__ import annotations

import json
import math

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kenprune.errors import KenpruneError  # noqa: E402

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
INT_VIEW = {4: torch.int32, 2: torch.int16}


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(INT_VIEW[t.element_size()])


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits(a), bits(b))


@st.composite
def sparse_tensors(draw, nm: tuple[int, int] | None = None):
    """A tensor of a random dtype and shape, random sparsity, a few special values (inf, nan, subnormal);
    with `nm` a 2-D tensor that satisfies the N:M pattern (or whose transpose does)."""
    dtype = DTYPES[draw(st.sampled_from(sorted(DTYPES)))]
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    if nm is None:
        shape = tuple(draw(st.lists(st.integers(0, 9), min_size=1, max_size=3)))
        t = torch.randn(shape, generator=gen).to(dtype)
        t[torch.rand(shape, generator=gen) < draw(st.floats(0.0, 1.0))] = 0
    else:
        n, m = nm
        rows, groups = draw(st.integers(1, 8)), draw(st.integers(1, 4))
        t = torch.randn(rows, groups, m, generator=gen).to(dtype)
        zeros = torch.rand(rows, groups, m, generator=gen).argsort(dim=-1)[..., :n]  # n zeros per group, at least
        t.scatter_(-1, zeros, 0)
        t[torch.rand(t.shape, generator=gen) < draw(st.floats(0.0, 0.5))] = 0
        t = t.reshape(rows, groups * m)
        if draw(st.booleans()):
            t = t.T.contiguous()  # stored [in, out], as GPT-2's Conv1D
    if t.numel() and draw(st.booleans()):
        specials = torch.tensor([math.inf, -math.inf, math.nan, 1e-40, -3.0], dtype=torch.float32).to(dtype)
        flat = t.view(-1)
        where = torch.randint(0, t.numel(), (min(3, t.numel()),), generator=gen)
        flat[where] = specials[torch.randint(0, 5, (where.numel(),), generator=gen)]
    return t


@FAST
@given(tensors=st.lists(sparse_tensors(), min_size=1, max_size=3))
def test_sparse_round_trip_is_bit_exact(tensors, tmp_path_factory):
    from kenprune.formats import load_sparse, save_sparse

    path = tmp_path_factory.mktemp("sparse") / "x.safetensors"
    state = {f"t{i}": t for i, t in enumerate(tensors)}
    save_sparse(state, path)
    back = load_sparse(path)
    assert set(back) == set(state)
    for name, t in state.items():
        assert same_bits(back[name], t), name


@FAST
@given(data=st.data(), nm=st.sampled_from([(1, 2), (2, 4), (4, 8), (3, 8), (2, 16)]))
def test_sparse_round_trip_with_an_nm_pattern_is_bit_exact(data, nm, tmp_path_factory):
    from kenprune.formats import load_sparse, read_manifest, save_sparse

    tensors = data.draw(st.lists(sparse_tensors(nm), min_size=1, max_size=3))
    path = tmp_path_factory.mktemp("nm") / "x.safetensors"
    state = {f"t{i}": t for i, t in enumerate(tensors)}
    save_sparse(state, path, nm=nm)
    back = load_sparse(path)
    for name, t in state.items():
        assert same_bits(back[name], t), name
    encodings = {e["encoding"] for e in read_manifest(path)["tensors"].values()}
    assert encodings <= {"dense", "bitmask", "nm", "nm-transposed"}


def test_a_negative_zero_comes_back_as_zero(tmp_path):
    """The sparse format stores zeros, not their sign: -0.0 is equal (not bit-identical) after the trip."""
    from kenprune.formats import load_sparse, save_sparse

    t = torch.zeros(8, 8)
    t[0, 0], t[1, 1] = -0.0, 2.0
    save_sparse({"w": t}, tmp_path / "z.safetensors")
    assert torch.equal(load_sparse(tmp_path / "z.safetensors")["w"], t)


@st.composite
def subnetworks(draw):
    from kenprune.ken.subnetwork import Subnetwork

    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    masks, values, rows, full = {}, {}, {}, {}
    for i in range(draw(st.integers(0, 3))):
        r, n = draw(st.integers(1, 12)), draw(st.integers(1, 300))
        name = f"layers.{i}.weight"
        if draw(st.booleans()):  # KEN's case: the same count per row (index encoding when smaller)
            k = draw(st.integers(0, n))
            order = torch.rand(r, n, generator=gen).argsort(dim=1)
            mask = torch.zeros(r, n, dtype=torch.bool).scatter_(1, order[:, :k], True)
        else:
            mask = torch.rand(r, n, generator=gen) < draw(st.floats(0.0, 1.0))
        shape = (r, n) if draw(st.booleans()) else (r, 1, n)
        masks[name], rows[name] = mask.reshape(shape), r
        values[name] = torch.randn(int(mask.sum()), generator=gen)
    for i in range(draw(st.integers(0, 2))):
        full[f"norm.{i}.weight"] = torch.randn(draw(st.integers(0, 20)), generator=gen)
    meta = {"base": {"name": draw(st.text(max_size=20)), "weights_sha256": "0" * 64},
            "k": draw(st.integers(1, 1000))}
    return Subnetwork(masks=masks, values=values, full=full, rows=rows, meta=meta)


@FAST
@given(sub=subnetworks(), value_dtype=st.sampled_from(["fp32", "fp16", "bf16"]))
def test_subnetwork_round_trip(sub, value_dtype, tmp_path_factory):
    from kenprune.ken.subnetwork import VALUE_DTYPES, read_subnetwork, write_subnetwork

    path = tmp_path_factory.mktemp("sub") / "s.safetensors"
    written = write_subnetwork(path, sub, value_dtype)
    back = read_subnetwork(path)
    dtype = VALUE_DTYPES[value_dtype]
    assert set(back.masks) == set(sub.masks) and set(back.full) == set(sub.full)
    for name, mask in sub.masks.items():
        assert torch.equal(back.masks[name], mask) and back.rows[name] == sub.rows[name]
        assert same_bits(back.values[name], sub.values[name].to(dtype))
    for name, tensor in sub.full.items():
        assert same_bits(back.full[name], tensor.to(dtype))
    assert back.meta == json.loads(json.dumps(written)) and back.meta["base"] == sub.meta["base"]


FINITE = st.floats(allow_nan=False, allow_infinity=False)
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | FINITE | st.text(max_size=12),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3), max_leaves=8)


@st.composite
def run_records(draw):
    from kenprune import record as records

    text = st.text(max_size=16)
    return records.RunRecord(
        kind=draw(st.sampled_from(records.KINDS)),
        model={"name": draw(text), "source": draw(text), "parameters": draw(st.integers(0, 10**12))},
        settings={"given": draw(st.dictionaries(text, JSON_VALUES, max_size=3)), "resolved": {}},
        method=draw(st.none() | text), layer_quantity=draw(st.sampled_from([None, "sparsity", "kept fraction"])),
        layers=[records.Layer(draw(text), draw(st.lists(st.integers(0, 4096), max_size=2)), draw(FINITE),
                              draw(st.none() | st.integers(0, 99)), draw(st.none() | FINITE),
                              draw(st.none() | st.integers(0, 10**9))) for _ in range(draw(st.integers(0, 3)))],
        quality=[records.Quality(draw(text), draw(FINITE), draw(text), draw(st.sampled_from(records.ROLES)),
                                 draw(text), draw(st.dictionaries(text, JSON_VALUES, max_size=3)),
                                 draw(st.none() | FINITE)) for _ in range(draw(st.integers(0, 3)))],
        files=[records.FileEntry(draw(text), draw(text), draw(st.integers(0, 10**12)), draw(text))
               for _ in range(draw(st.integers(0, 2)))],
        stages=[records.Stage(draw(text), draw(FINITE), draw(st.none() | st.integers(0, 10**12)))
                for _ in range(draw(st.integers(0, 2)))],
        peak_rss_bytes=draw(st.none() | st.integers(0, 10**12)),
        details=draw(st.dictionaries(text, JSON_VALUES, max_size=4)),
        provenance={"command": draw(text)})


@FAST
@given(record=run_records())
def test_run_record_round_trip(record, tmp_path_factory):
    from kenprune import record as records

    assert records.RunRecord.from_dict(record.to_dict()) == record
    folder = tmp_path_factory.mktemp("run")
    records.write(record, folder)
    assert records.read(folder) == record


# ------------------------------------------------------------------------------------ parsers, any text
ANY_TEXT = st.text(max_size=40) | st.from_regex(r"\s*[-+]?\d{0,6}(\.\d{0,4})?([eE][-+]?\d{1,4})?\s*%?\s*",
                                                fullmatch=True)


def one_line_or_value(parse, text):
    try:
        return parse(text)
    except KenpruneError as exc:
        message = str(exc)
        assert message and len(message.splitlines()) == 1, message
        return None


@FAST
@given(text=ANY_TEXT | st.integers() | st.floats())
def test_kspec_parse_never_crashes(text):
    from kenprune.ken.apply import KSpec

    spec = one_line_or_value(KSpec.parse, text)
    if spec is not None:
        assert math.isfinite(spec.value) and spec.value > 0 and (not spec.fraction or spec.value <= 1)


@FAST
@given(text=st.none() | ANY_TEXT | st.from_regex(r"\s*-?\d{1,3}\s*:\s*-?\d{1,3}\s*", fullmatch=True))
def test_pattern_parse_never_crashes(text):
    from kenprune.methods import Pattern

    pattern = one_line_or_value(Pattern.parse, text)
    if pattern is not None and pattern.is_nm:
        assert 0 < pattern.n < pattern.m


@FAST
@given(value=ANY_TEXT | st.floats() | st.integers() | st.none())
def test_check_sparsity_never_crashes(value):
    from kenprune.methods import check_sparsity

    sparsity = one_line_or_value(check_sparsity, value)
    if sparsity is not None:
        assert 0.0 <= sparsity < 1.0


OPERATION = st.sampled_from(["abslog", "var", "atan", "asin", "noop", "exp", "log", "sqrt", "tanh", "std",
                             "mean", "sin", "cos", "sigmoid", "x", "", "w:(", ")", "-", "(7)"])


@FAST
@given(text=ANY_TEXT | st.lists(st.lists(OPERATION, max_size=3).map(",".join), max_size=5).map("|".join))
def test_dsa_parse_never_crashes(text):
    from kenprune.allocate.dsa import parse

    fn = one_line_or_value(parse, text)
    if fn is not None:
        assert str(parse(str(fn))) == str(fn)  # what it prints, it reads back


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_an_all_zero_matrix_round_trips(dtype, tmp_path):
    """Found by the property test: a fully pruned matrix has no values to store (an empty tensor)."""
    from kenprune.formats import load_sparse, save_sparse

    state = {"w": torch.zeros(1, 1, dtype=DTYPES[dtype]), "v": torch.zeros(4, 8, dtype=DTYPES[dtype])}
    save_sparse(state, tmp_path / "z.safetensors", nm=(2, 4))
    back = load_sparse(tmp_path / "z.safetensors")
    assert all(same_bits(back[n], t) for n, t in state.items())
