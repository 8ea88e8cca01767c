"""Named things users pick on the command line (models, corpora, methods, allocators).

A registry entry is the only place a name is defined; the CLI, the API and the docs list
the registry instead of repeating names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

from .errors import KenpruneError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    help: str


class Registry(Generic[T]):
    """An ordered name -> value table with one-line errors that list the valid names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        def decorator(value: T) -> T:
            self.add(name, value, help)
            return value

        return decorator

    def add(self, name: str, value: T, help: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = Entry(name, value, help)

    def get(self, name: str) -> T:
        try:
            return self._entries[name].value
        except KeyError:
            raise KenpruneError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())
