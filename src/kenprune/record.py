"""The run record: what every command writes as OUT/run.json and the only thing a report reads.

One versioned schema for every kind of run (prune, structured, ken, ken-apply, search, recover,
finetune, eval): the model's identity, the settings as given and as resolved, a per-layer table,
quality entries with their protocol, files with their format and bytes, time and peak memory per
stage, and provenance. Kind-specific facts (a search's history, structured widths, KEN totals) go
in `details`, so adding a kind never changes this module.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from .errors import KenpruneError, describe

SCHEMA = "kenprune.run"
VERSION = 1
RECORD_FILE = "run.json"
# kenprune's own result files before the run record (version 0.1.0 wrote one of these per command)
LEGACY_FILES = ("report.json", "kenprune-report.json", "ken.json", "search.json")
KINDS = ("prune", "structured", "ken", "ken-apply", "ken-lora", "search", "recover", "finetune", "eval", "tokens",
         "stats", "phase-map")
ROLES = ("before", "after", "reference")  # quality of the input model, of the output model, of another model


class RecordError(KenpruneError):
    """A run record that is missing, from another version, or malformed."""


@dataclass
class Quality:
    """One quality figure: `metric` of `model` on `data` under `protocol`.

    role: before (the input model), after (the output model) or reference (another model shown
    for comparison, e.g. KEN's pre-trained side); model: a short label ("dense", "pruned", "KEN").
    """

    metric: str
    value: float
    data: str
    role: str
    model: str
    protocol: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"quality role must be one of {ROLES}, not {self.role!r}")


@dataclass
class Layer:
    """One row of the per-layer table: a Linear (or tensor) with its sparsity or kept fraction."""

    name: str
    shape: list[int]
    value: float  # the record's `layer_quantity`: sparsity or kept fraction
    block: int | None = None
    allocated: float | None = None  # the ratio an allocation asked for, when one was used
    parameters: int | None = None


@dataclass
class FileEntry:
    """A file or folder the run wrote, relative to the run folder."""

    path: str
    format: str  # hf-folder, sparse-safetensors, ken-subnetwork, json, ...
    bytes: int
    role: str = ""  # model, sparse, subnetwork, checkpoint, allocation, ...


@dataclass
class Stage:
    name: str
    seconds: float
    peak_rss_bytes: int | None = None


@dataclass
class RunRecord:
    """Everything one command did; written as OUT/run.json (see the module docstring)."""

    kind: str
    model: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)  # {"given": {...}, "resolved": {...}}
    method: str | None = None  # what the report calls the run: wanda, structured-taylor, ken, ...
    layer_quantity: str | None = None  # "sparsity" or "kept fraction"
    layers: list[Layer] = field(default_factory=list)
    quality: list[Quality] = field(default_factory=list)
    files: list[FileEntry] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    peak_rss_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    version: int = VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"run kind must be one of {KINDS}, not {self.kind!r}")

    # ---------------------------------------------------------------- queries the report and CLI use
    def quality_of(self, role: str, metric: str | None = None) -> Quality | None:
        """The first quality entry with this role (and metric)."""
        return next((q for q in self.quality if q.role == role and (metric is None or q.metric == metric)), None)

    def file(self, role: str) -> FileEntry | None:
        return next((f for f in self.files if f.role == role), None)

    def seconds(self) -> dict[str, float]:
        return {s.name: s.seconds for s in self.stages}

    @property
    def sparsity(self) -> float | None:
        """The run's overall sparsity (parameter-weighted over its layer table), if it has one."""
        value = self.details.get("sparsity")
        return float(value) if isinstance(value, (int, float)) else None

    def to_dict(self) -> dict[str, Any]:
        out = {"schema": self.schema, "version": self.version}
        out.update({f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in out})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "run.json") -> "RunRecord":
        check(data, source)
        try:
            return cls(
                kind=data["kind"], model=data["model"], settings=data.get("settings") or {},
                method=data.get("method"), layer_quantity=data.get("layer_quantity"),
                layers=[Layer(**x) for x in data.get("layers") or []],
                quality=[Quality(**x) for x in data.get("quality") or []],
                files=[FileEntry(**x) for x in data.get("files") or []],
                stages=[Stage(**x) for x in data.get("stages") or []],
                peak_rss_bytes=data.get("peak_rss_bytes"), details=data.get("details") or {},
                provenance=data.get("provenance") or {}, schema=data["schema"], version=data["version"])
        except (TypeError, ValueError, KeyError) as exc:
            raise RecordError(f"{source} is not a well-formed run record ({type(exc).__name__}: {exc}); "
                              f"re-run the command that wrote it") from None


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN or infinity
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return _plain(value.item())  # a numpy or torch scalar: its Python value, non-finite floats as null
    return value


def check(data: Any, source: str = "run.json") -> None:
    """Raise RecordError unless `data` is a run record this version reads."""
    if not isinstance(data, dict):
        raise RecordError(f"{source} should hold a JSON object, found {type(data).__name__}")
    if data.get("schema") != SCHEMA:
        raise RecordError(f"{source} is not a kenprune run record (no schema {SCHEMA!r})")
    version = data.get("version")
    if version != VERSION:
        raise RecordError(f"{source} is a version {version} run record; this kenprune reads version {VERSION}: "
                          f"re-run the command with this version")
    for key in ("kind", "model"):
        if key not in data:
            raise RecordError(f"{source} has no {key!r}; re-run the command that wrote it")
    if data["kind"] not in KINDS:
        raise RecordError(f"{source} has an unknown run kind {data['kind']!r}; one of: {', '.join(KINDS)}")


def write(record: RunRecord, folder: str | os.PathLike) -> Path:
    """Write OUT/run.json atomically; returns its path."""
    from .fileio import write_json

    return write_json(Path(folder) / RECORD_FILE, record.to_dict())


def read(path: str | os.PathLike) -> RunRecord:
    """Read a run folder's run.json (or the file itself), with one-line errors for anything else."""
    path = Path(path)
    source = path / RECORD_FILE if path.is_dir() else path
    if path.is_dir() and not source.is_file():
        legacy = [name for name in LEGACY_FILES if (path / name).is_file()]
        if legacy:
            raise RecordError(f"{path} was written by kenprune 0.1.0 ({legacy[0]}, before run records); "
                              f"re-run the command with this version to report on it")
        raise RecordError(f"{path} has no {RECORD_FILE}: it is not a kenprune run folder")
    if not source.is_file():
        raise RecordError(f"{source} does not exist")
    try:
        data = json.loads(source.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise RecordError(f"{source} is not valid JSON ({describe(exc)}); re-run the command that wrote it") from None
    return RunRecord.from_dict(data, str(source))


def _refuse_constant(name: str) -> Any:
    """json's hook for NaN, Infinity and -Infinity: strict JSON has none, and kenprune never writes them."""
    raise ValueError(f"non-finite number {name} (strict JSON has none; kenprune writes null)")


def is_run_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / RECORD_FILE).is_file()


def stages_from(timer: Any) -> list[Stage]:
    """Stage entries from a measure.StageTimer."""
    return [Stage(name, seconds, timer.peak_rss.get(name)) for name, seconds in timer.seconds.items()]


def files_in(folder: Path, entries: Iterable[tuple[str, str, str]]) -> list[FileEntry]:
    """FileEntry for each (relative path, format, role) that exists under `folder`, with its bytes."""
    from .measure import path_bytes

    return [FileEntry(rel, fmt, path_bytes(folder / rel), role) for rel, fmt, role in entries
            if (folder / rel).exists()]
