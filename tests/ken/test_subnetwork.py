"""The subnetwork file: position encodings, round trip, and refusal of damaged files."""
from __future__ import annotations

import pytest
import torch

from kenprune.errors import KenpruneError
from kenprune.ken.subnetwork import (Subnetwork, decode_positions, encode_positions, pack_bits, read_subnetwork,
                                     unpack_bits, write_subnetwork)


def row_mask(rows: int, n: int, k: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    order = torch.rand(rows, n, generator=gen).argsort(dim=1)
    return torch.zeros(rows, n, dtype=torch.bool).scatter_(1, order[:, :k], True)


def test_pack_bits_round_trip_odd_length():
    mask = torch.rand(1003, generator=torch.Generator().manual_seed(1)) > 0.6
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == 126
    assert torch.equal(unpack_bits(packed, 1003), mask)


@pytest.mark.parametrize("rows,n,k,expected", [(8, 576, 144, "mask"), (8, 576, 8, "index"), (4, 200, 3, "index"),
                                               (2, 70000, 10, "index"), (3, 40, 30, "mask")])
def test_smaller_encoding_is_chosen_and_decodes(rows, n, k, expected):
    mask = row_mask(rows, n, k)
    encoding, data = encode_positions(mask, rows)
    assert encoding == expected
    mask_bytes = (mask.numel() + 7) // 8
    assert data.numel() * data.element_size() <= mask_bytes
    assert torch.equal(decode_positions(encoding, data, tuple(mask.shape), rows), mask)


def make_sub(dtype=torch.float32) -> Subnetwork:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(16, 64, generator=gen)
    b = torch.randn(64, generator=gen)
    masks = {"a": row_mask(16, 64, 16), "b": row_mask(1, 64, 5)[0]}
    return Subnetwork(masks=masks, values={"a": a[masks["a"]], "b": b[masks["b"]]},
                      full={"c": torch.randn(3, 3, generator=gen)}, rows={"a": 16, "b": 1}, meta={"k": 16})


def test_round_trip(tmp_path):
    sub = make_sub()
    path = tmp_path / "sub.safetensors"
    meta = write_subnetwork(path, sub)
    assert meta["tensors"]["a"]["encoding"] == "mask" and meta["tensors"]["b"]["encoding"] == "index"
    back = read_subnetwork(path)
    assert back.meta["k"] == 16
    for name in sub.masks:
        assert torch.equal(back.masks[name], sub.masks[name]) and torch.equal(back.values[name], sub.values[name])
    assert torch.equal(back.full["c"], sub.full["c"])
    state = {"a": torch.zeros(16, 64), "b": torch.zeros(64), "c": torch.zeros(3, 3)}
    back.apply_to(state)
    assert torch.equal(state["a"][sub.masks["a"]], sub.values["a"]) and state["a"][~sub.masks["a"]].eq(0).all()


def test_half_precision_values(tmp_path):
    write_subnetwork(tmp_path / "s.safetensors", make_sub(), value_dtype="bf16")
    back = read_subnetwork(tmp_path / "s.safetensors")
    assert back.values["a"].dtype == torch.bfloat16 and back.meta["value_dtype"] == "bf16"
    with pytest.raises(KenpruneError, match="fp32"):
        write_subnetwork(tmp_path / "t.safetensors", make_sub(), value_dtype="fp8")


def test_truncated_corrupt_and_foreign_files_are_refused(tmp_path):
    path = tmp_path / "sub.safetensors"
    write_subnetwork(path, make_sub())
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(KenpruneError, match="truncated"):
        read_subnetwork(tmp_path / "trunc.safetensors")
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(KenpruneError, match="corrupt"):
        read_subnetwork(tmp_path / "flip.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(KenpruneError, match="not a kenprune subnetwork"):
        read_subnetwork(tmp_path / "other.safetensors")
    with pytest.raises(KenpruneError, match="not found"):
        read_subnetwork(tmp_path / "missing.safetensors")
