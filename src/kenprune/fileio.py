"""Atomic writes: nothing half-written on failure (write to a temporary name, then rename).

Temporaries sit beside their target as `.NAME.<random>.kenprune-<pid>.tmp`: removed on any failure or
signal that reaches Python, and swept by the next write beside them when their process is gone (after
a SIGKILL). Files and folders get the permissions the user's umask gives, like any other program's.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

_TMP = re.compile(r"^\..+\.kenprune-(\d+)\.(tmp|old)$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _suffix(kind: str = "tmp") -> str:
    return f".kenprune-{os.getpid()}.{kind}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove temporaries in `folder` left by kenprune processes that no longer run (e.g. after SIGKILL)."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TMP.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def debris(folder: str | os.PathLike) -> list[Path]:
    """kenprune temporaries present in `folder` (what a failed or killed run would leave)."""
    try:
        return sorted(p for p in Path(folder).iterdir() if _TMP.match(p.name))
    except OSError:
        return []


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_suffix(), dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it replaces `path` only if the block succeeds.

    An existing `path` is moved aside only once the new folder is complete, and deleted after the
    new one is in place; with overwrite=False an existing `path` is an error (checked again at the end)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=_suffix(), dir=path.parent))
    os.chmod(tmp_path, 0o777 & ~_umask())
    try:
        yield tmp_path
        if path.exists():
            if not overwrite:
                raise FileExistsError(path)
            old = path.with_name(f".{path.name}{_suffix('old')}")
            os.replace(path, old)
            os.replace(tmp_path, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path, ignore_errors=True)


def write_json(path: str | os.PathLike, data: Any, *, strict: bool = True) -> Path:
    """Write JSON atomically, pretty-printed, and return the path. strict: no NaN or infinity (what other
    readers accept); a file only kenprune reads back may allow them (a search checkpoint's rejected fitness)."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default, allow_nan=not strict) + "\n")
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def is_within(path: Path, other: Path) -> bool:
    """True when `path` is `other` or inside it (both resolved)."""
    path, other = path.resolve(), other.resolve()
    return path == other or other in path.parents


def check_writable(folder: Path) -> None:
    """Raise OSError unless a file can be created where `folder` is (or would be) created."""
    parent = folder.resolve()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{parent} is not a folder")
    fd, probe = tempfile.mkstemp(prefix=".kenprune-probe.", suffix=_suffix(), dir=parent)
    os.close(fd)
    os.unlink(probe)
