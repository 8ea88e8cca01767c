"""`kenprune viz`: KEN_viz for any model: kept entries of one matrix type, as a self-contained HTML page."""
from __future__ import annotations

import argparse

from .report import require_matplotlib


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("viz", help="KEN_viz: which entries KEN kept in one matrix type, across layers")
    p.add_argument("--optimized", required=True,
                   help="a KEN subnetwork file (kept positions read directly), or the optimized model folder")
    p.add_argument("--pretrained", default=None,
                   help="the pre-trained model (folder, .safetensors or model name); needed with a model folder")
    p.add_argument("--matrix", required=True,
                   help="matrix type: a tensor name (its layer numbers match every layer), a glob, or a fragment "
                        "such as q_proj")
    p.add_argument("--out", default=None, help="HTML file to write (default: kenviz-MATRIX.html)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_matplotlib()
    from ..report import write_viz

    out = write_viz(args.pretrained, args.optimized, args.matrix, out=args.out)
    print(f"KEN_viz written: open {out.resolve().as_uri()}")
    return 0
