"""The block engine: capture what enters a model's repeated blocks, then calibrate and prune them one at a time.

sequential.py: block-input capture and the sequential pass (one block on the compute device at a time);
elementwise.py: element-wise pruning of a whole model on that pass (in place, on a copy, or scores only).
"""
from ..models.blocks import block_linears, find_blocks, is_linear, linear_weight, set_linear_weight
from .sequential import BlockInputs, BlockStep, capture_block_inputs, resolve_device, sequential_blocks

__all__ = ["BlockInputs", "BlockStep", "block_linears", "capture_block_inputs", "find_blocks", "is_linear",
           "linear_weight", "resolve_device", "sequential_blocks", "set_linear_weight"]
