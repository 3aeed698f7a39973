"""Hybrid DRAM + SSD item-feature cache (paper 3.4.2): an LRU in memory over on-disk RocksDB.

Serving one large request per forward pass (instead of scatter-gather over leaf nodes)
loses the per-leaf caches, so the paper adds a hybrid cache. :class:`HybridItemCache`
keeps the hottest rows in an in-process LRU; misses read the on-disk RocksDB (rocksdict)
in one multi-get, and rows the disk lacks come from a loader (the item table) and are
written back to both tiers. Every lookup counts hits per tier, which ``/metrics`` exports.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class CacheStats:
    """Lookup counters: rows served by memory, by disk, and loaded from the source."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0

    @property
    def lookups(self) -> int:
        return self.memory_hits + self.disk_hits + self.misses


class HybridItemCache:
    """Fixed-width float32 rows by int64 key: memory LRU -> RocksDB -> ``loader``.

    Args:
        row_width: floats per row.
        loader: ``[n] int64 keys -> [n, row_width] float32`` for keys neither tier holds.
        memory_rows: LRU capacity in rows (0 disables the memory tier).
        disk_path: RocksDB directory (``None`` disables the disk tier).

    Example::

        cache = HybridItemCache(40, items.rows, memory_rows=100_000, disk_path="runs/items.db")
        rows = cache.get(np.array([3, 17, 3]))   # [3, 40]
    """

    def __init__(
        self,
        row_width: int,
        loader: Callable[[np.ndarray], np.ndarray],
        memory_rows: int = 100_000,
        disk_path: str | Path | None = None,
    ) -> None:
        if row_width < 1:
            raise ValueError(f"HybridItemCache.row_width={row_width}: must be >= 1")
        if memory_rows < 0:
            raise ValueError(f"HybridItemCache.memory_rows={memory_rows}: must be >= 0")
        self.row_width = row_width
        self.loader = loader
        self.memory_rows = memory_rows
        self.stats = CacheStats()
        self._lru: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._disk: Any = None
        if disk_path is not None:
            from rocksdict import Rdict

            Path(disk_path).parent.mkdir(parents=True, exist_ok=True)
            self._disk = Rdict(str(disk_path))

    def close(self) -> None:
        if self._disk is not None:
            self._disk.close()
            self._disk = None

    def get(self, keys: np.ndarray) -> np.ndarray:
        """``[n]`` int64 keys -> ``[n, row_width]`` float32 (duplicates allowed)."""
        keys = np.asarray(keys, dtype=np.int64).reshape(-1)
        out = np.empty((keys.shape[0], self.row_width), dtype=np.float32)
        unique, inverse = np.unique(keys, return_inverse=True)
        rows = np.empty((unique.shape[0], self.row_width), dtype=np.float32)
        missing: list[int] = []
        with self._lock:
            for i, k in enumerate(unique.tolist()):
                row = self._lru.get(k)
                if row is None:
                    missing.append(i)
                else:
                    self._lru.move_to_end(k)
                    rows[i] = row
            counts = np.bincount(inverse, minlength=len(unique))
            in_memory = np.ones(len(unique), dtype=bool)
            in_memory[missing] = False
            self.stats.memory_hits += int(counts[in_memory].sum())
        if missing:
            self._fill(unique, rows, np.asarray(missing, dtype=np.int64), inverse)
        out[:] = rows[inverse]
        return out

    def _fill(
        self, unique: np.ndarray, rows: np.ndarray, missing: np.ndarray, inverse: np.ndarray
    ) -> None:
        counts = np.bincount(inverse, minlength=len(unique))
        still = missing
        if self._disk is not None:
            found = self._disk[[int(unique[i]) for i in missing]]
            keep = []
            for i, raw in zip(missing.tolist(), found, strict=True):
                if raw is None:
                    keep.append(i)
                else:
                    rows[i] = np.frombuffer(raw, dtype=np.float32)
            hit = np.setdiff1d(missing, keep)
            self.stats.disk_hits += int(counts[hit].sum())
            still = np.asarray(keep, dtype=np.int64)
        if still.size:
            loaded = np.asarray(self.loader(unique[still]), dtype=np.float32)
            if loaded.shape != (still.size, self.row_width):
                raise ValueError(
                    f"HybridItemCache loader returned {loaded.shape}, "
                    f"expected {(still.size, self.row_width)}"
                )
            rows[still] = loaded
            self.stats.misses += int(counts[still].sum())
            if self._disk is not None:
                for i, row in zip(still.tolist(), loaded, strict=True):
                    self._disk[int(unique[i])] = row.tobytes()
        if self.memory_rows:
            with self._lock:
                for i in missing.tolist():
                    self._lru[int(unique[i])] = rows[i].copy()
                while len(self._lru) > self.memory_rows:
                    self._lru.popitem(last=False)
