"""Random kills of real runs: does kenprune keep its promise about outputs, signals and resumption?

Each trial starts a real `kenprune prune`, `ken` or `search` on the embedded models, sends SIGINT,
SIGTERM, SIGHUP or SIGKILL at a random moment, then runs the same command again. It counts trials
that left debris after a catchable signal, changed a byte of the user's files, left no complete run
after the rerun, left debris after the rerun, or (search) resumed to another result than an
uninterrupted search. Every count must be zero.

    python benchmarks/faults.py [--trials 8] [--seed 0]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_table, save

from kenprune.fileio import debris
from kenprune.record import read

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL)
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def commands(work: Path) -> dict[str, list[str]]:
    """Short real runs on the embedded models (the search resumes from its checkpoint)."""
    return {
        "prune": ["prune", "--model", "smollm2-135m", "--method", "wanda", "--nsamples", "8", "--seqlen", "256",
                  "--eval", "wiki:test", "--eval-windows", "2"],
        "ken": ["ken", "--finetuned", str(work / "finetuned"), "--k", "0.25", "--eval", "pang-lee:test"],
        "search": ["search", "--model", "smollm2-135m", "--quick", "--workers", "1"],
    }


def kenprune(argv: list[str], kill: tuple[int, float] | None = None) -> tuple[int, float]:
    """Run `python -m kenprune ARGV`; with `kill` = (signal, seconds), send it then. (exit code, seconds)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "kenprune", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    if kill is not None:
        sig, at = kill
        try:
            proc.wait(timeout=at)
        except subprocess.TimeoutExpired:
            proc.send_signal(sig)
    _, err = proc.communicate()
    if kill is None and proc.returncode != 0:
        raise RuntimeError(f"kenprune {' '.join(argv)} failed:\n{err[-2000:]}")
    return proc.returncode, time.monotonic() - start


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="kenprune-faults-") as tmp:
        work = Path(tmp)
        mine = work / "mine"
        mine.mkdir()
        (mine / "notes.txt").write_text("the user's own file\n")
        kenprune(["finetune", "--model", "minilm-l6", "--data", "pang-lee", "--steps", "5",
                  "--out", str(work / "finetuned")])
        cmds = commands(work)
        durations, reference = {}, None
        for name, argv in cmds.items():  # one clean run each: its duration bounds the kill time
            _, durations[name] = kenprune(argv + ["--out", str(work / f"clean-{name}")])
        reference = read(work / "clean-search").details["function"]
        before = snapshot(mine)
        rows = []
        for trial in range(args.trials):
            name = rng.choice(sorted(cmds))
            sig = rng.choice(SIGNALS)
            at = rng.uniform(0.1, 1.0) * durations[name]
            out = work / f"trial-{trial}"
            argv = cmds[name] + ["--out", str(out)]
            code, _ = kenprune(argv, kill=(sig, at))
            finished_first = code == 0
            # the run folder can be whole although the signal came later (e.g. while the report was drawn)
            complete = (out / "run.json").is_file() and read(out).kind == name
            debris_after_signal = len(debris(work)) if sig != signal.SIGKILL else 0
            code_ok = finished_first or code == EXIT.get(sig, -signal.SIGKILL)
            rerun = argv + (["--overwrite"] if complete and name != "search" else [])
            kenprune(rerun)
            record = read(out)
            rows.append({
                "trial": trial, "command": name, "signal": signal.Signals(sig).name, "at_s": round(at, 1),
                "finished_first": finished_first, "whole_before_rerun": complete, "exit_code": code,
                "exit_code_ok": code_ok,
                "debris_after_signal": debris_after_signal, "user_files_intact": snapshot(mine) == before,
                "rerun_complete": record.kind == name, "debris_after_rerun": len(debris(work)),
                "resumed_equal": (record.details["function"] == reference) if name == "search" else None,
            })
            print_table(rows[-1:], list(rows[-1]))
    summary = {
        "bad_exit_codes": sum(not r["exit_code_ok"] for r in rows),
        "runs_with_debris": sum(r["debris_after_signal"] > 0 or r["debris_after_rerun"] > 0 for r in rows),
        "runs_losing_user_data": sum(not r["user_files_intact"] for r in rows),
        "failed_reruns_or_resumes": sum(not r["rerun_complete"] or r["resumed_equal"] is False for r in rows),
    }
    print()
    print_table(rows, list(rows[0]))
    print("\n" + ", ".join(f"{k} {v}" for k, v in summary.items()) + ("  (all zero: kept)" if not any(summary.values())
                                                                     else "  (NOT all zero)"))
    save("faults", {"trials": args.trials, "seed": args.seed, "commands": {k: " ".join(v) for k, v in cmds.items()},
                    "clean_seconds": durations, "reference_search_function": reference}, rows, summary=summary)


if __name__ == "__main__":
    main()
