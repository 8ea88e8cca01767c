"""The streaming safetensors writer produces standard files, atomically."""
from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from kenprune.formats.stream import DTYPES, write_safetensors


def test_every_dtype_and_shape_round_trips_through_safetensors(tmp_path):
    gen = torch.Generator().manual_seed(0)
    tensors = {f"t_{str(dtype).removeprefix('torch.')}": (torch.randn(3, 5, generator=gen) * 100).to(dtype)
               for dtype in DTYPES}
    tensors.update(scalar=torch.tensor(2.5), empty=torch.zeros(0, 4), odd=torch.arange(7, dtype=torch.uint8))
    path = tmp_path / "x.safetensors"
    write_safetensors(path, tensors.items(), {"note": "hi"})
    loaded = load_file(str(path))
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"note": "hi"}


def test_a_failure_while_streaming_leaves_no_file(tmp_path):
    def tensors():
        yield "a", torch.ones(3)
        raise RuntimeError("encoder broke")

    path = tmp_path / "x.safetensors"
    with pytest.raises(RuntimeError, match="encoder broke"):
        write_safetensors(path, tensors())
    assert list(tmp_path.iterdir()) == []
