"""Every example in README.md runs: each `kenprune` command of its ```bash blocks and each ```python block.

Commands run in README order in one folder (later ones read what earlier ones wrote: ft/ -> ken/ ->
rebuilt/, search/ -> dsa70/), in-process through `kenprune.cli.main`, in a smoke variant: SMOKE
shrinks sizes (samples, windows, steps, budget) and replaces smollm2-135m, where the example's point is
the mechanics, by a tiny random Llama with smollm2's real tokenizer. Every README command must be in
COMMANDS (what it adds in the smoke run) or SKIPPED (why it does not run here), so a new or changed
README command fails this test until it is accounted for.
"""
from __future__ import annotations

import glob
import re
import shlex
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

TINY = "{tiny}"  # the tiny Llama folder (smollm2's tokenizer, 2 blocks, 256 positions)
SHORT_EVAL = ["--eval-seqlen", "64", "--eval-windows", "1"]  # the tiny model's context is 256 tokens
SHORT_CALIB = ["--nsamples", "2", "--seqlen", "64"]

# option -> smoke value, applied to every command that has the option
SMOKE = {
    "--model": {"smollm2-135m": TINY},
    "--pretrained": {"smollm2-135m": TINY},
    "--tokenizer": {"smollm2-135m": TINY},
    "--nsamples": "2",
    "--seqlen": "64",
    "--steps": "2",
    "--budget": "4",
    "--workers": "1",  # Ray's start-up alone takes longer than the whole smoke search
    "--max-windows": "1",
    "--eval-windows": "1",
    "--keep-first": "0",  # the tiny model has 2 blocks: keeping 4 + 2 would leave none to prune
    "--keep-last": "0",
    "--limit": "2",  # zero-shot items per task
    "--eval-limit": "2",
}

