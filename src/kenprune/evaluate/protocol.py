"""The evaluation protocol as a value: every perplexity kenprune reports carries one."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import KenpruneError
from ..settings import BOS_POLICIES, Evaluation




@dataclass(frozen=True)
class PerplexityProtocol:
    """Non-overlapping windows over a split's joined text, NLL over every predicted token.

    data: `corpus:split`; seqlen: tokens per window (BOS included when prepended);
    max_windows: evaluate only the first N windows (None: all); bos: auto follows the
    tokenizer (prepend if its own encoding starts with BOS), or force prepend / none; dtype: the
    forward's compute dtype (float32 is the pinned protocol; another one is part of the figure).
    """

    data: str = "wiki:test"
    seqlen: int = Evaluation.seqlen
    max_windows: int | None = None
    bos: str = "auto"
    dtype: str = Evaluation.dtype

    def __post_init__(self) -> None:
        if self.seqlen < 2:
            raise KenpruneError(f"--seqlen must be at least 2, got {self.seqlen}")
        if self.max_windows is not None and self.max_windows < 1:
            raise KenpruneError(f"--max-windows must be at least 1, got {self.max_windows}")
        if self.bos not in BOS_POLICIES:
            raise KenpruneError(f"unknown BOS policy {self.bos!r}; choose one of: {', '.join(BOS_POLICIES)}")
        from ..precision import canonical

        if canonical(self.dtype, "--eval-dtype") == "auto":
            raise KenpruneError("a perplexity protocol names its dtype; resolve auto first (kenprune.precision)")

    def to_dict(self) -> dict:
        return asdict(self)
