"""`kenprune stats export|merge`: federated calibration statistics (sums and counts) as files; and the
federated option group of `kenprune prune` (--clients for per-block rounds, --stats FILE... for files)."""
from __future__ import annotations

import argparse

from ..settings import FEDERATED_WEIGHTINGS, Calibration, FederatedSettings
from .options import add_calibration, add_model, calibration_from, output_from


def add_federated(parser: argparse.ArgumentParser, defaults: FederatedSettings = FederatedSettings(),
                  how: str = "pruned in per-block rounds") -> None:
    """The federated option group; `how`: how the clients' statistics give the centralized result."""
    g = parser.add_argument_group("federated calibration (statistics leave a client, never its text)")
    g.add_argument("--clients", default=None, metavar="DATA,DATA,...",
                   help="one CORPUS[:SPLIT] per client (e.g. wiki,lee,newsgroups-mini), each sampled with "
                        f"--nsamples/--seqlen/--seed; {how} = the centralized result on their "
                        "union (default: no clients, ordinary calibration)")
    g.add_argument("--stats", nargs="+", default=list(defaults.stats), metavar="FILE",
                   help="prune from statistics files or `kenprune stats` folders instead of calibrating (one round "
                        "on the dense model; several files are merged) (default: none)")
    g.add_argument("--weighting", default=defaults.weighting, choices=FEDERATED_WEIGHTINGS,
                   help=f"unequal clients: tokens (their union's statistics) or equal (each the same say) "
                        f"(default {defaults.weighting})")
    g.add_argument("--workers", type=int, default=defaults.workers,
                   help=f"Ray workers the clients share; 1: in this process (default {defaults.workers})")
    g.add_argument("--ray-address", default=defaults.ray_address,
                   help="a Ray cluster HOST:PORT for the clients (default: local workers)")
    g.add_argument("--no-agreement", dest="agreement", action="store_false",
                   help="skip each client's own masks (their agreement with the merged masks; costs a prune per "
                        "client and layer)")


def federated_from(args: argparse.Namespace) -> FederatedSettings:
    clients = tuple(c.strip() for c in (args.clients or "").split(",") if c.strip())
    return FederatedSettings(clients=clients, stats=tuple(args.stats or ()), weighting=args.weighting,
                             workers=args.workers, ray_address=args.ray_address, agreement=args.agreement)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("stats", help="federated calibration: export a client's statistics, merge them",
                              description="Statistics a pruning method needs (Wanda's input norms, SparseGPT's "
                                          "Hessians), as sums and counts: computed where the data is "
                                          "(export), merged at the server (merge), pruned from with "
                                          "`kenprune prune --stats FILE...`.")
    sub = p.add_subparsers(dest="stats_command", metavar="export|merge", required=True)
    e = sub.add_parser("export", help="a client's statistics from its calibration data, on the dense model")
    add_model(e)
    e.add_argument("--method", default="wanda", help="the method the statistics are for: wanda (norms) or sparsegpt "
                                                     "(Hessians) (default wanda)")
    add_calibration(e, Calibration(), dtype=True)
    e.add_argument("--out", required=True, help="output folder: stats.safetensors, run.json")
    e.add_argument("--overwrite", action="store_true", help="replace an existing output folder that kenprune wrote")
    e.set_defaults(func=run_export)
    m = sub.add_parser("merge", help="merge statistics files (sums and counts) into one")
    m.add_argument("sources", nargs="+", metavar="FILE", help="statistics files or `kenprune stats` folders")
    m.add_argument("--weighting", default=FederatedSettings.weighting, choices=FEDERATED_WEIGHTINGS,
                   help="tokens (the union's statistics) or equal (each file the same say) (default tokens)")
    m.add_argument("--out", required=True, help="output folder: stats.safetensors, run.json")
    m.add_argument("--overwrite", action="store_true", help="replace an existing output folder that kenprune wrote")
    m.set_defaults(func=run_merge)


def _summary(record) -> str:
    d = record.details
    clients = ", ".join(f"{c['name']} ({c['tokens']} tokens)" for c in d["clients"])
    return (f"{d['operation']}: {d['statistic']} statistics of {record.model['name']} for {record.method}, "
            f"{d['blocks']} blocks, {d['tokens']} tokens from {len(d['clients'])} client(s): {clients}; "
            f"mode {d['mode']} (one round on the dense model)")


def run_export(args: argparse.Namespace) -> int:
    from ..jobs.stats import export

    record = export(args.model, args.method, calibration=calibration_from(args), output=output_from(args))
    print(_summary(record))
    print(f"wrote {args.out}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from ..jobs.stats import merge

    record = merge(args.sources, weighting=args.weighting, output=output_from(args))
    print(_summary(record))
    print(f"wrote {args.out}")
    return 0
