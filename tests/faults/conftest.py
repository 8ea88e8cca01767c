"""Shared pieces of the fault-injection suite: a tiny model folder, a snapshot of a folder's bytes, debris."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path: to prove pre-existing data is untouched."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """kenprune temporaries anywhere under `folder`."""
    return sorted(str(p) for p in folder.rglob("*") if ".kenprune-" in p.name)


@pytest.fixture
def user_folder(tmp_path):
    """A folder of the user's own, with a file kenprune must never touch."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes\n")
    return folder