# README command (whitespace-normalised, optional [...] kept as written) -> arguments the smoke run adds
COMMANDS = {
    "kenprune models": [],
    "kenprune data --tokenizer smollm2-135m": [],
    "kenprune eval --model smollm2-135m --data wiki:test --seqlen 512 --max-windows 16": [],
    "kenprune finetune --model minilm-l6 --data pang-lee --steps 40 --out ft/":
        ["--seqlen", "32", "--eval-windows", "1"],
    "kenprune ken --finetuned ft/ --k 0.25 --out ken/ --eval pang-lee:test": [],
    "kenprune ken apply --base ft/initial --subnetwork ken/subnetwork.safetensors --out rebuilt/": [],
    "kenprune ken --finetuned ft/ --k 0.25 --selection dare --out dare/ --eval pang-lee:test": [],
    "kenprune ken --finetuned ft/ --k 0.25 --allocation global --out ken-global/ --eval pang-lee:test": [],
    "kenprune ken lora --finetuned ft/ --match ken/ --out lora/ --eval pang-lee:test": [],
    "kenprune prune --model smollm2-135m --method wanda --sparsity 0.5 [--pattern 2:4] --calib wiki:calib "
    "--nsamples 128 --seqlen 512 --seed 0 --out pruned/ --eval wiki:test": SHORT_EVAL,
    # without --model these use the default smollm2-135m; the smoke run names the tiny model
    "kenprune prune --method wanda --sparsity 0.7 --allocation owl --out owl70/ --eval wiki:test":
        ["--model", TINY, *SHORT_CALIB, *SHORT_EVAL],
    "kenprune search --model smollm2-135m --method wanda --sparsity 0.7 --budget 100 --workers 2 --seed 0 "
    "--out search/": [*SHORT_CALIB, *SHORT_EVAL, "--population", "2", "--children", "2"],
    "kenprune prune --method wanda --sparsity 0.7 --allocation search/best.json --out dsa70/ --eval wiki:test":
        ["--model", TINY, *SHORT_CALIB, *SHORT_EVAL],
    "kenprune report pruned/": [],
    "kenprune report */ --out sweep.html": [],
    "kenprune viz --optimized ken/subnetwork.safetensors --matrix query": [],
    "kenprune viz --pretrained smollm2-135m --optimized pruned/model/ --matrix q_proj": [],
    "kenprune structured --model smollm2-135m --importance taylor --ratio 0.2 [--keep-first 4 --keep-last 2] "
    "[--global-ranking] --out structured/ --eval wiki:test":
        # the latency comparison is a timing measurement (prefill of 512 tokens), not the example's mechanics
        [*SHORT_CALIB, *SHORT_EVAL, "--no-latency"],
    "kenprune recover --model structured/ --data wiki:calib --steps 200 --out recovered/":
        ["--seqlen", "64", *SHORT_EVAL],
    "kenprune structured --model smollm2-135m --importance beta-rank --beta 0.5 --stability 3 --ratio 0.2 "
    "--steps 40 --from-scratch --out beta/ --eval wiki:test":
        [*SHORT_CALIB, *SHORT_EVAL, "--no-latency", "--train-seqlen", "32"],
    "kenprune structured --model smollm2-135m --importance polarization --steps 40 --ratio 0.2 --out gates/ "
    "--eval wiki:test": [*SHORT_EVAL, "--no-latency", "--train-seqlen", "32"],
    "kenprune tokens --model minilm-l6 --method zero-tprune --keep 0.6 --out tokens-zt/":
        ["--texts", "4", "--latency-repeats", "1", "--examples", "1"],
    "kenprune tokens --model ft/ --method tome --schedule 1:0.9,2:0.75,3:0.6 --data pang-lee:test --out tokens-ft/":
        ["--texts", "4", "--latency-repeats", "1", "--examples", "1"],
    "kenprune eval --model smollm2-135m --tasks default --limit 200": [],
    "kenprune stats export --model smollm2-135m --method sparsegpt --calib lee:calib --nsamples 16 --seqlen 256 "
    "--out client-lee/": [],
    "kenprune stats export --model smollm2-135m --method sparsegpt --calib wiki:calib --nsamples 16 --seqlen 256 "
    "--out client-wiki/": [],
    "kenprune stats merge client-lee/ client-wiki/ --weighting tokens --out merged-stats/": [],
    "kenprune prune --model smollm2-135m --method sparsegpt --sparsity 0.5 --stats merged-stats/ --out fed-files/ "
    "--eval wiki:test": SHORT_EVAL,
    "kenprune prune --model smollm2-135m --method wanda --sparsity 0.5 --clients wiki,lee,newsgroups-mini "
    "--nsamples 16 --seqlen 256 --workers 2 --out fed-rounds/ --eval wiki:test": SHORT_EVAL,
    "kenprune phase-map --model minilm-l6 --data pang-lee --steps 0,40,80,160 --densities 0.9,0.7,0.5,0.3 "
    "--recover-steps 10 --out phase/": ["--recover-steps", "1", "--eval-examples", "4", "--alphas", "3",
                                        "--seqlen", "32", "--batch-size", "4", "--densities", "0.9,0.5"],
    "kenprune report phase/": [],
    "kenprune prune --method wanda --sparsity 0.5 --eval wiki:test --eval-tasks default --eval-limit 200 "
    "--out wanda50/": ["--model", TINY, *SHORT_CALIB, *SHORT_EVAL],
    "kenprune prune --model smollm2-135m --method sparsegpt --max-memory 600MB --out big/ --eval wiki:test":
        [*SHORT_CALIB, *SHORT_EVAL],  # the tiny model streams too: 600MB is below the runtime's share
}

# README command -> why it does not run here
SKIPPED = {
    "kenprune eval --model wanda50/ --tasks stock:hellaswag,stock:piqa":
        "lm-eval's stock tasks download their data from the hub: no internet here",
    "kenprune eval --model wanda50/ --task-dir my_tasks/": "a folder of the user's own task files",
}

# README lines that are not kenprune commands: set-up scripts (they install a venv; CI runs them itself)
NOT_COMMANDS = ("./scripts/", ". .venv/bin/activate")

# README commands that fail today for a reason outside this test's reach -> the reason; they still run,
# and the test fails once they succeed so the entry is removed
KNOWN_BROKEN: dict[str, str] = {}

