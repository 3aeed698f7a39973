"""A simulated Pinterest-like homefeed ("the world"), steppable as a closed-loop environment.

The world's story, its defaults and the figures they produce are in ``docs/data.md``.
One module per concern:

* :mod:`.config`: :class:`WorldConfig` (every behaviour and switch), :data:`PRESETS`,
  the vocabularies, :func:`world_feature_spec`;
* :mod:`.rand`: counter-based random numbers (common random numbers across arms);
* :mod:`.catalog`: items, taxonomy, fresh items, the candidate generators' samplers;
* :mod:`.population`: static user attributes and the initial long-term interests;
* :mod:`.state`: the dynamic user state (interests on three time scales, satiation,
  fatigue, satisfaction);
* :mod:`.response`: ground-truth probabilities and label draws;
* :mod:`.env`: :class:`World` and the steppable :class:`WorldEnv`;
* :mod:`.logs`: :class:`StepResult` and its tables in the schemas of ``data/schema.py``;
* :mod:`.policies`: the production, random and oracle rankers;
* :mod:`.generate`: :func:`generate_world`, which writes a world dir.
"""

from transact.data.world.config import (
    ACTIONS,
    CANDIDATE_SOURCES,
    CATEGORIES,
    COUNTRIES,
    GENDERS,
    MECHANISMS,
    PRESETS,
    SURFACES,
    TOP_INTERESTS,
    USER_STATES,
    WorldConfig,
    world_feature_spec,
    world_vocabularies,
)
from transact.data.world.env import DayPlan, Requests, World, WorldEnv
from transact.data.world.generate import generate_world, run_day
from transact.data.world.logs import StepResult
from transact.data.world.policies import OracleRanker, ProductionRanker, RandomRanker, Ranker
from transact.data.world.rand import Draw, RandomStreams
from transact.data.world.response import BASE_LOGIT

__all__ = [
    "ACTIONS",
    "BASE_LOGIT",
    "CANDIDATE_SOURCES",
    "CATEGORIES",
    "COUNTRIES",
    "GENDERS",
    "MECHANISMS",
    "PRESETS",
    "SURFACES",
    "TOP_INTERESTS",
    "USER_STATES",
    "DayPlan",
    "Draw",
    "OracleRanker",
    "ProductionRanker",
    "RandomRanker",
    "RandomStreams",
    "Ranker",
    "Requests",
    "StepResult",
    "World",
    "WorldConfig",
    "WorldEnv",
    "generate_world",
    "run_day",
    "world_feature_spec",
    "world_vocabularies",
]
