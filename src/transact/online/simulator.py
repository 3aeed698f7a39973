"""The online simulator: arms served into the closed-loop world, day by day, round by round.

:func:`simulate` runs an :class:`~transact.online.config.OnlineConfig`:

1. **Pre-period.** The offline world is replayed to its end state (``replay.py``); its
   event log is replayed through the stream processor into the site's sequence store
   (``stream.backfill``); the last ``pre_days`` days give each user's CUPED covariates.
2. **Designs.** *Buckets*: one environment continues the world for every user; a salted
   hash assigns users to arms (``buckets.py``), the rest are served by ``rest``. With
   ``paired``, also one counterfactual copy per arm: the arms' users, all served by that
   arm, with the same random numbers (``WorldEnv.fork``: common random numbers).
3. **Each round** of each environment: the world's candidate generators propose items;
   each arm scores its users' requests through the serving code (``scoring.py``: the
   service's feature assembly over the environment's sequence store, the service's
   ranker, ``S = sum_h u_h f_h``); the environment shows the top items with position
   bias and draws the users' responses from its ground truth; the round's events go
   through the stream processor into the environment's store (``stream.py``) before the
   next round, and its logs are written as a world dir (``logs.py``) and measured
   (``metrics.py``). No other path carries an action to a model. After each day, the
   batch user embeddings of hybrid models are regenerated from the logs (``embeddings.py``).
4. **Retraining** at the midnights of each arm's schedule, from scratch on the sliding
   window of its own bucket's or all logs (``retrain.py``).

The result (:class:`~transact.online.result.OnlineResult`) holds per-user daily metrics
of every arm in every design, the pre-period covariates, the retrains and the stream
counts; ``report.py`` turns it into report.json/md and the figures.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from transact.data.io import ItemTable, UserTable, day_string
from transact.data.schema import MS_PER_DAY
from transact.data.world.env import Requests, WorldEnv
from transact.embeddings.train import LoadedPinnerFormer, load_pinnerformer
from transact.features.reader import SequenceReader
from transact.online.buckets import REST, assign_arms
from transact.online.config import ArmSpec, OnlineConfig
from transact.online.embeddings import DailyUserEmbeddings
from transact.online.logs import LogWriter, training_dir
from transact.online.metrics import DailyMetrics
from transact.online.replay import OfflineEnd, replay_offline
from transact.online.result import ArmResult, OnlineResult
from transact.online.retrain import RetrainRecord, retrain, run_config_of
from transact.online.scoring import (
    ModelScorer,
    PolicyScorer,
    Scorer,
    ServedModel,
    candidate_rows,
    load_served,
    model_scorer,
)
from transact.online.stream import OnlineStream, StreamStats, backfill, copy_store
from transact.pipeline.windows import Window
from transact.serving.features import UserTableAttributes
from transact.serving.ranker import InferenceOptions

ONLINE_STREAM_BASE = 7_919
"""The online period's random-stream salt is this plus the experiment's seed (the offline
world used stream 0); every environment of an experiment shares it (common random
numbers), and the day and user in every key keep arms and days apart."""

TIMED = ("env", "assembly", "forward", "stream", "logging", "metrics")


@dataclass
class _Env:
    """One simulated environment and everything attached to it."""

    name: str
    design: str
    env: WorldEnv
    users: np.ndarray  # the users it serves (sorted)
    group: np.ndarray  # [n_users] the group (arm index or REST) serving each user
    stream: OnlineStream
    logs: LogWriter
    metrics: DailyMetrics
    embeddings: DailyUserEmbeddings | None = None
    scorers: dict[int, Scorer] = field(default_factory=dict)
    models: dict[int, ServedModel] = field(default_factory=dict)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    impressions: int = 0
    label: str = ""  # a paired copy's name in the result (the buckets: the arms' names)
    bucket_model: bool = False  # its retrains serve the bucket arm's model of the day

    @property
    def root(self) -> Path:
        return self.logs.root.parent


class Simulation:
    """One run of :func:`simulate` (kept as an object so tests can step it)."""

    def __init__(
        self, config: OnlineConfig, out_dir: str | Path, options: InferenceOptions | None = None
    ) -> None:
        self.config = config
        self.out = Path(out_dir)
        self.options = options or InferenceOptions(device=config.device, precision=config.precision)
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.retrains: list[RetrainRecord] = []
        self.backfill_stats = StreamStats()

    # ---- setup -----------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        self.offline: OfflineEnd = replay_offline(cfg.data_dir, cfg.pre_days, cfg.progress)
        self.seconds["replay"] += time.perf_counter() - t0
        world_cfg = self.offline.world.config
        self.first_day = self.offline.n_days
        if self.first_day + cfg.days > world_cfg.catalog_days:
            raise ValueError(
                f"OnlineConfig.days={cfg.days}: the world's catalog holds fresh items for "
                f"{world_cfg.catalog_days - self.first_day} days after its "
                f"{self.first_day} offline days (WorldConfig.fresh_horizon_days)"
            )
        self.n_users = world_cfg.n_users
        self.offline.pre.non_core_at_start = ~self.offline.core_at_end
        self.online_start_ms = world_cfg.start_ms + self.first_day * MS_PER_DAY
        self.arm_names = [a.name for a in cfg.arms]
        self.assignment = assign_arms(np.arange(self.n_users), cfg.shares(), cfg.bucket_salt)
        self.items = ItemTable.load(cfg.data_dir)
        self.user_attributes = UserTableAttributes(UserTable.load(cfg.data_dir))
        vocab = self.offline.manifest.vocabularies.get("surface", [])
        self.context = {"surface": vocab.index("homefeed") + 1} if "homefeed" in vocab else {}
        self.served: dict[str, ServedModel | None] = {}
        for arm in cfg.arms:
            self.served[arm.name] = self._load(arm)
        self.rest_model = self._load(ArmSpec("rest", cfg.rest))
        models = [m for m in [*self.served.values(), self.rest_model] if m is not None]
        self.seq_len = max([m.spec.seq_len for m in models], default=1)
        self.pinnerformer = self._pinnerformer(models)
        # the site's store at the end of the offline world; paired copies start from it
        t0 = time.perf_counter()
        base = self.out / "buckets" / "seq.rocksdb"
        self.backfill_stats = backfill(cfg.data_dir, base, self.seq_len)
        self.seconds["backfill"] += time.perf_counter() - t0
        stream_salt = ONLINE_STREAM_BASE + cfg.seed
        arm_users = np.flatnonzero(self.assignment != REST)
        self.envs: list[_Env] = []
        if cfg.paired:
            # one copy per arm, then one per bucket-model copy: (arm, its label, whether
            # its retrains serve the bucket arm's model)
            copies = [(a, arm.name, False) for a, arm in enumerate(cfg.arms)]
            copies += [(a, f"{arm.name}@buckets", True) for a, arm in enumerate(cfg.arms)
                       if arm.name in cfg.bucket_model_copies]  # fmt: skip
            for a, label, bucket_model in copies:
                root = self.out / "paired" / label
                root.mkdir(parents=True)
                copy_store(base, root / "seq.rocksdb")
                env = self.offline.env.fork(stream=stream_salt, users=arm_users)
                group = np.full(self.n_users, REST)
                group[arm_users] = a
                e = self._make_env(f"paired/{label}", "paired", env, group, root)
                e.label, e.bucket_model = label, bucket_model
                self.envs.append(e)
        env = self.offline.env.fork(stream=stream_salt)
        self.envs.insert(
            0,
            self._make_env("buckets", "buckets", env, self.assignment, self.out / "buckets"),
        )
        for e in self.envs:
            groups = [REST, *range(len(cfg.arms))] if e.design == "buckets" else []
            if e.design == "paired":
                groups = [int(e.group[e.users[0]])] if e.users.size else []
            for g in groups:
                if g == REST and not (e.group == REST).any():
                    continue
                self._install(e, g, self.rest_model if g == REST else self.served[cfg.arms[g].name])

    def _load(self, arm: ArmSpec) -> ServedModel | None:
        if arm.policy is not None:
            return None
        served = load_served(arm.model, self.options)
        self._check_spec(arm, served)
        return served

    def _check_spec(self, arm: ArmSpec, served: ServedModel) -> None:
        spec, world = served.spec, self.offline.manifest.feature_spec
        problems = []
        if spec.d_item != world.d_item:
            problems.append(f"d_item {spec.d_item} vs the world's {world.d_item}")
        missing = sorted(set(spec.heads) - set(world.heads))
        if missing:
            problems.append(f"heads {missing} the world does not log")
        if spec.d_user > 0 and self.config.user_embedding_model is None:
            problems.append(
                f"it reads a batch user embedding (d_user={spec.d_user}): give the PinnerFormer "
                "checkpoint whose daily tables it reads (--user-embedding-model), or train it "
                "without one (the experiments' --no-user-embeddings)"
            )
        if problems:
            raise ValueError(f"arm {arm.name} ({arm.model}): " + "; ".join(problems))

    def _pinnerformer(self, models: list[ServedModel]) -> LoadedPinnerFormer | None:
        """The PinnerFormer of the models that read a batch user embedding (None: none do)."""
        hybrid = [m for m in models if m.spec.d_user > 0]
        path = self.config.user_embedding_model
        if not hybrid or path is None:
            return None
        loaded = load_pinnerformer(path)
        for m in hybrid:
            if m.spec.d_user != loaded.config.model.d_user:
                raise ValueError(
                    f"{m.source} reads d_user={m.spec.d_user} user embeddings; the PinnerFormer "
                    f"{path} makes d_user={loaded.config.model.d_user}"
                )
        return loaded

    def _make_env(
        self, name: str, design: str, env: WorldEnv, group: np.ndarray, root: Path
    ) -> _Env:
        cfg = self.config
        env.randomized_share = cfg.randomized_share
        users = np.flatnonzero(env.enrolled)
        root.mkdir(parents=True, exist_ok=True)
        stream = OnlineStream(
            root / "seq.rocksdb",
            root / "dead_letters.jsonl",
            f"online/{name}",
            cfg.data_dir,
            self.seq_len,
        )
        description = {
            "design": design,
            "environment": name,
            "arms": {a.name: a.model for a in cfg.arms},
            "users": int(users.size),
        }
        logs = LogWriter(root / "logs", cfg.data_dir, self.online_start_ms, description)
        metrics = DailyMetrics(
            users,
            cfg.days,
            self.offline.world.config.n_top_interests,
            ~self.offline.core_at_end[users],
        )
        e = _Env(name, design, env, users, group, stream, logs, metrics)
        if self.pinnerformer is not None:  # the table the first online day reads
            e.embeddings = DailyUserEmbeddings(
                logs.root, self.pinnerformer, root / "user_embeddings"
            )
            e.embeddings.ensure([day_string(self.online_start_ms - 1)])
        return e

    def _install(self, e: _Env, group: int, served: ServedModel | None) -> None:
        """Serve ``group`` of environment ``e`` with ``served`` (None: the group's policy)."""
        cfg = self.config
        if served is None:
            spec = ArmSpec("rest", cfg.rest) if group == REST else cfg.arms[group]
            assert spec.policy is not None
            e.scorers[group] = PolicyScorer(spec.policy, cfg.utility)
            return
        reader = SequenceReader(e.stream.store, seq_len=served.spec.seq_len)
        previous = e.scorers.get(group)
        user_embeddings = None
        if served.spec.d_user > 0:
            assert e.embeddings is not None  # setup refuses a hybrid model without them
            user_embeddings = e.embeddings.source
        scorer = model_scorer(
            served,
            self.items,
            reader,
            self.user_attributes,
            user_embeddings,
            cfg.utility,
            self.context,
            cfg.max_forward_candidates,
            cfg.per_request_scoring,
        )
        if isinstance(previous, ModelScorer):  # a retrained model: the arm's counts go on
            scorer.stats = previous.stats
        e.scorers[group] = scorer
        e.models[group] = served

    # ---- the day loop ------------------------------------------------------------------

    def run(self) -> OnlineResult:
        cfg = self.config
        self.setup()
        for k in range(cfg.days):
            self._retrain_due(k)
            # one bar per simulated day, over the sessions its environments planned
            desc = f"online day {k + 1}/{cfg.days} ({day_string(self._midnight(k))})"
            with tqdm(total=0, desc=desc, unit="session", disable=not cfg.progress) as bar:
                for e in self.envs:
                    self._run_day(e, k, bar)
                bar.set_postfix(impressions=f"{sum(e.impressions for e in self.envs):,}")
        for e in self.envs:
            t0 = time.perf_counter()
            e.logs.close()
            e.stream.close()
            e.seconds["logging"] += time.perf_counter() - t0
        return self._result()

    def _midnight(self, k: int) -> int:
        return self.online_start_ms + k * MS_PER_DAY

    def _run_day(self, e: _Env, k: int, bar: Any) -> None:
        day = self.first_day + k
        sec = e.seconds
        t0 = time.perf_counter()
        plan = e.env.start_day(day)
        sec["env"] += time.perf_counter() - t0
        bar.total += int(plan.session_users.size)
        bar.refresh()
        while True:
            t0 = time.perf_counter()
            requests = e.env.next_requests()
            sec["env"] += time.perf_counter() - t0
            if requests is None:
                break
            scores = self._score(e, requests)
            t0 = time.perf_counter()
            result = e.env.step(scores)
            t1 = time.perf_counter()
            events = result.events_table()
            if events.num_rows:
                e.stream.feed(events, int(result.events["timestamp_ms"].max()))
            t2 = time.perf_counter()
            e.logs.add(result)
            t3 = time.perf_counter()
            e.metrics.add(k, requests, result)
            bar.update(int(requests.session_start.sum()))
            t4 = time.perf_counter()
            sec["env"] += t1 - t0
            sec["stream"] += t2 - t1
            sec["logging"] += t3 - t2
            sec["metrics"] += t4 - t3
            e.impressions += result.n_impressions
        t0 = time.perf_counter()
        e.logs.end_day(self._midnight(k + 1))
        t1 = time.perf_counter()
        e.metrics.end_day(k, e.env.interest_entropy(e.users))
        t2 = time.perf_counter()
        if e.embeddings is not None:  # the daily batch job: tomorrow reads today's table
            e.embeddings.ensure([day_string(self._midnight(k))])
        sec["logging"] += t1 - t0
        sec["metrics"] += t2 - t1
        sec["embeddings"] += time.perf_counter() - t2

    def _score(self, e: _Env, requests: Requests) -> np.ndarray:
        """One score per candidate: each group's requests scored by its scorer (shuffled
        requests are not scored: the environment ignores their scores)."""
        scores = np.zeros(requests.n_candidates)
        group = e.group[requests.user_ids]
        ranked = ~requests.randomized
        for g, scorer in e.scorers.items():
            rows = np.flatnonzero((group == g) & ranked)
            if rows.size == 0:
                continue
            t0 = time.perf_counter()
            before = (
                (scorer.stats.assembly_s, scorer.stats.forward_s)
                if isinstance(scorer, ModelScorer)
                else (0.0, 0.0)
            )
            scores[candidate_rows(requests, rows)[1]] = scorer.score(e.env, requests, rows)
            if isinstance(scorer, ModelScorer):
                e.seconds["assembly"] += scorer.stats.assembly_s - before[0]
                e.seconds["forward"] += scorer.stats.forward_s - before[1]
            else:
                e.seconds["policy"] += time.perf_counter() - t0
        return scores

    # ---- retraining --------------------------------------------------------------------

    def _retrain_due(self, k: int) -> None:
        cfg = self.config
        due = [a for a, arm in enumerate(cfg.arms) if k in cfg.schedule(arm).retrain_days(cfg.days)]
        for a in due:
            arm = cfg.arms[a]
            if self.served[arm.name] is None:
                continue  # a world policy has nothing to retrain
            for e in self.envs:
                if a in e.scorers:
                    self._retrain(e, a, k)

    def _retrain(self, e: _Env, a: int, k: int) -> None:
        cfg = self.config
        arm = cfg.arms[a]
        end = self._midnight(k)
        window = Window(end - cfg.window_days * MS_PER_DAY, end)
        current = e.models[a]
        where = self.out / "retrain" / e.name / arm.name / f"day-{k:02d}"
        if e.design == "paired" and (cfg.training_data == "pooled" or e.bucket_model):
            # pooled logs are the bucket environment's: the bucket arm's retrain of today
            # trained on exactly this data, so serve the same model (a bucket-model copy
            # serves it whatever the data: that is what it is for)
            source = next(r for r in reversed(self.retrains) if r.design == "buckets"
                          and r.arm == arm.name and r.day == k)  # fmt: skip
            served = load_served(self.out / source.model, self.options)
            record = RetrainRecord(
                e.name, arm.name, k, window.start_ms, window.end_ms, source.users,
                source.examples, source.steps, source.final_loss, 0.0, 0.0, source.model,
                reused_from=f"{source.design}/{source.arm}/day-{k:02d}",
            )  # fmt: skip
        else:
            users = None
            if e.design == "paired" and cfg.training_data != "pooled":
                users = e.users  # the copy's own logs (own, pooled-buckets)
            elif e.design == "buckets" and cfg.training_data == "own":
                users = np.flatnonzero(self.assignment == a)
            t0 = time.perf_counter()
            data = training_dir(e.logs.root, where / "data", window.start_ms, window.end_ms, users)
            user_embeddings = None
            if current.spec.d_user > 0:  # the tables the window's requests read
                assert e.embeddings is not None
                e.embeddings.ensure(self._window_dates(window))
                user_embeddings = e.embeddings.source
            served, info = retrain(
                run_config_of(current.metadata, current.source),
                data,
                window,
                where / "model",
                self.options,
                steps=cfg.retrain_steps,
                device="cuda" if cfg.device.startswith("cuda") else "cpu",
                user_embeddings=user_embeddings,
            )
            self.seconds["retraining"] += time.perf_counter() - t0
            record = RetrainRecord(
                e.name, arm.name, k, window.start_ms, window.end_ms,
                None if users is None else int(users.size), info["examples"], info["steps"],
                info["final_loss"], info["wall_s"], info["cpu_s"],
                str((where / "model").relative_to(self.out)),
            )  # fmt: skip
        if served.spec.to_dict() != current.spec.to_dict():
            raise ValueError(f"retrained {arm.name} has another FeatureSpec than the served model")
        self.retrains.append(record)
        self._install(e, a, served)

    def _window_dates(self, window: Window) -> list[str]:
        """Dates of the user-embedding tables the requests of ``window`` read (each day
        reads the day before's), from the world's first day on."""
        first = max(window.start_ms - MS_PER_DAY, self.offline.world.config.start_ms)
        return [day_string(t) for t in range(first, window.end_ms - MS_PER_DAY, MS_PER_DAY)]

    # ---- the result --------------------------------------------------------------------

    def _result(self) -> OnlineResult:
        cfg = self.config
        arms: dict[str, dict[str, ArmResult]] = {"buckets": {}, "paired": {}}
        for e in self.envs:
            for g, scorer in e.scorers.items():
                name = "rest" if g == REST else (e.label or cfg.arms[g].name)
                users = e.users if e.design == "paired" else np.flatnonzero(e.group == g)
                metrics = e.metrics if e.design == "paired" else e.metrics.select(users)
                stats = scorer.stats.to_dict() if isinstance(scorer, ModelScorer) else {}
                arms[e.design][name] = ArmResult(name, users, metrics, scoring=stats)
        envs: dict[str, Any] = {
            e.name: {
                "design": e.design,
                "users": int(e.users.size),
                "impressions": e.impressions,
                "stream": e.stream.stats.to_dict(),
                "user_embedding_tables": [] if e.embeddings is None else e.embeddings.generated,
                "logs": str(e.logs.root),
            }
            for e in self.envs
        }
        timings = dict(self.seconds)
        for e in self.envs:
            for k2, v in e.seconds.items():
                timings[k2] = timings.get(k2, 0.0) + v
        return OnlineResult(
            config=cfg,
            arms={d: v for d, v in arms.items() if v},
            pre=self.offline.pre,
            assignment=self.assignment,
            first_day=self.first_day,
            online_start_ms=self.online_start_ms,
            environments=envs,
            backfill=self.backfill_stats.to_dict(),
            retrains=list(self.retrains),
            timings=timings,
            impressions=sum(e.impressions for e in self.envs),
        )


def simulate(
    config: OnlineConfig, out_dir: str | Path, options: InferenceOptions | None = None
) -> OnlineResult:
    """Run the online experiment ``config``, writing its stores, logs and retrained models
    under ``out_dir``; returns the :class:`OnlineResult` (``report.write_report`` writes
    report.json/md and the figures from it)."""
    return Simulation(config, out_dir, options).run()
