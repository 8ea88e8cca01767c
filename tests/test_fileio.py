import json

import pytest

from kenprune.fileio import atomic_dir, atomic_file, write_json


def test_atomic_file_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "run"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("v1")
    assert (target / "a.txt").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("v2")
            raise RuntimeError("boom")
    assert (target / "a.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_write_json_round_trips(tmp_path):
    path = write_json(tmp_path / "r.json", {"x": 1, "p": tmp_path})
    assert json.loads(path.read_text()) == {"x": 1, "p": str(tmp_path)}
