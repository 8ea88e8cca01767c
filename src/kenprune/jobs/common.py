"""What every job shares: its record's frame, stage timing, and the output folder written atomically."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import torch

from .. import provenance
from ..fileio import atomic_dir
from ..measure import StageTimer, peak_rss_bytes
from ..record import RunRecord, stages_from, write
from ..settings import Output


def new_record(kind: str, model: dict[str, Any], method: str | None, given: dict[str, Any],
               resolved: dict[str, Any]) -> RunRecord:
    """A record with the model's identity, the settings as given and as resolved, and provenance."""
    return RunRecord(kind=kind, model=model, method=method, settings={"given": given, "resolved": resolved},
                     provenance=provenance.record())


def finish(record: RunRecord, timer: StageTimer) -> RunRecord:
    """Stamp time and peak memory per stage (and the CUDA peak, where there is one)."""
    record.stages = stages_from(timer)
    record.peak_rss_bytes = peak_rss_bytes()
    if torch.cuda.is_available():
        record.details["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    return record


@contextlib.contextmanager
def output_folder(output: Output) -> Iterator[Path | None]:
    """A temporary folder that becomes `output.folder` only if the block succeeds (None: write nothing)."""
    if output.folder is None:
        yield None
        return
    with atomic_dir(output.folder, overwrite=output.overwrite) as tmp:
        yield tmp


def write_record(record: RunRecord, folder: Path | None, timer: StageTimer) -> RunRecord:
    """Finish the record and write it as FOLDER/run.json (when there is a folder)."""
    finish(record, timer)
    if folder is not None:
        write(record, folder)
    return record
