"""Damaged copies of a file, the five ways files get damaged: half written, a stub, a bad sector, a
garbled header, nothing at all."""
from __future__ import annotations

import shutil
from pathlib import Path

KINDS = ("half", "seven-bytes", "middle-4k", "garbled-header", "empty")


def corrupt(src: Path, dst: Path, kind: str) -> Path:
    """Write a damaged copy of `src` at `dst` (the same name keeps its suffix) and return `dst`."""
    data = Path(src).read_bytes()
    if kind == "half":
        out = data[: len(data) // 2]
    elif kind == "seven-bytes":
        out = data[:7]
    elif kind == "middle-4k":
        # overwrite 4 KiB (or a third of a small file) in the middle with a non-zero pattern
        span = min(4096, max(1, len(data) // 3))
        start = (len(data) - span) // 2
        out = data[:start] + bytes((0xA5 + i) % 256 for i in range(span)) + data[start + span:]
    elif kind == "garbled-header":
        # keep the length but scramble the first bytes after safetensors' 8-byte size (a JSON header)
        # or the first bytes of a JSON file
        start = 8 if Path(src).suffix == ".safetensors" else 0
        out = data[:start] + b"{\x00]\xff" + b"#" * 12 + data[start + 16:]
    elif kind == "empty":
        out = b""
    else:
        raise ValueError(kind)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(out)
    return dst


def corrupt_copy(src: Path, tmp: Path, kind: str) -> Path:
    """A damaged copy of `src` under `tmp/kind/` with the same file name."""
    return corrupt(src, Path(tmp) / kind / Path(src).name, kind)


def damaged_folder(folder: Path, tmp: Path, kind: str, name: str = "model.safetensors") -> Path:
    """A copy of a model folder whose `name` file is damaged."""
    out = Path(tmp) / f"{Path(folder).name}-{kind}"
    shutil.copytree(folder, out)
    corrupt(Path(folder) / name, out / name, kind)
    return out
