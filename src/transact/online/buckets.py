"""Users to arms by a salted hash: stable across runs, independent between salts.

A user's bucket position is ``h(salt, user) / 2^64`` in ``[0, 1)``, with ``h`` the
SplitMix64 finalizer chained over a 64-bit digest of the salt and the user id (the world's
counter-based generator uses the same finalizer). Arms take consecutive ranges of that
position in the order given, ``[0, s_1)``, ``[s_1, s_1 + s_2)``, ...; the users above the
last range are the rest. So a user's arm depends only on the salt, the user id and the
shares, never on the population or the run, and changing the salt reshuffles everyone
(an experiment that reuses a salt reuses the previous experiment's buckets and their
carry-over). :func:`bucket_position_reference` is the plain per-user version the
vectorized one is tested against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

REST = -1
"""Arm index of the users in no arm."""

_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def salt_key(salt: str) -> int:
    """A 64-bit key of the salt string (BLAKE2b, so similar salts give unrelated keys)."""
    return int.from_bytes(hashlib.blake2b(salt.encode("utf-8"), digest_size=8).digest(), "big")


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def bucket_position(user_ids: np.ndarray, salt: str) -> np.ndarray:
    """``[U]`` float64 positions in ``[0, 1)`` of ``user_ids`` under ``salt``."""
    users = np.asarray(user_ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = _mix(np.array([salt_key(salt)], np.uint64) + np.uint64(_GAMMA))
        z = _mix(z ^ (users + np.uint64(_GAMMA)))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _mix_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def bucket_position_reference(user_ids: np.ndarray, salt: str) -> np.ndarray:
    """Plain per-user Python version of :func:`bucket_position` (for tests)."""
    z0 = _mix_int((salt_key(salt) + _GAMMA) & _MASK)
    out = [
        (_mix_int(z0 ^ ((int(u) + _GAMMA) & _MASK)) >> 11) * 2.0**-53
        for u in np.asarray(user_ids).tolist()
    ]
    return np.asarray(out, dtype=np.float64)


def assign_arms(user_ids: np.ndarray, shares: Mapping[str, float], salt: str) -> np.ndarray:
    """``[U]`` arm index of each user (position in ``shares``' order), :data:`REST` if none.

    ``shares`` maps arm names to shares in (0, 1] summing to at most 1.
    """
    values = np.asarray(list(shares.values()), dtype=np.float64)
    if (values <= 0).any() or values.sum() > 1 + 1e-9:
        raise ValueError(f"assign_arms: shares must be > 0 and sum to <= 1, got {dict(shares)}")
    edges = np.cumsum(values)
    if edges[-1] >= 1 - 1e-9:  # shares that sum to 1 leave no rest, rounding or not
        edges[-1] = np.inf
    position = bucket_position(user_ids, salt)
    arm = np.searchsorted(edges, position, side="right")
    return np.where(arm < len(values), arm, REST).astype(np.int64)