# ```python blocks (by their first line) -> (README text, smoke text) replacements
PYTHON = {
    "from kenprune import ken_viz": [],  # reads ken/ from the commands above
    "from kenprune import apply_token_pruning, load": [],
    "import kenprune": [
        ('"smollm2-135m"', f'"{TINY}"'),
        ("Calibration(samples=32)", "Calibration(samples=2, seqlen=64)"),
        ('Evaluation(data="wiki:test", windows=8)', 'Evaluation(data="wiki:test", windows=1, seqlen=64)'),
    ],
}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def readme_commands() -> list[str]:
    """Every command line of the ```bash blocks, continuation lines joined, comments dropped, in order."""
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if not line or line.startswith("#") or line.startswith(NOT_COMMANDS):
                continue
            commands.append(" ".join(line.split()))
    return commands


def smoke_argv(command: str, tiny: Path) -> list[str]:
    """The smoke variant of a README command: optional [...] parts included, SMOKE values, COMMANDS' extras."""
    words = shlex.split(command.replace("[", "").replace("]", ""))
    assert words[0] == "kenprune", command
    argv = []
    for i, word in enumerate(words[1:], start=1):
        rule = SMOKE.get(words[i - 1]) if i > 1 else None
        if isinstance(rule, dict):
            word = rule.get(word, word)
        elif rule is not None:
            word = rule
        argv.append(word)
    argv += COMMANDS[command]
    expanded = []
    for word in argv:
        word = word.replace(TINY, str(tiny))
        expanded += sorted(glob.glob(word)) if "*" in word else [word]
    return expanded


def test_every_readme_command_is_accounted_for():
    commands = readme_commands()
    assert len(commands) >= 15
    unknown = [c for c in commands if c not in COMMANDS and c not in SKIPPED]
    assert not unknown, f"README commands without a smoke rule in tests/test_readme.py: {unknown}"
    stale = [c for c in [*COMMANDS, *SKIPPED] if c not in commands]
    assert not stale, f"smoke rules for commands no longer in the README: {stale}"
    firsts = [block.splitlines()[0] for block in _blocks("python")]
    assert sorted(firsts) == sorted(PYTHON), "README python blocks and PYTHON differ"


def test_readme_examples_run(tiny_llama_folder, tmp_path, monkeypatch, capsys):
    from kenprune.cli import main

    monkeypatch.chdir(tmp_path)
    ran, broken, timings = [], {}, []
    for command in readme_commands():
        if command in SKIPPED:
            continue
        argv = smoke_argv(command, tiny_llama_folder)
        start = time.perf_counter()
        code = main(argv)
        timings.append((round(time.perf_counter() - start, 1), command))
        captured = capsys.readouterr()
        if command in KNOWN_BROKEN:
            broken[command] = code
            continue
        assert code == 0, f"README command failed ({code}): {command}\nsmoke: {argv}\n{captured.err[-2000:]}"
        ran.append(command)
    fixed = [c for c, code in broken.items() if code == 0]
    assert not fixed, f"these README commands work now; remove them from KNOWN_BROKEN: {fixed}"
    assert set(readme_commands()) <= set(ran) | set(SKIPPED) | set(KNOWN_BROKEN)

    for block in _blocks("python"):
        source = block
        for old, new in PYTHON[block.splitlines()[0]]:
            assert old in source, f"README python block changed: {old!r} is gone"
            source = source.replace(old, new.replace(TINY, str(tiny_llama_folder)))
        first = block.splitlines()[0]
        if first in KNOWN_BROKEN:
            from kenprune.errors import KenpruneError

            try:
                exec(compile(source, "README.md", "exec"), {"__name__": "readme"})
            except KenpruneError:
                continue
            pytest.fail(f"this README python block works now; remove it from KNOWN_BROKEN: {first}")
        exec(compile(source, "README.md", "exec"), {"__name__": "readme"})
        ran.append(first)
    assert sorted(r for r in ran if r in PYTHON) == sorted(set(PYTHON) - set(KNOWN_BROKEN))
    print("README smoke timings (s):", sorted(timings, reverse=True)[:5])
