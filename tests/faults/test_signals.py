"""Signals at random moments of real runs, in subprocesses: SIGINT, SIGTERM and SIGHUP end a command with
one line and its exit code (130, 143, 129) and leave no temporaries; after SIGKILL the same command runs
again to completion and sweeps what the killed one left. The user's files are byte-identical throughout."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.conftest import leftovers, snapshot

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
LINE = {signal.SIGINT: "kenprune: interrupted;", signal.SIGTERM: "kenprune: stopped by SIGTERM;",
        signal.SIGHUP: "kenprune: stopped by SIGHUP;"}


def commands(model: Path, out: Path) -> dict[str, list[str]]:
    """Real commands on a tiny model, long enough to be interrupted in the middle."""
    return {
        "finetune": ["finetune", "--model", str(model), "--data", "lee", "--steps", "300", "--batch-size", "2",
                     "--seqlen", "64", "--eval-seqlen", "64", "--eval-windows", "2", "--out", str(out)],
        "prune": ["prune", "--model", str(model), "--method", "sparsegpt", "--nsamples", "48", "--seqlen", "128",
                  "--eval", "lee:test", "--eval-seqlen", "128", "--eval-windows", "4", "--out", str(out)],
    }


def start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "kenprune", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


def signal_at_random(proc: subprocess.Popen, sig: int, rng: random.Random, parent: Path) -> None:
    """Send `sig` at a random moment once the command has started working (its imports take seconds)."""
    deadline = time.monotonic() + 8 + rng.uniform(0, 6)
    while time.monotonic() < deadline and proc.poll() is None:
        if leftovers(parent) and rng.random() < 0.2:  # sometimes right while it writes
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(sig)


@pytest.mark.parametrize("command,sig,seed", [
    ("finetune", signal.SIGTERM, 1), ("finetune", signal.SIGINT, 2), ("finetune", signal.SIGHUP, 3),
    ("prune", signal.SIGTERM, 4), ("prune", signal.SIGINT, 5),
])
def test_a_signal_leaves_one_line_no_debris_and_the_users_files(command, sig, seed, tiny_llama_folder, user_folder):
    out = user_folder.parent / "run"
    before = snapshot(user_folder)
    proc = start(commands(tiny_llama_folder, out)[command])
    signal_at_random(proc, sig, random.Random(seed), out.parent)
    _, err = proc.communicate(timeout=600)
    if proc.returncode == 0:  # it finished first: then its output is whole
        assert (out / "run.json").is_file()
    else:
        assert proc.returncode == EXIT[sig], err[-2000:]
        last = err.strip().splitlines()[-1].split("\r")[-1]  # after a progress bar the failure cleared
        assert last.startswith(LINE[sig]) and "nothing half-written was kept" in last and "Traceback" not in err
        assert not out.exists()
    assert not leftovers(out.parent) and snapshot(user_folder) == before


@pytest.mark.parametrize("command,seed", [("finetune", 6), ("prune", 7)])
def test_after_sigkill_the_same_command_completes_and_sweeps_the_debris(command, seed, tiny_llama_folder,
                                                                        user_folder):
    out = user_folder.parent / "run"
    before = snapshot(user_folder)
    argv = commands(tiny_llama_folder, out)[command]
    proc = start(argv)
    signal_at_random(proc, signal.SIGKILL, random.Random(seed), out.parent)
    proc.communicate(timeout=600)
    assert proc.returncode in (0, -signal.SIGKILL)
    again = start(argv + (["--overwrite"] if proc.returncode == 0 else []))
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    assert (out / "run.json").is_file() and not leftovers(out.parent) and snapshot(user_folder) == before
