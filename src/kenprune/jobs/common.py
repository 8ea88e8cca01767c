"""What every job shares: its record's frame, stage timing, and the output folder written atomically."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from .. import provenance
from ..errors import KenpruneError
from ..fileio import atomic_dir, check_writable, is_within
from ..measure import StageTimer, peak_rss_bytes
from ..record import RunRecord, is_run_folder, stages_from, write
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


def check_output(output: Output, inputs: Iterable[str | Path | None] = (), *, resumable: str | None = None) -> None:
    """Refuse, in one line and before any work, an output folder that would lose or mix up data.

    The folder may not be, contain or lie inside an input; an existing non-empty folder is replaced
    only with `overwrite`, and only when kenprune wrote it (it holds run.json); its location must be
    writable. `resumable`: a file whose presence means the folder is a run to resume (a checkpoint).
    """
    out = output.folder
    if out is None:
        return
    for given in inputs:
        if given is None or not Path(given).exists():
            continue
        source = Path(given)
        if is_within(out, source) or is_within(source, out):
            relation = "is" if out.resolve() == source.resolve() else "is inside" if is_within(out, source) \
                else "contains"
            raise KenpruneError(f"--out {out} {relation} the input {given}; choose an output folder apart from "
                                f"the inputs")
    if out.exists():
        if not out.is_dir():
            raise KenpruneError(f"--out {out} is a file, not a folder")
        if any(out.iterdir()) and not (resumable and (out / resumable).exists()):
            if not output.overwrite:
                raise KenpruneError(f"{out} already exists and is not empty; pass --overwrite to replace it, or "
                                    f"choose another --out")
            if not is_run_folder(out):
                raise KenpruneError(f"{out} is not a kenprune run folder (no run.json), so --overwrite will not "
                                    f"replace it; choose another --out")
    try:
        check_writable(out)
    except OSError as exc:
        raise KenpruneError(f"cannot write to {out}: {exc.strerror or exc}") from None


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
