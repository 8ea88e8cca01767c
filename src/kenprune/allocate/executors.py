"""Where candidate evaluations run: in this process, or spread over Ray workers.

An evaluator is a picklable callable `payload -> float` that sets itself up lazily on first
use (a worker loads its own model once). Executors keep the order of their inputs, and a
failed evaluation is retried on a fresh worker; after `retries` more tries it is an error,
never a silently missing result.
"""
from __future__ import annotations

import logging
import os
import socket
from collections import deque
from typing import Any, Callable, Protocol, Sequence

from ..errors import KenpruneError

log = logging.getLogger(__name__)
Evaluator = Callable[[Any], float]


class Executor(Protocol):
    workers: int

    def map(self, payloads: Sequence[Any]) -> list[float]: ...

    def close(self) -> None: ...


class SequentialExecutor:
    """Evaluate one candidate after the other in this process (no Ray needed)."""

    name = "sequential"

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator
        self.workers = 1

    def map(self, payloads: Sequence[Any]) -> list[float]:
        return [float(self.evaluator(p)) for p in payloads]

    def close(self) -> None:
        pass


class _Worker:
    """A Ray actor holding one evaluator (and so one loaded model) for its lifetime."""

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator

    def evaluate(self, payload: Any) -> float:
        return float(self.evaluator(payload))


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast with one line when a Ray address does not answer (instead of a long hang)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise KenpruneError(f"--ray-address {address!r} is not HOST:PORT (or ray://HOST:PORT)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise KenpruneError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); check the "
                            f"address, or drop --ray-address to run on local workers") from None


def start_ray(workers: int, address: str | None = None) -> int:
    """Start (or join) Ray for `workers` actors: local Ray by default, or a cluster at `address`; the CPUs
    each actor reserves (Ray then sets its OMP_NUM_THREADS, torch's thread count). One-line errors."""
    try:
        import ray
    except ImportError:
        raise KenpruneError("Ray is not installed: `pip install 'kenprune[search]'`, or use --workers 1 "
                            "to run sequentially") from None
    if workers < 1:
        raise KenpruneError(f"--workers must be at least 1, got {workers}")
    threads = 1 if address else max(1, (os.cpu_count() or 1) // workers)
    if address:
        check_reachable(address)
    try:
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = workers * threads
            ray.init(**kwargs)
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError ... on bad clusters
        raise KenpruneError(f"cannot start Ray{' at ' + address if address else ''}: "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return threads


class RayExecutor:
    """Evaluate on `workers` Ray actors: local Ray by default, or a cluster at `address`."""

    name = "ray"

    def __init__(self, evaluator: Evaluator, workers: int, address: str | None = None, retries: int = 2):
        self.threads = start_ray(workers, address)
        import ray

        self.ray, self.workers, self.retries = ray, workers, retries
        self._actor_cls = ray.remote(num_cpus=self.threads)(_Worker)
        self._evaluator = evaluator
        self._actors = [self._actor_cls.remote(evaluator) for _ in range(workers)]

    def map(self, payloads: Sequence[Any]) -> list[float]:
        ray = self.ray
        results: list[float | None] = [None] * len(payloads)
        queue = deque((i, 0) for i in range(len(payloads)))
        idle = deque(range(len(self._actors)))
        pending: dict[Any, tuple[int, int, int]] = {}
        while queue or pending:
            while queue and idle:
                i, tries = queue.popleft()
                a = idle.popleft()
                pending[self._actors[a].evaluate.remote(payloads[i])] = (i, tries, a)
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i, tries, a = pending.pop(ref)
                try:
                    results[i] = float(ray.get(ref))
                except Exception as exc:  # a crashed worker or an error inside the evaluator
                    if tries >= self.retries:
                        raise KenpruneError(f"evaluating candidate {i} failed {tries + 1} times on Ray: "
                                            f"{str(exc).splitlines()[0][:200]}") from None
                    log.warning("candidate %d failed on worker %d (%s); retrying on a fresh worker",
                                i, a, type(exc).__name__)
                    ray.kill(self._actors[a], no_restart=True)
                    self._actors[a] = self._actor_cls.remote(self._evaluator)
                    queue.appendleft((i, tries + 1))
                idle.append(a)
        return [float(r) for r in results]

    def close(self) -> None:
        for actor in self._actors:
            self.ray.kill(actor, no_restart=True)
        self._actors = []


def make_executor(evaluator: Evaluator, workers: int = 1, address: str | None = None) -> Executor:
    """Ray when asked for more than one worker or a cluster, else this process."""
    if workers < 1:
        raise KenpruneError(f"--workers must be at least 1, got {workers}")
    if workers == 1 and not address:
        return SequentialExecutor(evaluator)
    return RayExecutor(evaluator, workers, address)


def default_workers() -> int:
    """Half the cores, at most 4: each worker holds a model copy and its own torch threads."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))
