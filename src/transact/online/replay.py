"""The offline world's end state: replay its days exactly and check the replay.

An online experiment continues the offline world (the pre-period) on the same users in
the same state. ``generate_world`` does not keep its environment, so the state is rebuilt
by replaying the world's days with the same config, seed and logging policy
(:class:`~transact.data.world.ProductionRanker`, stream 0): the environment is
deterministic, so the replay *is* the generation. It is checked against the manifest's
counts (requests, impressions, events, sessions, time spent): a world dir written by
another version of the simulator, or edited, fails with the counts that differ instead of
silently continuing a different world. The demo world replays in about 15 s of CPU.

While replaying, the last ``pre_days`` days are measured per user with the online
metrics (:class:`~transact.online.metrics.DailyMetrics`): CUPED's pre-period covariates.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from transact.data.io import WorldManifest, load_manifest
from transact.data.world import ProductionRanker, World, WorldConfig, WorldEnv
from transact.data.world.env import CORE_WINDOW_MS
from transact.online.metrics import DailyMetrics

COUNTED = ("requests", "impressions", "events", "sessions", "time_spent_ms")


def world_config_of(manifest: WorldManifest, where: str | Path) -> WorldConfig:
    """The :class:`WorldConfig` a simulated world dir was generated with (its manifest)."""
    raw = manifest.extra.get("config")
    if manifest.extra.get("generator") != "transact.data.world" or not isinstance(raw, dict):
        raise ValueError(
            f"{where}: not a simulated world (no generator config in its manifest); an online "
            "experiment needs the world's simulator (transact data generate)"
        )
    known = {f.name: f for f in fields(WorldConfig)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{where}: manifest config has fields this simulator lacks: {unknown}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return WorldConfig(**values)


@dataclass
class OfflineEnd:
    """The world after its offline days.

    Fields:
        world: the static world (catalog, population).
        env: the environment after the last offline day (stream 0, every user).
        manifest: the world dir's manifest.
        pre: per-user metrics of the last ``pre_days`` offline days (all users).
        core_at_end: ``[n_users]`` bool, core status at the end of the offline world.
    """

    world: World
    env: WorldEnv
    manifest: WorldManifest
    pre: DailyMetrics
    core_at_end: np.ndarray

    @property
    def n_days(self) -> int:
        """Offline days (the first online day's index)."""
        return self.world.config.n_days


def replay_offline(world_dir: str | Path, pre_days: int = 7, progress: bool = True) -> OfflineEnd:
    """Replay the offline world in ``world_dir`` and return its end state (module doc).

    Raises ``ValueError`` when the world dir is not a simulated world, when ``pre_days``
    exceeds its days, or when the replay's counts differ from the manifest's.
    """
    manifest = load_manifest(world_dir)
    config = world_config_of(manifest, world_dir)
    if pre_days > config.n_days:
        raise ValueError(f"pre_days={pre_days}: the world {world_dir} has {config.n_days} days")
    world = World.build(config, manifest.seed)
    env = WorldEnv(world)
    ranker = ProductionRanker()
    users = np.arange(config.n_users)
    pre = DailyMetrics(users, pre_days, config.n_top_interests, np.zeros(config.n_users, bool))
    first_pre = config.n_days - pre_days
    counts = dict.fromkeys(COUNTED, 0)
    for day in tqdm(
        range(config.n_days), desc="replaying the offline world", disable=not progress, unit="day"
    ):
        env.start_day(day)
        while (requests := env.next_requests()) is not None:
            result = env.step(ranker.score(env, requests))
            counts["requests"] += requests.n_requests
            counts["impressions"] += result.n_impressions
            counts["events"] += int(result.events["user_id"].size)
            counts["sessions"] += int(result.requests["session_start"].sum())
            counts["time_spent_ms"] += int(result.requests["time_spent_ms"].sum())
            if day >= first_pre:
                pre.add(day - first_pre, requests, result)
        if day >= first_pre:
            pre.end_day(day - first_pre, env.interest_entropy(users))
    logged = manifest.extra.get("counts", {})
    differ = {k: (logged.get(k), counts[k]) for k in COUNTED if logged.get(k) != counts[k]}
    if differ:
        raise ValueError(
            f"{world_dir}: replaying the world does not reproduce its logs "
            f"(manifest vs replay: {differ}); it was generated by another version of the "
            "simulator: generate it again with this one"
        )
    end_ms = config.start_ms + config.n_days * 86_400_000
    core = env.state.last_repin_ms >= end_ms - CORE_WINDOW_MS
    return OfflineEnd(world, env, manifest, pre, core)
