"""Reports and KEN_viz: figures (pure functions), run-folder adapters, and the self-contained HTML page."""
from __future__ import annotations

from .build import write_report, write_viz
from .kenviz import ken_viz, kenviz_figures, load_masks
from .runs import RUN_KINDS, read_run

__all__ = ["write_report", "write_viz", "ken_viz", "kenviz_figures", "load_masks", "read_run", "RUN_KINDS"]
