"""`kenprune report`: one self-contained HTML report (plus PNGs) for one or more run folders."""
from __future__ import annotations

import argparse

from ..errors import KenpruneError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="write a self-contained HTML report of run folders (opens offline)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="folders written by prune, ken, search, ...")
    p.add_argument("--out", default=None,
                   help="HTML file to write (default: RUN_DIR/report.html; several runs: kenprune-report.html "
                        "in their common parent folder)")
    p.set_defaults(func=run)


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise KenpruneError("reports need matplotlib: pip install 'kenprune[report]'") from None


def run(args: argparse.Namespace) -> int:
    require_matplotlib()
    from ..report import write_report

    out = write_report(run_paths(args.run_dirs), out=args.out)
    print(f"report written: open {out.resolve().as_uri()}")
    return 0


def run_paths(paths: list[str]) -> list[str]:
    """The run folders among several paths (`kenprune report kenprune-demo/*` also matches report.html and
    report-figures/): the others are skipped with one line naming them and why. A single path, a missing
    path or a list with no run folder at all is left to the report, whose error names the problem."""
    import sys
    from pathlib import Path

    from ..record import RECORD_FILE, is_run_folder

    if len(paths) < 2:
        return paths
    kept, skipped = [], []
    for path in paths:
        p = Path(path)
        if not p.exists() or is_run_folder(p) or (p.is_file() and p.name == RECORD_FILE):
            kept.append(path)
        else:
            skipped.append(f"{path} ({'a file' if p.is_file() else f'no {RECORD_FILE}'})")
    if not kept:
        return paths
    if skipped:
        print(f"kenprune: skipped {len(skipped)} path{'s' * (len(skipped) > 1)} that "
              f"{'are' if len(skipped) > 1 else 'is'} not a run folder: {', '.join(skipped)}", file=sys.stderr)
    return kept


def write_report_quietly(run_dir) -> None:
    """The report every run command writes at its end; a run that succeeded never fails on its report."""
    if run_dir is None:
        return
    try:
        require_matplotlib()
        from ..report import write_report

        out = write_report([run_dir])
    except KenpruneError as exc:
        print(f"kenprune: no report written ({exc})")
        return
    print(f"report: {out.resolve().as_uri()}")
