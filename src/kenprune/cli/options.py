"""Argument groups every command shares, built from the settings' own defaults (written once, in settings.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..settings import DEFAULT_MODEL, Calibration, Evaluation, Output


def add_model(parser: argparse.ArgumentParser, default: str | None = DEFAULT_MODEL, required: bool = False,
              flag: str = "--model", help: str = "registry name, local folder, run folder or hub id") -> None:
    parser.add_argument(flag, default=None if required else default, required=required,
                        help=help + ("" if required or default is None else f" (default {default})"))


def add_calibration(parser: argparse.ArgumentParser, defaults: Calibration = Calibration(),
                    batch: bool = True, dtype: bool = False) -> None:
    g = parser.add_argument_group("calibration")
    g.add_argument("--calib", default=defaults.data, help=f"calibration data CORPUS:SPLIT (default {defaults.data})")
    g.add_argument("--nsamples", type=int, default=defaults.samples,
                   help=f"calibration windows (default {defaults.samples})")
    g.add_argument("--seqlen", type=int, default=defaults.seqlen,
                   help=f"tokens per calibration window (default {defaults.seqlen})")
    g.add_argument("--seed", type=int, default=defaults.seed, help=f"calibration sampling seed (default {defaults.seed})")
    if dtype:
        g.add_argument("--dtype", default=defaults.dtype, metavar="DTYPE",
                       help=f"compute dtype of the calibration forwards: auto|float32|bfloat16|float16 (default "
                            f"{defaults.dtype}: float32, which the record explains); statistics stay float32")
    if batch:
        g.add_argument("--batch-size", type=int, default=defaults.batch_size,
                       help=f"calibration windows per block forward (default {defaults.batch_size}; more is faster "
                            f"on a GPU, costs memory)")


def calibration_from(args: argparse.Namespace) -> Calibration:
    return Calibration(data=args.calib, samples=args.nsamples, seqlen=args.seqlen, seed=args.seed,
                       batch_size=getattr(args, "batch_size", Calibration.batch_size),
                       dtype=getattr(args, "dtype", Calibration.dtype))


def add_evaluation(parser: argparse.ArgumentParser, defaults: Evaluation = Evaluation(), before: bool = True,
                   flag: str = "--eval") -> None:
    g = parser.add_argument_group("evaluation (the pinned protocol: independent of the calibration settings)")
    g.add_argument(flag, dest="eval", default=defaults.data, metavar="CORPUS:SPLIT",
                   help="evaluate on this split, e.g. wiki:test" + (f" (default {defaults.data})" if defaults.data
                                                                      else " (default: no evaluation)"))
    g.add_argument("--eval-seqlen", type=int, default=defaults.seqlen,
                   help=f"tokens per evaluation window (default {defaults.seqlen})")
    g.add_argument("--eval-windows", type=int, default=defaults.windows,
                   help="evaluate only the first N windows" + (f" (default {defaults.windows})" if defaults.windows
                                                               else " (default: all)"))
    g.add_argument("--eval-dtype", default=defaults.dtype, metavar="DTYPE",
                   help=f"compute dtype of the evaluation: float32|bfloat16|float16|auto (default {defaults.dtype}, "
                        f"the pinned protocol; another one is marked in the record and report)")
    if before:
        g.add_argument("--no-eval-before", dest="eval_before", action="store_false",
                       help="skip the input model's evaluation (already known; saves time and memory)")


def evaluation_from(args: argparse.Namespace) -> Evaluation:
    return Evaluation(data=args.eval or None, seqlen=args.eval_seqlen, windows=args.eval_windows,
                      before=getattr(args, "eval_before", True),
                      dtype=getattr(args, "eval_dtype", Evaluation.dtype), **tasks_from(args))


def add_tasks(parser: argparse.ArgumentParser, defaults: Evaluation = Evaluation(), flag: str = "--eval-tasks",
              limit_flag: str = "--eval-limit") -> None:
    """Zero-shot tasks through lm-evaluation-harness (kenprune.evaluate.zero_shot), on the output model (and
    the input model, unless --no-eval-before)."""
    g = parser.add_argument_group("zero-shot tasks (lm-evaluation-harness, offline unless stock: tasks are named)")
    g.add_argument(flag, dest="tasks", default=defaults.tasks, metavar="TASKS",
                   help="default (kenprune's suite), all, NAME,... (analogy, cloze, continuation, sentiment, topic), "
                        "stock:NAME for an lm-eval task (needs internet or a local copy), or names from --task-dir "
                        "(default: no tasks)")
    g.add_argument(limit_flag, dest="task_limit", type=int, default=defaults.task_limit, metavar="N",
                   help="score only the first N items of each task, a quick look (default: every item)")
    g.add_argument("--task-dir", default=defaults.task_dir, metavar="DIR",
                   help="a folder of your own lm-eval task YAMLs (e.g. local PIQA JSONL copies); without "
                        f"{flag}, every task in it runs (default: none)")
    g.add_argument("--task-batch-size", type=int, default=defaults.task_batch_size,
                   help=f"lm-eval batch size (default {defaults.task_batch_size})")


def tasks_from(args: argparse.Namespace) -> dict:
    d = Evaluation()
    return {"tasks": getattr(args, "tasks", d.tasks), "task_limit": getattr(args, "task_limit", d.task_limit),
            "task_dir": getattr(args, "task_dir", d.task_dir),
            "task_batch_size": getattr(args, "task_batch_size", d.task_batch_size)}


def add_output(parser: argparse.ArgumentParser, required: bool = False, what: str = "the run's files and run.json",
               default: str | None = None) -> None:
    parser.add_argument("--out", required=required, default=default,
                        help=f"output folder: {what}" + (f" (default {default})" if default else ""))
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output folder that kenprune wrote (only after the new one is "
                             "complete); without it an existing non-empty folder is refused")


def output_from(args: argparse.Namespace) -> Output:
    return Output(Path(args.out) if args.out else None, getattr(args, "overwrite", False))


def task_lines(record) -> list[str]:
    """The zero-shot lines of a command's summary (none when it ran no tasks): per task and the mean."""
    from ..evaluate.zero_shot import summary_lines

    return summary_lines(record)


def print_tasks(record) -> None:
    for line in task_lines(record):
        print(line)
