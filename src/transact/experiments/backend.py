"""The real backend: one dataset, every variant trained by the trainer and scored on week 3.

:class:`PaperBackend` prepares the dataset once (generates the simulated world, or reads
MovieLens / a prepared directory through the data stage), builds the training examples
of weeks 1-2 (negatives down-sampled, paper 4.1.1) and the evaluation examples of week 3
(randomized requests only, never down-sampled, paper 4.2.1) at the longest sequence
length any variant needs, and the batch user embeddings when a variant asks for them.
Shorter sequence lengths are exact prefixes of the longest (sequences are newest first,
padding at the end), so one example set serves every |S| of Figure 4.

Finished runs are cached under ``work_dir/runs`` by a key of everything they depend on
(variant, seed, dataset, training settings), so rerunning an experiment, or ``all``
after single tables, only trains what is new; delete ``work_dir`` to retrain.

Each ``train_and_score`` builds ``Pinnability`` with the variant's encoder and options at
the budget's model preset, trains it with the training stage's trainer for the budget's
steps and seed, calibrates it, and returns the evaluation stage's :class:`Predictions` on
week 3 with calibrated probabilities (a :class:`~transact.experiments.runner.ScoredVariant`).

**Calibration** (docs/evaluation.md, "Calibration"). The trained ranker sees every
positive and a share ``q`` of the negatives, so its probabilities are inflated, by a
factor that differs between items, and the utility S ranks by the inflated ones. Each
variant's probabilities are corrected for the known keep rate ``q`` and then Platt-scaled
per head on a calibration slice (``experiments/calibration.py``): every impression (not
down-sampled) of the randomized requests of the last days of the training window. HIT@3
is computed on the calibrated probabilities; the raw, sampling-corrected and calibrated
log loss and predicted/observed ratio on week 3 are kept in ``calibration``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transact.data.examples import RowSubset
from transact.data.schema import (
    MS_PER_DAY,
    ActionVocabulary,
    FeatureSpec,
    LabeledBatch,
    RankerInputs,
)
from transact.evaluation.calibration import Calibration, fit_calibration
from transact.evaluation.predictions import Predictions
from transact.experiments.budget import ExperimentBudget
from transact.experiments.calibration import (
    CALIBRATION_MAX_EXAMPLES,
    CALIBRATION_VERSION,
    calibration_slice,
    calibration_summary,
    keep_rate_of,
)
from transact.experiments.runner import ScoredVariant, VariantUnavailable
from transact.experiments.spec import Variant

EVAL_BATCH = 4096
PREDICTIONS_FILE = "predictions.npz"
CALIBRATION_FILE = "calibration.json"
RUN_KEY_FILE = "run_key.json"


def _load_cached(run_dir: Path, key: dict[str, Any]) -> tuple[Predictions, dict] | None:
    """The raw predictions and calibration of an identical earlier run (same key), else
    ``None``.

    A run is cached only once it finished (the key file is written last), so an
    interrupted experiment resumes with the variants it had not finished.
    """
    key_file, preds_file = run_dir / RUN_KEY_FILE, run_dir / PREDICTIONS_FILE
    cal_file = run_dir / CALIBRATION_FILE
    if not (key_file.exists() and preds_file.exists() and cal_file.exists()):
        return None
    if json.loads(key_file.read_text()) != json.loads(json.dumps(key, sort_keys=True)):
        return None
    return Predictions.load(preds_file), json.loads(cal_file.read_text())


def truncate_batch(batch: LabeledBatch, seq_len: int) -> LabeledBatch:
    """The same batch with only the ``seq_len`` most recent actions of each sequence.

    Sequences are newest first with padding at the end, so the first ``seq_len``
    positions are exactly what a builder run at ``seq_len`` returns.
    """
    x = batch.inputs
    if x.action_types.shape[1] == seq_len:
        return batch
    if x.action_types.shape[1] < seq_len:
        raise ValueError(
            f"sequence length {seq_len} asked of examples built at {x.action_types.shape[1]}"
        )
    inputs = RankerInputs(
        categorical=x.categorical,
        numerical=x.numerical,
        candidate_embedding=x.candidate_embedding,
        candidate_item_id=x.candidate_item_id,
        user_embedding=x.user_embedding,
        action_types=x.action_types[:, :seq_len].contiguous(),
        action_embeddings=x.action_embeddings[:, :seq_len].contiguous(),
        action_times_ms=x.action_times_ms[:, :seq_len].contiguous(),
        request_time_ms=x.request_time_ms,
    )
    return replace(batch, inputs=inputs)


class TruncatedSource:
    """A batch source (the trainer's ``BatchSource``) whose sequences are cut to ``seq_len``."""

    def __init__(self, source: Any, seq_len: int) -> None:
        self.source = source
        self.seq_len = seq_len

    def __len__(self) -> int:
        return len(self.source)

    def batches(self, batch_size: int, **kwargs: Any):
        for batch in self.source.batches(batch_size, **kwargs):
            yield truncate_batch(batch, self.seq_len)


def truncate_source(source: Any, seq_len: int) -> Any:
    """``source`` with sequences cut to ``seq_len``: the data stage's ``ExampleSet`` is
    sliced column-wise (cheap, before embeddings are gathered); anything else is wrapped
    in :class:`TruncatedSource`."""
    if hasattr(source, "seq_types") and hasattr(source, "feature_spec"):
        if source.feature_spec.seq_len == seq_len:
            return source
        return replace(
            source,
            feature_spec=replace(source.feature_spec, seq_len=seq_len),
            seq_types=source.seq_types[:, :seq_len],
            seq_items=source.seq_items[:, :seq_len],
            seq_times_ms=source.seq_times_ms[:, :seq_len],
        )
    return TruncatedSource(source, seq_len)


def user_subset_rows(source: Any, max_users: int, seed: int = 0) -> np.ndarray | None:
    """Example rows of at most ``max_users`` users drawn uniformly (``None``: keep all).

    Every request of a chosen user is kept whole, so HIT@K per chunk and per user is
    unchanged for those users; the cap only shrinks the evaluated population.
    """
    users = source.request_user_ids[source.example_request]
    unique = np.unique(users)
    if max_users <= 0 or len(unique) <= max_users:
        return None
    chosen = np.random.default_rng(seed).choice(unique, size=max_users, replace=False)
    return np.flatnonzero(np.isin(users, chosen))


def embedding_readers(data_dir: Path) -> dict[str, np.ndarray]:
    """Every batch user-embedding table some request reads, with the users that read it.

    A request on day ``d`` reads the table of day ``d - 1`` (the day-before rule), so the
    table of a date is needed only for the users with a request on the next day. A log
    spanning years (MovieLens: 1996-2018) needs about 1,700 tables, each read by a handful
    of users; generating each for its readers only is what makes that affordable.
    """
    from transact.data.io import date_to_day, day_to_date, partition_days, read_impressions

    logged = partition_days(data_dir, "events")
    first, last = date_to_day(logged[0]), date_to_day(logged[-1])
    pairs: list[np.ndarray] = []
    for batch in read_impressions(data_dir, columns=["user_id", "request_time_ms"]):
        day = batch.column("request_time_ms").to_numpy() // MS_PER_DAY - 1
        user = batch.column("user_id").to_numpy().astype(np.int64)
        pairs.append(np.unique(np.stack([day, user], axis=1), axis=0))
    if not pairs:
        return {}
    both = np.unique(np.concatenate(pairs), axis=0)
    keep = (both[:, 0] >= first) & (both[:, 0] <= last)
    both = both[keep]
    days, starts = np.unique(both[:, 0], return_index=True)
    groups = np.split(both[:, 1], starts[1:])
    return {day_to_date(int(d)): g for d, g in zip(days, groups, strict=True)}


PAPER_ROLES = ("repin", "hide")
"""The paper's table columns: its main positive engagement and its main negative one."""


def paper_roles(actions: ActionVocabulary) -> dict[str, str]:
    """``{"repin": main_positive, "hide": main_negative}`` of a dataset's vocabulary (the
    heads that play the paper's columns); a role the vocabulary does not name is left out."""
    mine = (actions.main_positive, actions.main_negative)
    return {role: head for role, head in zip(PAPER_ROLES, mine, strict=True) if head is not None}


def experiment_utility(spec: FeatureSpec) -> dict[str, float]:
    """The experiments' u_h: the shipped run configs' ``[heads]`` (the simulated world's
    weights, docs/evaluation.md) when their heads are this dataset's (the world,
    MovieLens), else the vocabulary default (+1, -1 for negative actions)."""
    from transact.pipeline.heads import default_utility
    from transact.pipeline.run_config import load_run_config, shipped_config_path

    config = load_run_config(shipped_config_path("baseline_small"))
    try:
        resolved = config.resolve_heads(spec.actions, spec.heads)
    except ValueError:
        return default_utility(spec.heads, spec.actions)
    return {h: resolved.utility.get(h, 0.0) for h in spec.heads}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


class PaperBackend:
    """Trains and scores :class:`Variant` s on one dataset at one budget.

    Args:
        dataset: ``world`` (the simulated world at the budget's preset),
            ``movielens-latest-small`` / ``movielens-100k`` (read from ``../shared``), or a
            path to a prepared data directory.
        budget: the :class:`ExperimentBudget`.
        work_dir: cache folder for the generated data, embeddings and training runs.
        device: ``cpu`` or ``cuda``.
        progress: show the trainer's progress bars.
        user_embeddings: train and feed the batch user embedding (False: every variant
            runs without it and Table 2's "without PF" row is skipped).
    """

    def __init__(
        self,
        dataset: str,
        budget: ExperimentBudget,
        *,
        work_dir: Path,
        device: str = "cpu",
        progress: bool = True,
        user_embeddings: bool = True,
    ) -> None:
        self.dataset = dataset
        self.budget = budget
        self.work_dir = Path(work_dir)
        self.device = device
        self.progress = progress
        self._data: Any = None
        self._user_embeddings: Any = None
        self._user_embeddings_reason: str | None = (
            None if user_embeddings else "batch user embeddings turned off (--no-user-embeddings)"
        )
        self._sets: dict[bool, tuple[Any, Any, FeatureSpec]] = {}
        self._eval_rows: np.ndarray | None = None
        # (examples at the longest |S|, rows kept or None, description): the slice every
        # variant's calibration is fitted on (calibration_slice)
        self._calibration: tuple[Any, np.ndarray | None, dict[str, Any]] | None = None
        self.max_seq_len = max(budget.seq_len, *budget.fig4_seq_lens)
        # set from the dataset when its examples are built (_example_sets)
        self.heads: tuple[str, ...] = ()
        self.utility: dict[str, float] = {}
        self.roles: dict[str, str] = {}
        self._describe: dict[str, Any] = {"name": dataset}

    # -- data ---------------------------------------------------------------------------

    def _prepare(self) -> Any:
        from transact.experiments.datasets import prepare_dataset

        if self._data is None:
            self._data = prepare_dataset(
                self.dataset,
                self.work_dir / "data",
                world_preset=self.budget.world_preset,
                progress=self.progress,
            )
            self._describe.update(self._data.describe())
        return self._data

    def _embeddings(self) -> Any:
        """The batch user-embedding source, or ``None`` with the reason recorded."""
        if self._user_embeddings is None and self._user_embeddings_reason is None:
            data = self._prepare()
            try:
                from transact.embeddings import ensure_user_embeddings

                readers = embedding_readers(data.data_dir)
                self._user_embeddings = ensure_user_embeddings(
                    data.data_dir,
                    self.work_dir / "embeddings" / _slug(data.name),
                    preset=self.budget.embedding_preset,
                    seed=0,
                    dates=sorted(readers),
                    users_by_date=readers,
                    progress=self.progress,
                )
            except (ImportError, FileNotFoundError, ValueError, KeyError) as exc:
                self._user_embeddings_reason = f"no batch user embedding for {data.name}: {exc}"
        return self._user_embeddings

    def _example_sets(self, with_user_embedding: bool) -> tuple[Any, Any, FeatureSpec]:
        """(train set, eval set, spec) at the longest sequence length of the budget."""
        if with_user_embedding and self._embeddings() is None:
            with_user_embedding = False
        if with_user_embedding not in self._sets:
            data = self._prepare()
            user_embeddings = self._embeddings() if with_user_embedding else None
            train, evaluation = data.example_sets(
                seq_len=self.max_seq_len,
                negative_ratio=self.budget.negative_ratio,
                user_embeddings=user_embeddings,
                seed=0,
            )
            spec = train.feature_spec
            self.heads = tuple(spec.heads)
            self.utility = experiment_utility(spec)
            self.roles = paper_roles(spec.actions)
            self._describe.update(
                {
                    "train_examples": len(train),
                    "eval_examples": len(evaluation),
                    "heads": list(self.heads),
                }
            )
            self._sets[with_user_embedding] = (train, evaluation, spec)
        return self._sets[with_user_embedding]

    def describe(self) -> dict[str, Any]:
        self._prepare()
        info = dict(self._describe)
        info["user_embeddings"] = self._user_embeddings is not None
        if self._user_embeddings_reason:
            info["user_embeddings_missing"] = self._user_embeddings_reason
        return info

    # -- models -------------------------------------------------------------------------

    def _model(self, variant: Variant, spec: FeatureSpec) -> torch.nn.Module:
        from transact.models import Pinnability, PinnabilityConfig

        config = PinnabilityConfig.preset(
            self.budget.model_preset,
            encoder=variant.encoder,
            encoder_overrides=variant.options(),
            use_user_embedding=variant.user_embedding,
            use_user_features="user" not in variant.drop_feature_groups,
        )
        return Pinnability(spec, config)

    def _variant_data(self, variant: Variant) -> tuple[Any, Any, FeatureSpec]:
        if not variant.user_embedding and self._embeddings() is None:
            raise VariantUnavailable(
                "this row removes the batch user embedding, but the dataset has none "
                f"({self._user_embeddings_reason}), so it would equal the full model"
            )
        train, evaluation, spec = self._example_sets(with_user_embedding=True)
        seq_len = variant.seq_len or self.budget.seq_len
        if seq_len > spec.seq_len:
            raise VariantUnavailable(f"|S|={seq_len} exceeds the examples' {spec.seq_len}")
        spec = replace(spec, seq_len=seq_len)
        evaluation = truncate_source(evaluation, seq_len)
        if self._eval_rows is None:
            self._eval_rows = (
                user_subset_rows(evaluation, self.budget.eval_max_users)
                if hasattr(evaluation, "example_request")
                else None
            )
            if self._eval_rows is not None:
                self._describe["eval_examples_used"] = len(self._eval_rows)
                self._describe["eval_max_users"] = self.budget.eval_max_users
        if self._eval_rows is not None:
            evaluation = RowSubset(evaluation, self._eval_rows)
        return truncate_source(train, seq_len), evaluation, spec

    def _calibration_data(self, seq_len: int) -> tuple[Any, dict[str, Any]]:
        """The calibration slice at ``seq_len`` as a batch source, and its description."""
        if self._calibration is None:
            data = self._prepare()
            examples, rows, info = calibration_slice(
                data,
                seq_len=self.max_seq_len,
                user_embeddings=self._embeddings(),
                max_examples=CALIBRATION_MAX_EXAMPLES,
            )
            self._calibration = (examples, rows, info)
            self._describe["calibration_slice"] = info
        examples, rows, info = self._calibration
        source = truncate_source(examples, seq_len)
        return (source if rows is None else RowSubset(source, rows)), info

    def train_and_score(self, variant: Variant, seed: int) -> ScoredVariant:
        """Train ``variant`` with ``seed`` for the budget's steps, calibrate it on the
        calibration slice, and predict week 3 with calibrated probabilities."""
        from transact.evaluation.predictions import predict
        from transact.experiments.training import loss_for, train_config
        from transact.training.trainer import seed_everything, train

        train_set, eval_set, spec = self._variant_data(variant)
        data = self._prepare()
        key = self._run_key(variant, seed)
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        run_dir = self.work_dir / "runs" / _slug(data.name) / f"{variant.encoder}-{digest}-s{seed}"
        cached = _load_cached(run_dir, key)
        if cached is not None:
            raw, summary = cached
            calibration = Calibration.from_dict(summary["parameters"], source=str(run_dir))
            return ScoredVariant(raw.with_scores(calibration.apply(raw.scores)), summary)
        seed_everything(seed)
        model = self._model(variant, spec)
        config = train_config(self.budget, seed=seed, device=self.device, progress=self.progress)
        train(model, loss_for(spec), train_set, config, run_dir, metadata={"run_key": key})
        heads = tuple(spec.heads)
        raw = predict(model, eval_set.batches(EVAL_BATCH, shuffle=False), heads, device=self.device)
        calib_source, info = self._calibration_data(spec.seq_len)
        fit_on = predict(
            model, calib_source.batches(EVAL_BATCH, shuffle=False), heads, device=self.device
        )
        calibration = fit_calibration(
            fit_on.scores,
            fit_on.labels,
            heads,
            keep_rate=keep_rate_of(self._example_sets(with_user_embedding=True)[0]),
            fitted_on=info,
        )
        summary = calibration_summary(calibration, raw, info)
        raw.save(run_dir / PREDICTIONS_FILE)
        (run_dir / CALIBRATION_FILE).write_text(json.dumps(summary, indent=2))
        (run_dir / RUN_KEY_FILE).write_text(json.dumps(key, indent=2, sort_keys=True))
        return ScoredVariant(raw.with_scores(calibration.apply(raw.scores)), summary)

    def _run_key(self, variant: Variant, seed: int) -> dict[str, Any]:
        """Everything a trained-and-scored run depends on; equal keys reuse the run."""
        from transact.experiments.training import LOSS_TABLE

        b = self.budget
        return {
            "variant": variant.config_dict(),
            "seed": seed,
            "dataset": self._prepare().describe(),
            "user_embeddings": self._user_embeddings is not None,
            "training": {
                "model_preset": b.model_preset,
                "train_steps": b.train_steps,
                "batch_size": b.batch_size,
                "peak_lr": b.peak_lr,
                "warmup_steps": b.warmup_steps,
                "negative_ratio": b.negative_ratio,
                "embedding_preset": b.embedding_preset,
                "eval_max_users": b.eval_max_users,
                "loss": LOSS_TABLE,
                "device": self.device,
            },
            "calibration": {
                "version": CALIBRATION_VERSION,
                "slice": "randomized requests of the last training days, not down-sampled",
                "max_examples": CALIBRATION_MAX_EXAMPLES,
            },
        }

    def forward_latency_ms(self, variant: Variant, batch_size: int) -> float:
        """Median eval forward time of ``variant``'s ranker on one evaluation batch."""
        from transact.experiments.table9 import forward_latency_ms

        _, eval_set, spec = self._variant_data(variant)
        model = self._model(variant, spec)
        batch = next(iter(eval_set.batches(batch_size, shuffle=False)))
        timing = forward_latency_ms(
            model, batch.inputs, device=self.device, repeats=self.budget.latency_batches
        )
        return timing["median_ms"]
