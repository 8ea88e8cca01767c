"""The prunability phase map (the three-regime model): prune checkpoints along a temperature-like axis at
several densities, and measure quality and the loss barrier to the dense parent (`barrier`: pure functions;
`measure`: the held-out set, losses, masked recovery; the job is `kenprune.jobs.phase_map`)."""
from .barrier import REGIMES, barrier, interpolate, linear_cka, loss_curve, regime

__all__ = ["REGIMES", "barrier", "interpolate", "linear_cka", "loss_curve", "regime"]
