"""Structured pruning as in LLM-Pruner: remove whole attention heads and MLP channels.

groups (coupled structures per model family), importance (one interface, several
estimators), plan (how many units each block keeps), removal (physical slicing),
io (save / reload), recover (LoRA, merged back), api (the pipeline the CLI calls).
"""
