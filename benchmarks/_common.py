"""Shared helpers for benchmark scripts: a printed table and a JSON file with provenance."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from kenprune import provenance
from kenprune.fileio import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def save(name: str, config: dict[str, Any], rows: list[dict[str, Any]], **extra: Any) -> Path:
    path = write_json(RESULTS / f"{name}.json",
                      {"benchmark": name, "config": config, "rows": rows, **extra, **provenance.record()})
    print(f"\nwrote {path}")
    return path
