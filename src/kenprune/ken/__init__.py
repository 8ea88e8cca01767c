"""KEN: keep k fine-tuned values per row, chosen through a kernel density estimate; reset the rest.

select.py: the per-row math (pure, vectorised); kernels.py: the six KDE kernels; apply.py: whole
models; subnetwork.py: the file; api.py: `kenprune ken` / `ken apply`; baselines.py: comparisons.
"""

SELECTIONS = ("all", "blocks")  # every parameter tensor (the paper), or transformer blocks only
