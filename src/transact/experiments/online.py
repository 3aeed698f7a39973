"""What the paper's online experiments share: the world, the trained variants, verdicts.

The online experiments (``table5``, ``fig6``, ``diversity``, ``feedback_loop``,
``mechanisms``) run through :mod:`transact.online`'s library API
(:func:`transact.online.simulate`) on one world per budget
(:class:`~transact.experiments.budget.OnlineBudget`; ``mechanisms``: one per switch):

* :func:`prepare_world` generates (or reuses) the offline world, the pre-period
  (:func:`generated_world`: any ``WorldConfig``, cached by its digest);
* :func:`train_variant` trains a model variant with the shipped run config
  (``baseline_small``/``transact_small``) plus the variant's encoder options on the
  world's training window, through the pipeline (``build_examples`` + ``train_run``), so
  the run records its run config and the simulator can retrain it. A finished run is
  reused when its run config and world match: from the experiments' cache, or from
  ``transact demo``'s ``runs/`` beside the world (``--dataset runs/demo/world`` reuses
  the demo's two models);
* :func:`judge` turns a :class:`~transact.online.stats.Lift` and the paper's number into
  a verdict cell with :mod:`transact.evaluation.verdict` (holds / contradicted /
  unsettled) and the minimum detectable effect of the interval;
* :func:`write_results` writes ``results.json`` and ``results.md``.

The models are served without the batch (PinnerFormer) user embedding, as the demo's:
the shipped run configs build examples without one.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from transact.data.schema import MS_PER_HOUR
from transact.evaluation.verdict import judge_cell
from transact.experiments.budget import OnlineBudget
from transact.online.result import OnlineResult
from transact.online.stats import Lift, paired_lift

Z_POWER = 0.841621
"""The standard normal's 80% quantile: the power term of an MDE."""
MDE_Z = 1.959964 + Z_POWER
"""Minimum detectable effect = this x the lift's standard error: the true lift a two-sided
5% test detects with 80% power."""

EQUIVALENCE_MARGIN = 0.05
"""A lift within 5% counts as "not hurt" (the non-inferiority cells)."""


@dataclass(frozen=True)
class OnlineVariant:
    """A model variant of the online experiments: a shipped run config and encoder options.

    Args:
        key: the arm's name (``baseline``, ``transact``, ``transact_mask``).
        label: what the tables print.
        config: the shipped run config (``baseline_small`` or ``transact_small``).
        encoder_overrides: ``(field, value)`` merged into the config's
            ``[model] encoder_overrides`` (``TransActConfig`` fields).
    """

    key: str
    label: str
    config: str
    encoder_overrides: tuple[tuple[str, Any], ...] = ()


BASELINE = OnlineVariant("baseline", "Pinnability without sequence (baseline)", "baseline_small")
TRANSACT = OnlineVariant(
    "transact", "TransAct as the demo trains it (the paper's 24 h time-window mask)",
    "transact_small",
)  # fmt: skip
NO_MASK = (("time_window_max_ms", 0),)
"""The encoder override that switches the random time-window mask off."""
TRANSACT_NO_MASK = OnlineVariant(
    "transact_no_mask", "TransAct without the time-window mask", "transact_small", NO_MASK
)
TRANSACT_MASK = OnlineVariant(
    "transact_mask",
    "TransAct with the paper's random time-window mask (24 h)",
    "transact_small",
    (("time_window_max_ms", 24 * MS_PER_HOUR),),
)
TRANSACT_DROPOUT = OnlineVariant(
    "transact_dropout",
    "TransAct, no mask, dropout 0.3 (the paper's 0.1 x 3)",
    "transact_small",
    (*NO_MASK, ("dropout", 0.3)),
)
TRANSACT_ACTION_MASK = OnlineVariant(
    "transact_action_mask",
    "TransAct, no mask, random action mask 20%",
    "transact_small",
    (*NO_MASK, ("random_action_mask_rate", 0.2)),
)
"""The diversity experiment's variants spell the mask out, whatever the shipped
``transact_small.toml`` says, so that its comparisons stay the paper's (4.4.4)."""


def prepare_world(dataset: str, budget: OnlineBudget, work_dir: Path, progress: bool) -> Path:
    """The offline world of the experiment: ``dataset`` when it is a generated world dir,
    else the budget's preset (with its overrides) generated once into ``work_dir``."""
    if dataset != "world":
        world_dir_config(Path(dataset))  # refuses a directory that is not a generated world
        return Path(dataset)
    return generated_world(budget_world_config(budget), budget.world_preset, work_dir, progress)


