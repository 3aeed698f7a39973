"""Rankers that can be served into a :class:`~transact.data.world.env.WorldEnv`.

A ranker maps a round's :class:`~transact.data.world.env.Requests` to one score per
candidate (``[N]``, higher shown first). ``generate_world`` serves the
:class:`ProductionRanker` (the logging policy of the offline data); the oracle and random
rankers bound what any model can do, and tests use them to show that the world's
closed-loop mechanisms respond to what is shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from transact.data.world.rand import Draw

if TYPE_CHECKING:
    from transact.data.world.env import Requests, WorldEnv


class Ranker(Protocol):
    """Anything with ``score(env, requests) -> [N]`` float scores."""

    def score(self, env: WorldEnv, requests: Requests) -> np.ndarray: ...


class ProductionRanker:
    """The logging policy: a noisy ranker of long-term interests, quality and popularity.

    ``score = 1.2 lt + 0.6 quality_z + 0.2 log(popularity) + noise * N(0, 1)``, with ``lt``
    the user's true long-term affinity to the item's top-level interest: a production
    ranker that knows long-term interests well and knows nothing of the session, the
    current interests, satiation or freshness. Its noise is keyed like every other draw
    (request and candidate slot), so it is reproducible and common to paired arms.
    """

    def __init__(self, noise: float = 1.0) -> None:
        self.noise = float(noise)

    def score(self, env: WorldEnv, requests: Requests) -> np.ndarray:
        r = requests.candidate_request
        items = requests.item_ids
        cat = env.catalog
        lt = env.state.lt_affinity[requests.user_ids[r], cat.item_top[items]]
        noise = env.streams.normal(
            Draw.PRODUCTION_NOISE, requests.day, requests.user_ids[r],
            requests.request_index[r], requests.slot,
        )  # fmt: skip
        return (
            1.2 * lt
            + 0.6 * cat.quality_z[items]
            + 0.2 * np.log(cat.popularity[items])
            + self.noise * noise
        )


class RandomRanker:
    """Uniformly random order (a seeded, keyed draw): the floor of any ranker."""

    def __init__(self, salt: int = 0) -> None:
        self.salt = int(salt)

    def score(self, env: WorldEnv, requests: Requests) -> np.ndarray:
        r = requests.candidate_request
        return env.streams.uniform(
            Draw.SHUFFLE, self.salt + 1, requests.day, requests.user_ids[r],
            requests.request_index[r], requests.slot,
        )  # fmt: skip


class OracleRanker:
    """Ranks by the ground truth's expected utility (position-free): the ceiling.

    ``utility`` weights the actions (default the evaluation's click 1, repin 2, hide -5).
    """

    def __init__(self, utility: dict[str, float] | None = None) -> None:
        self.utility = dict(utility or {"click": 1.0, "repin": 2.0, "hide": -5.0})

    def score(self, env: WorldEnv, requests: Requests) -> np.ndarray:
        probs = env.candidate_probabilities(requests)
        unknown = sorted(set(self.utility) - set(probs))
        if unknown:
            raise ValueError(
                f"OracleRanker.utility: unknown actions {unknown}; known {sorted(probs)}"
            )
        total = np.zeros(requests.n_candidates)
        for action, weight in self.utility.items():
            total += weight * probs[action]
        return total
