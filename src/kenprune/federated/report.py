"""What a federated prune says about itself, in lines (CLI summary) and rows (the report's summary table)."""
from __future__ import annotations

from typing import Any, Mapping


def federated_rows(fed: Mapping[str, Any]) -> dict[str, str]:
    """Report rows: the mode (rounds or one dense round), executor, weighting, each client and its agreement."""
    agreement = (fed.get("agreement") or {}).get("clients") or {}
    rows = {"federated mode": f"{fed['mode']}: {fed['mode_text']}",
            "clients run": f"{fed['executor']}" + (f", {fed['workers']} worker(s)" if fed.get("workers") else "")
                           + (f" at {fed['ray_address']}" if fed.get("ray_address") else ""),
            "weighting": f"{fed['weighting']} ({fed['tokens']} tokens in all)" if fed.get("weighting") else None}
    for c in fed["clients"]:
        share = f", weight {c['weight']:.3f}" if c.get("weight") is not None else ""
        rows[f"client {c['name']}"] = (f"{c['data']}: {c['windows']} windows x {c['seqlen']} tokens = {c['tokens']} "
                                       f"tokens, seed {c['seed']}{share}, windows sha256 {c['windows_sha256'][:12]}")
    for name, value in agreement.items():
        rows[f"mask agreement, {name} alone vs merged"] = f"{value:.4f}"
    if fed.get("allocation_scores"):
        rows["allocation scored from"] = _scoring(fed["allocation_scores"])
    return {k: v for k, v in rows.items() if v is not None}


def _scoring(scoring: Mapping[str, Any]) -> str:
    """Where an allocation's scores came from under federated calibration (never the clients' text)."""
    ran = f" ({scoring['executor']}, {scoring['seconds']:.1f} s)" if scoring.get("executor") else ""
    return f"{scoring['mode']}{ran}: {scoring['what']}"


def federated_lines(fed: Mapping[str, Any]) -> list[str]:
    """The CLI summary's federated lines."""
    agreement = (fed.get("agreement") or {}).get("clients") or {}
    lines = [f"federated ({fed['mode']}, {fed['executor']}, weighting {fed['weighting']}): "
             + ", ".join(f"{c['name']} {c['tokens']} tokens" for c in fed["clients"])]
    if agreement:
        lines.append("mask agreement with the merged masks: " + ", ".join(f"{k} {v:.4f}" for k, v in agreement.items()))
    if fed.get("allocation_scores"):
        lines.append("allocation scored from " + _scoring(fed["allocation_scores"]))
    return lines
