"""Measurements every run reports: stage times, peak memory, bytes on disk."""
from __future__ import annotations

import contextlib
import os
import resource
import time
from pathlib import Path
from typing import Iterator


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss


def path_bytes(path: str | os.PathLike) -> int:
    """Size on disk of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class StageTimer:
    """Wall time per named stage: `with timer.stage("calibrate"): ...`; `timer.seconds` is a dict."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def total(self) -> float:
        return sum(self.seconds.values())
