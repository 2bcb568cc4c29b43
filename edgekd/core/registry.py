"""A tiny name → object registry (the timm ``@register_model`` pattern). Torch-free."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from edgekd.core.errors import EdgeKDError, unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries; an unknown name fails with the closest and the known ones (of a long list, the
    close ones and ``listing``: what lists them all, such as a command)."""

    def __init__(self, what: str, error: type[EdgeKDError] = EdgeKDError, listing: str | None = None):
        self.what = what
        self.error = error
        self.listing = listing
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.what} '{name}' registered twice")
            self._entries[name] = obj
            return obj
        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.what, name, self._entries, self.error, self.listing) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
