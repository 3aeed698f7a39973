"""``generate_world``: serve the production ranker into the environment and write a world dir.

The offline logs are one closed-loop run of :class:`~transact.data.world.env.WorldEnv`
with :class:`~transact.data.world.policies.ProductionRanker` as the logging policy. Day by
day, the rounds' logs are concatenated, rows of sessions that pass midnight are carried
into the next day's batch (so the written log is globally time-ordered) and written to
day-partitioned Parquet: memory holds one day of logs plus the user state.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from transact.data.io import DayPartitionWriter, WorldManifest, save_manifest
from transact.data.schema import (
    MS_PER_DAY,
    events_schema,
    impressions_schema,
    items_schema,
    requests_schema,
    users_schema,
)
from transact.data.world.config import (
    COUNTRIES,
    GENDERS,
    PRESETS,
    TOP_INTERESTS,
    USER_STATES,
    WorldConfig,
    world_feature_spec,
    world_vocabularies,
)
from transact.data.world.env import World, WorldEnv
from transact.data.world.logs import StepResult
from transact.data.world.policies import ProductionRanker, Ranker
from transact.data.world.population import interest_sets


def run_day(env: WorldEnv, day: int, ranker: Ranker) -> StepResult:
    """Plan ``day`` and serve ``ranker`` into every round of it; the day's logs in one result."""
    env.start_day(day)
    parts = []
    while (requests := env.next_requests()) is not None:
        parts.append(env.step(ranker.score(env, requests)))
    return StepResult.concat(parts)


def generate_world(
    out_dir: Path | str,
    config: WorldConfig | None = None,
    seed: int = 0,
    *,
    preset: str = "",
    progress: bool = True,
) -> Path:
    """Simulate a world and write it as a world dir (see ``transact.data.io``).

    Streams one day at a time to day-partitioned Parquet, so memory stays bounded by one
    day's logs plus per-user state. Deterministic for ``(config, seed)``.

    Args:
        out_dir: directory to create (must not hold a manifest already).
        config: the world; ``PRESETS["demo"]`` by default.
        seed: random seed.
        preset: preset name recorded in the manifest.
        progress: show a tqdm bar over days.

    Returns:
        ``out_dir`` as a Path.
    """
    cfg = config or PRESETS["demo"]
    out = Path(out_dir)
    if (out / "manifest.json").exists():
        raise FileExistsError(f"{out}/manifest.json exists; choose a new --out directory")
    out.mkdir(parents=True, exist_ok=True)
    world = World.build(cfg, seed)
    _write_items(out, world)
    env = WorldEnv(world)
    ranker = ProductionRanker()

    heads = cfg.heads
    writers = {
        "events": DayPartitionWriter(
            out, "events", events_schema(), "timestamp_ms", cfg.rows_per_file
        ),
        "impressions": DayPartitionWriter(
            out, "impressions", impressions_schema(heads), "request_time_ms", cfg.rows_per_file
        ),
        "requests": DayPartitionWriter(
            out, "requests", requests_schema(), "request_time_ms", cfg.rows_per_file
        ),
    }
    sort_keys = {
        "events": ("timestamp_ms", []),
        "impressions": ("request_time_ms", ["request_id", "position"]),
        "requests": ("request_time_ms", ["request_id"]),
    }
    counts = {"requests": 0, "impressions": 0, "events": 0, "sessions": 0, "time_spent_ms": 0}
    carry: dict[str, pa.Table | None] = dict.fromkeys(writers)
    last_ms = cfg.start_ms
    eval_day = cfg.warmup_days + cfg.train_days
    interests_at_eval = env.state.slots.copy()
    for day in tqdm(range(cfg.n_days), desc="simulating days", disable=not progress, unit="day"):
        if day == eval_day:
            interests_at_eval = env.state.slots.copy()
        logs = run_day(env, day, ranker)
        tables = {
            "events": logs.events_table(),
            "impressions": logs.impressions_table(heads),
            "requests": logs.requests_table(),
        }
        counts["impressions"] += tables["impressions"].num_rows
        counts["events"] += tables["events"].num_rows
        counts["requests"] += tables["requests"].num_rows
        if logs.requests:
            counts["sessions"] += int(logs.requests["session_start"].sum())
            counts["time_spent_ms"] += int(logs.requests["time_spent_ms"].sum())
        final = day == cfg.n_days - 1
        day_end = cfg.start_ms + (day + 1) * MS_PER_DAY
        for name, writer in writers.items():
            time_col, ties = sort_keys[name]
            table, carry[name] = _merge_and_split(
                carry[name], tables[name], time_col, ties, day_end, final
            )
            if name == "events" and table.num_rows:
                last_ms = max(last_ms, int(pc.max(table.column("timestamp_ms")).as_py()))
            writer.write(table)
            writer.close_days_before(day_end)
    for writer in writers.values():
        writer.close()
    _write_users(out, world, interests_at_eval, env.state.slots)

    start = cfg.start_ms
    train_start = start + cfg.warmup_days * MS_PER_DAY
    eval_start = train_start + cfg.train_days * MS_PER_DAY
    end = eval_start + cfg.eval_days * MS_PER_DAY
    manifest = WorldManifest(
        dataset=f"sim-{preset}" if preset else "sim",
        seed=seed,
        preset=preset,
        feature_spec=world_feature_spec(cfg),
        start_ms=start,
        end_ms=max(end, last_ms + 1),  # the last sessions may end after midnight
        train_start_ms=train_start,
        train_end_ms=eval_start,
        eval_start_ms=eval_start,
        eval_end_ms=end,
        n_users=cfg.n_users,
        n_items=cfg.n_items,
        vocabularies=world_vocabularies(),
        extra={
            "generator": "transact.data.world",
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
            "counts": counts,
            "top_interests": list(TOP_INTERESTS[: cfg.n_top_interests]),
            "sequence_actions_default": ["closeup", "click", "repin", "hide"],
            "tables": ["events", "impressions", "requests"],
        },
    )
    save_manifest(out, manifest)
    return out