def budget_world_config(budget: OnlineBudget) -> Any:
    """The :class:`~transact.data.world.WorldConfig` of ``budget``: its preset with its
    ``world_overrides``."""
    from transact.data.world import PRESETS

    overrides: dict[str, Any] = dict(budget.world_overrides)
    return replace(PRESETS[budget.world_preset], **overrides)


def world_dir_config(path: Path) -> Any:
    """The :class:`~transact.data.world.WorldConfig` a generated world dir was made with;
    raises ``ValueError`` for a directory that is not one."""
    from transact.data.io import MANIFEST_NAME, load_manifest
    from transact.online.replay import world_config_of

    if not (path / MANIFEST_NAME).exists() or not load_manifest(path).extra.get("config"):
        raise ValueError(
            f"--dataset {path}: the online experiments continue a generated world "
            "(`transact data generate` or `transact demo`'s world/), not this directory"
        )
    return world_config_of(load_manifest(path), path)


def generated_world(
    config: Any, preset: str, work_dir: Path, progress: bool, seed: int = 0
) -> Path:
    """The world of ``config`` (a ``WorldConfig``) and ``seed``, generated once into
    ``work_dir/data`` under a name keyed by the config's digest and reused while its
    manifest records the same config."""
    from transact.data.io import MANIFEST_NAME, load_manifest
    from transact.data.world import generate_world

    wanted = json.loads(json.dumps(asdict(config)))
    digest = hashlib.sha1(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:10]
    name = f"world-{preset}-{digest}" + (f"-s{seed}" if seed else "")
    path = work_dir / "data" / name
    if (path / MANIFEST_NAME).exists() and load_manifest(path).extra.get("config") == wanted:
        return path
    if path.exists():  # a generation that did not finish (no manifest yet): start again
        import shutil

        shutil.rmtree(path)
    generate_world(path, config, seed=seed, preset=preset, progress=progress)
    return path


def variant_run_config(variant: OnlineVariant, budget: OnlineBudget, seed: int = 0) -> Any:
    """The run config of ``variant``: its shipped TOML with the budget's ``[train]`` and
    ``[data] seq_len`` and the variant's encoder options merged in."""
    from transact.pipeline.run_config import (
        read_run_table,
        run_config_from_dict,
        shipped_config_path,
        with_overrides,
    )

    path = shipped_config_path(variant.config)
    raw = read_run_table(path)
    overrides: dict[str, dict[str, Any]] = {"train": dict(budget.train_overrides)}
    if seed:
        overrides["train"]["seed"] = seed
    if budget.seq_len is not None:
        overrides["data"] = {"seq_len": budget.seq_len}
    if variant.encoder_overrides:
        model = raw.get("model", {})
        base = model.get("encoder_overrides", {}) if isinstance(model, dict) else {}
        overrides["model"] = {"encoder_overrides": {**base, **dict(variant.encoder_overrides)}}
    return run_config_from_dict(with_overrides(raw, overrides), source=f"{path} ({variant.key})")


def _comparable(run_config: dict[str, Any], spec: Any = None) -> dict[str, Any]:
    """A run config without what does not change the trained model (name, progress bars).

    With the feature ``spec`` the model was trained on, the encoder overrides are reduced
    to those that change the encoder (``effective_overrides``): a variant that spells out
    a default (the diversity experiment's ``transact_mask``, the shipped config's 24 h
    window) matches a model trained without it."""
    out = json.loads(json.dumps(run_config))
    out.pop("name", None)
    out.get("train", {}).pop("progress", None)
    model = out.get("model")
    if spec is not None and isinstance(model, dict) and "encoder" in model:
        from transact.models.encoders import effective_overrides

        try:
            kept = effective_overrides(model["encoder"], spec, model.get("encoder_overrides", {}))
        except (ValueError, TypeError):
            return out  # not buildable here: compare as written
        if kept:
            model["encoder_overrides"] = kept
        else:
            model.pop("encoder_overrides", None)
    return out


