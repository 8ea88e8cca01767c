"""Pack small unsigned integers (1 bit for masks, log2(M) bits for N:M indices) into uint8 streams."""
from __future__ import annotations

import numpy as np
import torch


def _shifts(width: int, device: torch.device) -> torch.Tensor:
    return torch.arange(width - 1, -1, -1, dtype=torch.uint8, device=device)


def pack_bits(values: torch.Tensor, width: int) -> torch.Tensor:
    """Big-endian bit packing of integers in [0, 2**width) (width <= 8), flattened, zero-padded to a byte."""
    if width == 1 and values.device.type == "cpu":  # masks: numpy packs without byte-per-bit temporaries
        return torch.from_numpy(np.packbits(values.reshape(-1).to(torch.bool).numpy(), bitorder="big"))
    v = values.reshape(-1).to(torch.uint8)
    bits = v.unsqueeze(1).bitwise_right_shift(_shifts(width, v.device)).bitwise_and_(1).reshape(-1)
    bits = torch.nn.functional.pad(bits, (0, (-bits.numel()) % 8))
    return (bits.view(-1, 8) << _shifts(8, v.device)).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, width: int, count: int) -> torch.Tensor:
    """Inverse of pack_bits: `count` integers (uint8)."""
    if width == 1 and packed.device.type == "cpu":
        return torch.from_numpy(np.unpackbits(packed.numpy(), count=count, bitorder="big"))
    bits = packed.unsqueeze(1).bitwise_right_shift(_shifts(8, packed.device)).bitwise_and_(1).reshape(-1)
    bits = bits[: count * width].view(count, width)
    return (bits << _shifts(width, packed.device)).sum(dim=1, dtype=torch.uint8)


def index_width(m: int) -> int:
    """Bits needed for a position inside a group of m."""
    return max(1, (m - 1).bit_length())