def _merge_and_split(
    carry: pa.Table | None,
    table: pa.Table,
    time_column: str,
    tie_columns: list[str],
    day_end_ms: int,
    final: bool,
) -> tuple[pa.Table, pa.Table | None]:
    """``carry + table`` sorted by time (stable), split into rows before ``day_end_ms``
    (returned for writing) and the rest (carried), unless ``final``."""
    if carry is not None and carry.num_rows:
        table = pa.concat_tables([carry, table]) if table.num_rows else carry
        keys = [(time_column, "ascending")] + [(c, "ascending") for c in tie_columns]
        table = table.take(pc.sort_indices(table, sort_keys=keys))
    if final or not table.num_rows:
        return table, None
    late = pc.greater_equal(table.column(time_column), day_end_ms)
    return table.filter(pc.invert(late)), table.filter(late)


def _write_items(out: Path, world: World) -> None:
    cfg, cat = world.config, world.catalog
    tops = TOP_INTERESTS[: cfg.n_top_interests]
    leaf_names = np.array(
        [
            f"{tops[t]}/{tops[t]}_{j:02d}"
            for t in range(cfg.n_top_interests)
            for j in range(cfg.leaves_per_top)
        ]
    )
    n = cfg.n_items
    items = pa.table(
        {
            "item_id": pa.array(np.arange(n, dtype=np.int64)),
            "external_id": pa.array([f"pin{i}" for i in range(n)], pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(cat.embedding.ravel()), cfg.d_item
            ),
            "top_interest": pa.array(cat.item_top.astype(np.int32)),
            "taxonomy_path": pa.array(leaf_names[cat.item_leaf]),
            "category": pa.array(cat.category.astype(np.int32)),
            "quality": pa.array(cat.quality),
            "popularity": pa.array(cat.popularity),
            "created_time_ms": pa.array(cat.created_ms),
        }
    )
    schema = items_schema(cfg.d_item).append(pa.field("popularity", pa.float32(), nullable=False))
    schema = schema.append(pa.field("created_time_ms", pa.int64(), nullable=False))
    pq.write_table(items.cast(schema), out / "items.parquet", compression="zstd")


def _write_users(
    out: Path, world: World, interests_at_eval: np.ndarray, interests_at_end: np.ndarray
) -> None:
    cfg, pop = world.config, world.population
    list_type = pa.list_(pa.int32())
    users = pa.table(
        {
            "user_id": pa.array(np.arange(cfg.n_users, dtype=np.int64)),
            "user_state": pa.array(np.array(USER_STATES)[pop.state]),
            "gender": pa.array(np.array(GENDERS)[pop.gender]),
            "country": pa.array(np.array(COUNTRIES)[pop.country]),
            "signup_time_ms": pa.array(pop.signup_ms),
            "activity_per_day": pa.array(pop.activity.astype(np.float32)),
            "prior_last_repin_ms": pa.array(pop.prior_last_repin_ms),
            # ground truth for judging batch user embeddings (issue 7): the top-level
            # interests of each user's long-term mixture when the evaluation window
            # starts (they drift; the start and end sets are kept beside them)
            "long_term_interests": pa.array(interest_sets(interests_at_eval), list_type),
            "long_term_interests_start": pa.array(interest_sets(pop.interest_slots), list_type),
            "long_term_interests_end": pa.array(interest_sets(interests_at_end), list_type),
        }
    )
    schema = users_schema()
    for name, typ in (
        ("activity_per_day", pa.float32()),
        ("prior_last_repin_ms", pa.int64()),
        ("long_term_interests", list_type),
        ("long_term_interests_start", list_type),
        ("long_term_interests_end", list_type),
    ):
        schema = schema.append(pa.field(name, typ, nullable=False))
    pq.write_table(users.cast(schema), out / "users.parquet", compression="zstd")
