"""Token pruning (Zero-TPrune, ToMe and baselines): pure math in functional.py, methods, schedules,
family adapters and the in-place patch."""
from .adapters import TOKEN_ADAPTERS, token_adapter_for
from .methods import TOKEN_METHODS, TokenOptions
from .patch import apply_token_pruning, pool, remove_token_pruning
from .schedule import FlopsTarget

__all__ = ["FlopsTarget", "TOKEN_ADAPTERS", "TOKEN_METHODS", "TokenOptions", "apply_token_pruning", "pool",
           "remove_token_pruning", "token_adapter_for"]
