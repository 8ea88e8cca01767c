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

    out = write_report(args.run_dirs, out=args.out)
    print(f"report written: open {out.resolve().as_uri()}")
    return 0


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
