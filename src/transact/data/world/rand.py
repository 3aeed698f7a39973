"""Counter-based random numbers: every draw is a hash of what it is for.

A world driven by a sequential ``numpy.random.Generator`` shifts every later draw as soon
as a ranker changes what is shown (one more engagement, one more draw). Two arms of an
online experiment then see unrelated noise, and a paired comparison loses its point. Here
each uniform is a pure function of its *keys*::

    u = uniform(seed, stream, purpose, day, user, request, slot, ...)

computed with the SplitMix64 finalizer (Steele et al., "Fast splittable pseudorandom
number generators", OOPSLA 2014), vectorized in numpy. Two environments with the same
seed and stream use the same number for the same (purpose, keys) whatever happened
before (common random numbers); a different ``stream`` salt gives independent numbers
(per-arm streams); ``day`` in the keys gives per-day streams.

The finalizer passes BigCrush as a generator; chaining it over the keys is a hash, not a
cryptographic one, which is all a simulation needs. :func:`uniform_reference` is the plain
per-element Python version the vectorized path is tested against.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from scipy.special import ndtri

_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


class Draw(IntEnum):
    """What a random number is for: one purpose = one independent family of draws.

    Values are part of the hash; never renumber one (it would change every world).
    """

    PLAN_SESSIONS = 1
    PLAN_HOUR = 2
    PLAN_OFFSET = 3
    NEW_CURRENT = 4
    NEW_CURRENT_ANY = 5
    NEW_CURRENT_TOP = 6
    NEW_CURRENT_LEAF = 7
    DRIFT_SLOT = 8
    DRIFT_PICK = 9
    SESSION_ON_CURRENT = 10
    SESSION_CURRENT_PICK = 11
    SESSION_TOP = 12
    SESSION_LEAF = 13
    REQUEST_SIZE = 14
    RANDOMIZED = 15
    CANDIDATE_SOURCE = 16
    CANDIDATE_TOP = 17
    CANDIDATE_LEAF = 18
    CANDIDATE_ITEM = 19
    SHUFFLE = 20
    HIDE = 21
    CLOSEUP = 22
    CLICK = 23
    REPIN = 24
    TIME_CLOSEUP = 25
    TIME_CLICK = 26
    TIME_REPIN = 27
    TIME_HIDE = 28
    BROWSE = 29
    DWELL = 30
    CONTINUE = 31
    FOLLOW = 32
    JUMP = 33
    JUMP_TOP = 34
    JUMP_LEAF = 35
    PRODUCTION_NOISE = 36
    INITIAL_CURRENT_TOP = 37
    INITIAL_CURRENT_LEAF = 38
    REQUEST = 39


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer of a uint64 array (wrapping arithmetic); returns a new array."""
    z = np.array(z, np.uint64, ndmin=1)
    z ^= z >> np.uint64(30)
    z *= np.uint64(_M1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(_M2)
    z ^= z >> np.uint64(31)
    return z


def _as_u64(key: np.ndarray | int) -> np.ndarray:
    a = np.asarray(key)
    if a.dtype.kind not in "iub":
        raise TypeError(f"random keys must be integers, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False).view(np.uint64) if a.dtype != np.uint64 else a


class RandomStreams:
    """Uniforms and standard distributions keyed by ``(seed, stream, purpose, *keys)``.

    Args:
        seed: the world's seed.
        stream: a salt for independent copies (an arm, a replicate); the same stream in
            two environments gives common random numbers.

    Every method takes a :class:`Draw` purpose and integer key arrays that broadcast
    together (e.g. ``[R, 1]`` requests against ``[1, M]`` slots) and returns float64 of
    the broadcast shape.

    Example::

        rs = RandomStreams(seed=0, stream=1)
        u = rs.uniform(Draw.HIDE, day, users, request_index, position)   # [N] in (0, 1)
    """

    def __init__(self, seed: int, stream: int = 0) -> None:
        self.seed = int(seed)
        self.stream = int(stream)
        base = np.array([(self.seed ^ _GAMMA) & _MASK], np.uint64)
        base = _mix(base + np.uint64(_GAMMA))
        base = _mix(base ^ np.array([self.stream & _MASK], np.uint64))
        self._base = base[0]

    def hash(self, purpose: Draw | int, *keys: np.ndarray | int) -> np.ndarray:
        """uint64 hash of ``(seed, stream, purpose, *keys)``, broadcast over the keys."""
        with np.errstate(over="ignore"):
            h = _mix(
                np.array([self._base ^ np.uint64(int(purpose))], np.uint64) + np.uint64(_GAMMA)
            )
            for k in keys:
                h = _mix(h ^ (_as_u64(k) + np.uint64(_GAMMA)))
        shape = np.broadcast_shapes(*(np.shape(k) for k in keys)) if keys else ()
        return h.reshape(shape)

    def uniform(self, purpose: Draw | int, *keys: np.ndarray | int) -> np.ndarray:
        """Uniforms in the open interval (0, 1): the top 53 bits of the hash, centred."""
        h = self.hash(purpose, *keys)
        return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))

    def normal(self, purpose: Draw | int, *keys: np.ndarray | int) -> np.ndarray:
        """Standard normal draws (inverse CDF of :meth:`uniform`)."""
        return np.asarray(ndtri(self.uniform(purpose, *keys)))

    def exponential(self, purpose: Draw | int, *keys: np.ndarray | int) -> np.ndarray:
        """Exponential draws with mean 1."""
        return -np.log(self.uniform(purpose, *keys))

    def poisson(self, lam: np.ndarray, purpose: Draw | int, *keys: np.ndarray | int) -> np.ndarray:
        """Poisson(``lam``) draws by inverse CDF (exact; ``lam`` up to a few dozen)."""
        u = self.uniform(purpose, *keys)
        return poisson_from_uniform(np.broadcast_to(lam, u.shape), u)


def poisson_from_uniform(lam: np.ndarray, u: np.ndarray, max_k: int = 200) -> np.ndarray:
    """Smallest ``k`` with ``P(X <= k) >= u`` for ``X ~ Poisson(lam)``, elementwise."""
    lam = np.asarray(lam, np.float64)
    p = np.exp(-lam)
    cdf = p.copy()
    k = np.zeros(lam.shape, np.int64)
    todo = u > cdf
    for j in range(1, max_k + 1):
        if not todo.any():
            break
        p = p * lam / j
        cdf = cdf + p
        k = np.where(todo, j, k)
        todo &= u > cdf
    return k


def uniform_reference(seed: int, stream: int, purpose: int, *keys: int) -> float:
    """One uniform with Python integers: the plain reference of :meth:`RandomStreams.uniform`."""

    def mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * _M1) & _MASK
        z = ((z ^ (z >> 27)) * _M2) & _MASK
        return z ^ (z >> 31)

    base = mix((((seed ^ _GAMMA) & _MASK) + _GAMMA) & _MASK)
    base = mix(base ^ (stream & _MASK))
    h = mix(((base ^ purpose) + _GAMMA) & _MASK)
    for k in keys:
        h = mix(h ^ (((k & _MASK) + _GAMMA) & _MASK))
    return ((h >> 11) + 0.5) / (1 << 53)
