"""Federated calibration: statistics computed where the data is, merged exactly, the model pruned centrally.

    from kenprune.federated import ClientData, prune_rounds
    report = prune_rounds(model, [ClientData(w1, "wiki:calib"), ClientData(w2, "lee:calib")],
                          method="sparsegpt", sparsity=0.5, workers=2)     # Ray actors; 1: in-process
    report["federated"]["agreement"]                                         # each client's masks vs merged

Files for separate processes: `collect_dense` + `files.save_stats` on a client (`kenprune stats export`),
`stats.merge_layers` at the server (`kenprune stats merge`), `prune_from_stats` (`kenprune prune --stats`).
"""
from .rounds import ClientData, collect_dense, prune_from_stats, prune_rounds
from .stats import WEIGHTINGS, ShardStats, client_weights, merge, merge_layers

__all__ = ["ClientData", "ShardStats", "WEIGHTINGS", "client_weights", "collect_dense", "merge", "merge_layers",
           "prune_from_stats", "prune_rounds"]
