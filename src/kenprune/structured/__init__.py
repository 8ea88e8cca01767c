"""Structured pruning as in LLM-Pruner: remove whole attention heads and MLP channels.

groups (coupled structures, from the family adapters in kenprune.models.families), importance
(one interface, several estimators), plan (how many units each block keeps), removal (physical
slicing), io (save / reload), recover (LoRA, merged back), api (the pipeline the CLI calls).
"""
