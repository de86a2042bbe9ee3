"""A least-recently-used cache bounded by the bytes of what it holds (the lookups' responses
come from the network: their number and size are not ours to choose)."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass
class Entry(Generic[V]):
    """One cached value, its size, when it was fetched and its HTTP validator."""

    value: V
    size: int
    etag: str | None = None
    fetched_at: float = field(default_factory=time.monotonic)

    @property
    def age(self) -> float:
        """Seconds since the value was fetched (or last revalidated)."""
        return time.monotonic() - self.fetched_at


class BoundedCache(Generic[V]):
    """Entries by key; the least recently used go first once ``max_bytes`` is exceeded. A value
    larger than the whole budget is not kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, Entry[V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Entry[V] | None:
        """The entry of ``key``, now the most recently used."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, value: V, size: int, etag: str | None = None) -> Entry[V]:
        """Keeps ``value`` (replacing the previous entry of ``key``) and evicts as needed."""
        self.discard(key)
        entry = Entry(value, size, etag)
        if size <= self.max_bytes:
            self._entries[key] = entry
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.bytes -= evicted.size
        return entry

    def discard(self, key: str) -> None:
        """Forgets ``key``."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size