def find_trained(run_config: Any, world: Path, search: Sequence[Path]) -> Path | None:
    """A finished run (``model.pt``) under ``search`` trained with ``run_config`` on
    ``world``, or ``None``. Run configs are compared without names and progress bars,
    and with encoder overrides that equal the encoder's defaults dropped (``_comparable``,
    on the feature spec each candidate was trained with)."""
    from transact.models.artifact import ArtifactError, read_model

    wanted = run_config.to_dict()
    for root in search:
        for model in sorted(root.glob("*/model.pt")):
            try:
                artifact = read_model(model)
                meta = artifact.metadata
                spec = artifact.feature_spec()  # a bad spec is an ArtifactError
            except (ArtifactError, OSError, ValueError):
                continue
            data_dir = meta.get("data", {}).get("dir")
            same_world = data_dir is not None and Path(data_dir).resolve() == world.resolve()
            if same_world and _comparable(meta.get("run_config", {}), spec) == _comparable(
                wanted, spec
            ):
                return model.parent
    return None


def train_variant(
    variant: OnlineVariant,
    budget: OnlineBudget,
    world: Path,
    work_dir: Path,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """A trained run of ``variant`` on ``world``'s training window (reused when one with
    the same run config exists, see the module docstring); returns its directory and what
    it cost (``reused_from`` or ``wall_s``). ``progress=False`` turns the training bar
    off (it does not enter the cache key)."""
    from transact.pipeline.run import build_examples, train_run
    from transact.pipeline.windows import resolve_window

    config = variant_run_config(variant, budget, seed)
    if not progress:
        config = replace(config, train=replace(config.train, progress=False))
    cache = work_dir / "models"
    found = find_trained(config, world, [cache, world.parent / "runs"])
    if found is not None:
        return found, {"run": str(found), "reused": True}
    digest = hashlib.sha1(
        json.dumps([_comparable(config.to_dict()), str(world.resolve())], sort_keys=True).encode()
    ).hexdigest()[:10]
    out = cache / f"{variant.key}-{digest}"
    start = time.perf_counter()
    window = resolve_window(world, "train")
    examples = build_examples(world, window, config, evaluation=False)
    metadata = {
        "data": {
            "dir": str(world),
            "start_ms": window.start_ms,
            "end_ms": window.end_ms,
            "n_examples": len(examples),
        }
    }
    train_run(config, examples, examples.feature_spec, out, metadata=metadata)
    return out, {"run": str(out), "reused": False, "wall_s": round(time.perf_counter() - start, 1)}


def judge(
    claim: str,
    lift: Lift,
    paper: float | None,
    *,
    rule: str = "direction",
    sized: bool = True,
    **context: Any,
) -> dict[str, Any]:
    """One verdict cell: the claim, the paper's value (a fraction, or the claim's sign),
    our lift with its 95% interval, the MDE and the verdict.

    ``rule``: ``direction`` (the paper reports an effect of ``paper``'s sign: holds when
    the interval excludes 0 on that side) or ``not_hurt`` (the paper says the metric is
    not hurt: holds when the interval's low end is above -5%, the equivalence rule of
    :mod:`transact.evaluation.verdict` on the harm side). ``sized=False``: the paper
    gives only the direction (``paper``'s sign), so no size is judged against it.
    """
    finite = math.isfinite(lift.ci_low) and math.isfinite(lift.ci_high)
    if rule == "direction":
        if paper is None or paper == 0:
            raise ValueError(f"{claim}: the direction rule needs the paper's non-zero value")
        cell = judge_cell(paper, lift.ci_low, lift.ci_high, null_claim=False, benefit=0)
    elif rule == "not_hurt":
        cell = judge_cell(
            0.0, lift.ci_low, lift.ci_high, null_claim=True, benefit=-1, margin=EQUIVALENCE_MARGIN
        )
    else:
        raise ValueError(f"rule {rule!r}: direction or not_hurt")
    return {
        "claim": claim,
        "paper": paper,
        "rule": rule,
        "lift": _num(lift.lift),
        "ci_low": _num(lift.ci_low),
        "ci_high": _num(lift.ci_high),
        "se": _num(lift.se),
        "mde": _num(MDE_Z * lift.se) if finite else None,
        "p_value": _num(lift.p_value),
        "n_t": lift.n_t,
        "n_c": lift.n_c,
        "method": lift.method,
        "verdict": cell.verdict,
        "sized": sized,
        "size": cell.size if rule == "direction" and sized else None,
        **context,
    }


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def period_values(
    result: OnlineResult,
    arm: str,
    metric: str,
    segment: str = "all",
    design: str = "paired",
    days: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(users, values)`` of an arm over ``days`` (online day indices; None: every day):
    the sum of the days' values, or for a state metric (the entropy) the last day's."""
    from transact.online.metrics import STATES

    uv = result.arm(arm, design).metrics.get(metric, segment)
    picked = uv.values if days is None else uv.values[list(days)]
    return uv.users, (picked[-1].copy() if metric in STATES else picked.sum(axis=0))


def paired_between(
    result: OnlineResult,
    treatment: str,
    control: str,
    metric: str,
    segment: str = "all",
    days: Sequence[int] | None = None,
) -> Lift:
    """The paired lift of copy ``treatment`` over copy ``control`` (any two arms of a
    paired run: the same users with the same random numbers) over ``days``."""
    y_t, y_c = _copies_values(result, (treatment, control), metric, segment, days)
    return paired_lift(y_t, y_c)


def paired_difference_between(
    result: OnlineResult,
    treatment: str,
    other: str,
    control: str,
    metric: str,
    segment: str = "all",
    days: Sequence[int] | None = None,
) -> Lift:
    """``(sum T - sum O) / sum C`` over every user of the paired design, ``T``, ``O`` and
    ``C`` their values in paired copies ``treatment``, ``other`` and ``control``: the
    treatment copy's gain over the control minus the other copy's, on the same users with
    the same random numbers (e.g. full traffic's TransAct against the bucket's TransAct
    served to everyone, ``transact@buckets``). As a paired lift of ``T - O + C`` over
    ``C``, like :func:`paired_difference_of_gains` on a bucket's users."""
    y_t, y_o, y_c = _copies_values(result, (treatment, other, control), metric, segment, days)
    return paired_lift(y_t - y_o + y_c, y_c)


def _copies_values(
    result: OnlineResult,
    copies: Sequence[str],
    metric: str,
    segment: str,
    days: Sequence[int] | None,
) -> list[np.ndarray]:
    """Each paired copy's values over ``days`` (:func:`period_values`), in the same user
    order; raises ``ValueError`` when the copies hold different users."""
    pairs = [period_values(result, c, metric, segment, "paired", days) for c in copies]
    if not all(np.array_equal(pairs[0][0], users) for users, _ in pairs[1:]):
        raise ValueError(f"paired copies {' and '.join(copies)} hold different users")
    return [values for _, values in pairs]


def bucket_users_in_copy(
    result: OnlineResult,
    arm: str,
    copy: str,
    metric: str,
    segment: str = "all",
    days: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(bucket values, copy values)`` over ``days``: the users of bucket ``arm`` (the
    bucket design) with their values there and the same users' values, in the same order,
    in paired copy ``copy``. Every environment of a run draws from one random stream keyed by day
    and user (common random numbers, ``transact.online.simulator``), so the two are
    paired: a user's difference is the arm's effect, not another user's luck."""
    users_b, y_b = period_values(result, arm, metric, segment, "buckets", days)
    users_c, y_c = period_values(result, copy, metric, segment, "paired", days)
    pos = np.searchsorted(users_c, users_b)
    found = (pos < users_c.size) & (users_c[np.minimum(pos, users_c.size - 1)] == users_b)
    if not found.all():
        missing = users_b[~found][:5].tolist()
        raise ValueError(f"paired copy {copy!r} lacks bucket {arm!r}'s users (e.g. {missing})")
    return y_b, y_c[pos]


def paired_across(
    result: OnlineResult,
    arm: str,
    copy: str,
    metric: str,
    segment: str = "all",
    days: Sequence[int] | None = None,
) -> Lift:
    """The paired lift of bucket ``arm``'s users (bucket design) over the same users in
    paired copy ``copy`` (e.g. a small bucket's TransAct users against themselves on the
    baseline): the bucket's gain with the copy as its counterfactual, which only a
    simulator has (:func:`bucket_users_in_copy`)."""
    y_b, y_c = bucket_users_in_copy(result, arm, copy, metric, segment, days)
    return paired_lift(y_b, y_c)


def paired_difference_of_gains(
    result: OnlineResult,
    arm: str,
    copy: str,
    control: str,
    metric: str,
    segment: str = "all",
    days: Sequence[int] | None = None,
) -> Lift:
    """``(sum T - sum B) / sum C`` over bucket ``arm``'s users, with ``T`` their values in
    paired copy ``copy``, ``B`` in the bucket and ``C`` in paired copy ``control``: the
    copy's gain over the control minus the bucket's, on the same users with the same
    random numbers. As a paired lift of ``T - B + C`` over ``C`` (the same ratio), so its
    delta-method interval carries the correlation of the three, which
    :func:`difference_of_lifts` must ignore."""
    gain, y_c = _gains_apart(result, arm, copy, control, metric, segment, days)
    return paired_lift(gain + y_c, y_c)


def _gains_apart(
    result: OnlineResult,
    arm: str,
    copy: str,
    control: str,
    metric: str,
    segment: str,
    days: Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(T - B, C)`` per user of bucket ``arm`` over ``days``
    (:func:`paired_difference_of_gains`'s terms)."""
    y_b, y_t = bucket_users_in_copy(result, arm, copy, metric, segment, days)
    _, y_c = bucket_users_in_copy(result, arm, control, metric, segment, days)
    return y_t - y_b, y_c


def paired_growth_of_gains(
    result: OnlineResult,
    arm: str,
    copy: str,
    control: str,
    metric: str,
    early: Sequence[int],
    late: Sequence[int],
    segment: str = "all",
) -> Lift:
    """How much :func:`paired_difference_of_gains` grows from the ``early`` days to the
    ``late`` ones, on bucket ``arm``'s users: ``D(late) - D(early)`` with its paired
    delta-method interval (:func:`~transact.online.stats.change_of_paired_ratio`), which
    carries the correlation of a user's two periods."""
    from transact.online.stats import change_of_paired_ratio

    return change_of_paired_ratio(
        *_gains_apart(result, arm, copy, control, metric, segment, late),
        *_gains_apart(result, arm, copy, control, metric, segment, early),
    )


def difference_of_lifts(a: Lift, b: Lift) -> Lift:
    """``a - b`` of two lifts with the interval of independent estimates
    (``se = sqrt(se_a^2 + se_b^2)``; conservative when they are positively correlated, as
    lifts on overlapping users are)."""
    from transact.online.stats import normal_interval

    diff = a.lift - b.lift
    se = math.sqrt(a.se**2 + b.se**2)
    low, high, p = normal_interval(diff, se)
    return Lift(
        lift=diff, ci_low=low, ci_high=high, se=se, p_value=p,
        mean_t=a.lift, mean_c=b.lift, n_t=a.n_t, n_c=b.n_t, method="difference of lifts",
    )  # fmt: skip


def slope_of(lifts: Sequence[Lift]) -> Lift:
    """The weighted least-squares slope of daily lifts over the days (per day), with its
    interval (weights ``1 / se^2``; days treated as independent estimates)."""
    from transact.online.stats import normal_interval

    pts = [
        (k + 1, x.lift, x.se)
        for k, x in enumerate(lifts)
        if math.isfinite(x.lift) and math.isfinite(x.se) and x.se > 0
    ]
    nan = Lift(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 0, 0, "slope")
    if len(pts) < 3:
        return nan
    d, y, se = (np.array(v, dtype=np.float64) for v in zip(*pts, strict=True))
    w = 1.0 / se**2
    d_bar = float((w * d).sum() / w.sum())
    y_bar = float((w * y).sum() / w.sum())
    sxx = float((w * (d - d_bar) ** 2).sum())
    slope = float((w * (d - d_bar) * (y - y_bar)).sum() / sxx)
    s_se = math.sqrt(1.0 / sxx)
    low, high, p = normal_interval(slope, s_se)
    return Lift(
        lift=slope, ci_low=low, ci_high=high, se=s_se, p_value=p, mean_t=y_bar, mean_c=d_bar,
        n_t=len(pts), n_c=len(pts), method="wls slope per day",
    )  # fmt: skip


def fmt_pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:+.{digits}f}%"


def cells_table(cells: Sequence[dict[str, Any]]) -> list[str]:
    """The verdict table: claim, paper, ours with the interval, MDE, verdict."""
    lines = [
        "| claim | paper | ours (95% interval) | MDE | users | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for c in cells:
        if c["rule"] == "not_hurt":
            paper = "not hurt (> -5%)"
        elif not c.get("sized", True):
            paper = "> 0" if c["paper"] > 0 else "< 0"
        else:
            paper = fmt_pct(c["paper"])
        ours = f"{fmt_pct(c['lift'])} [{fmt_pct(c['ci_low'])}, {fmt_pct(c['ci_high'])}]"
        mde = "n/a" if c["mde"] is None else f"{100 * c['mde']:.1f}%"
        size = f" ({c['size']})" if c.get("size") else ""
        lines.append(
            f"| {c['claim']} | {paper} | {ours} | {mde} | {c['n_t']:,} / {c['n_c']:,} "
            f"| **{c['verdict']}**{size} |"
        )
    return lines


def single_run_record(out_dir: Path, wall_s: float, result: OnlineResult) -> dict[str, Any]:
    """``results.json``'s ``runs`` of an experiment with one simulation (in ``out_dir/run``)."""
    return {
        "run": {"dir": str(out_dir / "run"), "wall_s": wall_s, "impressions": result.impressions}
    }


def write_results(
    out_dir: Path, results: dict[str, Any], markdown: Sequence[str]
) -> dict[str, Path]:
    """Write ``results.json`` (``results``) and ``results.md`` (``markdown``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "md": out_dir / "results.md"}
    paths["json"].write_text(json.dumps(results, indent=1, default=str) + "\n")
    paths["md"].write_text("\n".join(markdown) + "\n")
    return paths


@dataclass
class OnlineRun:
    """One online experiment's context: budget, world, output and cache directories."""

    name: str
    budget: OnlineBudget
    world: Path
    out_dir: Path
    work_dir: Path
    progress: bool = True
    seed: int = 0

    def models(self, variants: Sequence[OnlineVariant]) -> tuple[dict[str, Path], dict]:
        """Every variant's trained run (trained or reused) and what each cost."""
        runs, info = {}, {}
        for v in variants:
            runs[v.key], info[v.key] = train_variant(
                v, self.budget, self.world, self.work_dir, self.seed, self.progress
            )
        return runs, info

    def ab_config(self, models: dict[str, Path], share: float, paired: bool) -> Any:
        """Table 5's A/B test on this world: the ``baseline`` and ``transact`` runs of
        ``models`` in buckets of ``share`` each (and, ``paired``, in paired copies) for the
        budget's days, models fixed."""
        from transact.online import ArmSpec, OnlineConfig

        b = self.budget
        return OnlineConfig(
            str(self.world),
            (ArmSpec("baseline", str(models["baseline"]), share),
             ArmSpec("transact", str(models["transact"]), share)),
            days=b.days, paired=paired, pre_days=b.pre_days, seed=self.seed,
            progress=self.progress,
        )  # fmt: skip

    def simulate(self, label: str, config: Any) -> tuple[OnlineResult, float]:
        """Run ``config`` into ``out_dir/label`` (report.json/md and figures beside it);
        what an earlier, perhaps interrupted, run of this experiment left there goes."""
        import shutil

        from transact.online import simulate, write_report

        if (self.out_dir / label).exists():
            shutil.rmtree(self.out_dir / label)
        start = time.perf_counter()
        result = simulate(config, self.out_dir / label)
        write_report(result, self.out_dir / label)
        return result, round(time.perf_counter() - start, 1)

    def header(self, title: str) -> list[str]:
        b = self.budget
        return [
            f"# {title}",
            "",
            f"World `{self.world}` (pre-period: the offline days); budget `{b.name}`. "
            "Verdicts by `transact.evaluation.verdict` on the 95% intervals; MDE: the "
            "true lift the test detects with 80% power (2.8 standard errors).",
            "",
        ]


ONLINE_EXPERIMENTS = {
    "table5": "table5",
    "fig6": "fig6",
    "diversity": "diversity",
    "feedback-loop": "feedback_loop",
    "mechanisms": "mechanisms",
}
"""Command name -> module of ``transact.experiments`` (each has ``NAME``, ``TITLE``, ``run``)."""


def run_online_experiment(
    name: str,
    *,
    dataset: str,
    budget: OnlineBudget,
    out_root: Path,
    progress: bool = True,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Run online experiment ``name`` into ``out_dir`` (default ``out_root/<name>/``;
    models cached in ``out_root/_work``); returns its results (what ``results.json``
    holds, with the ``seed``). ``options``: the experiment's own keyword arguments
    (``mechanisms``: ``rows``)."""
    import importlib

    if name not in ONLINE_EXPERIMENTS:
        raise KeyError(f"no online experiment {name!r}; known: {sorted(ONLINE_EXPERIMENTS)}")
    module = importlib.import_module(f"transact.experiments.{ONLINE_EXPERIMENTS[name]}")
    work_dir = out_root / "_work"
    start = time.perf_counter()
    ctx = OnlineRun(
        name=name,
        budget=budget,
        world=prepare_world(dataset, budget, work_dir, progress),
        out_dir=out_dir if out_dir is not None else out_root / name,
        work_dir=work_dir,
        progress=progress,
        seed=seed,
    )
    results: dict[str, Any] = module.run(ctx, **(options or {}))
    results["seed"] = seed
    results["wall_s"] = round(time.perf_counter() - start, 1)
    (ctx.out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    return results
