"""Measurements every run reports: stage times, peak memory, bytes on disk."""
from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import time
from pathlib import Path
from typing import Iterator


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far.

    Linux: VmHWM, the high-water mark of this program's own address space. ru_maxrss would also
    count the address space of whoever exec'd it (a vfork from a large parent shows up as ours)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux, bytes on macOS


def release_free_memory() -> None:
    """Hand memory that was freed but kept by glibc's allocator back to the OS (no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


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
    """Wall time per named stage: `with timer.stage("calibrate"): ...`; `timer.seconds` is a dict.

    `timer.peak_rss` holds the process's peak resident memory at the end of each stage (the
    peak is cumulative, so the first stage whose value jumps is the one that set it).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss: dict[str, int] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.peak_rss[name] = peak_rss_bytes()

    def total(self) -> float:
        return sum(self.seconds.values())
