"""Run configs: one TOML file describes one model's run (training and evaluation).

A run file has a top-level ``name`` and the tables ``[data]``, ``[heads]``, ``[model]``,
``[loss]``, ``[train]`` and ``[eval]``; every table is optional and defaults to the paper's
values (model/train tables may start from a ``preset``). ``[heads]`` names the heads, their
utility weights and the label-weight matrix by action name (:mod:`transact.pipeline.heads`);
it is checked against the dataset when a run starts (:meth:`RunConfig.resolved`). :func:`load_run_config` checks every
table and raises ONE error that lists each bad field as ``FILE: [table].field: why``,
so a config is fixed in one pass.

The configs the project ships (``baseline_small``, ``transact_small``, ``transact_paper``)
are package data in ``src/transact/configs/`` (:func:`shipped_config_path`), so an
installed package finds them; the repository's ``configs/*.toml`` are links to those
files. Example (``configs/transact_small.toml``)::

    name = "transact"
    [model]
    preset = "small"
    encoder = "transact"
    [train]
    preset = "small"

This module is above ``training/`` and ``evaluation/``: it holds their configs
(``TrainConfig``, ``EvaluationConfig``), and neither of them imports it.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transact.data.schema import ActionVocabulary
from transact.evaluation.report import EvaluationConfig
from transact.models import PinnabilityConfig
from transact.models.config_utils import coerce_fields
from transact.pipeline.heads import HeadsConfig, ResolvedHeads
from transact.training.config import TrainConfig
from transact.training.loss import LossConfig

TABLES = ("data", "heads", "model", "loss", "train", "eval")


@dataclass(frozen=True)
class DataConfig:
    """How examples are built from a world/log directory.

    Args:
        seq_len: realtime sequence length |S| (paper: 100).
        negative_ratio: training negatives kept per positive (paper 4.1.1 down-samples
            negatives to a fixed ratio); 0 keeps every negative. Evaluation data is never
            down-sampled.
        train_randomized_only: train only on randomized requests (default: all requests).
        eval_batch_size: batch size for scoring evaluation data.
        seed: sampling seed.
    """

    seq_len: int = 100
    negative_ratio: float = 0.0
    train_randomized_only: bool = False
    eval_batch_size: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise ValueError(f"seq_len: must be >= 1, got {self.seq_len}")
        if self.negative_ratio < 0:
            raise ValueError(f"negative_ratio: must be >= 0, got {self.negative_ratio}")
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size: must be >= 1, got {self.eval_batch_size}")


@dataclass(frozen=True)
class RunConfig:
    """One training run: data, model, loss, optimizer/schedule and evaluation settings.

    ``model`` and ``loss`` stay the tables as written (validated on load against
    ``PinnabilityConfig`` / ``LossConfig``), so a ``preset`` stays a name in the run
    config that ``model.pt`` records. ``evaluation.utility`` is ``heads.utility`` (empty
    until a dataset resolves the default, :meth:`resolved`).
    """

    name: str = "model"
    data: DataConfig = field(default_factory=DataConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "small"})
    loss: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=lambda: TrainConfig.preset("small"))
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data": dataclasses.asdict(self.data),
            "heads": self.heads.to_dict(),
            "model": dict(self.model),
            "loss": dict(self.loss),
            "train": self.train.to_dict(),
            "eval": {
                "k": self.evaluation.k,
                "test": self.evaluation.test,
                "n_bootstrap": self.evaluation.n_bootstrap,
                "alpha": self.evaluation.alpha,
                "seed": self.evaluation.seed,
            },
        }

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def resolve_heads(self, actions: ActionVocabulary, available: tuple[str, ...]) -> ResolvedHeads:
        """``[heads]`` checked against a dataset (its vocabulary and label actions) with
        the defaults filled in; raises ``ValueError`` naming each bad field."""
        return self.heads.resolve(actions, available)

    def resolved(self, actions: ActionVocabulary, available: tuple[str, ...]) -> RunConfig:
        """This config with ``[heads]`` made explicit for a dataset: the names, every
        utility weight (also ``evaluation.utility``), M by name if given. ``model.pt``
        records this form, so evaluation and serving need no dataset to read it."""
        r = self.resolve_heads(actions, available)
        heads = HeadsConfig(names=r.names, utility=r.utility, label_weights=r.label_weights)
        evaluation = dataclasses.replace(self.evaluation, utility=dict(r.utility))
        return dataclasses.replace(self, heads=heads, evaluation=evaluation)


def _build_plain(cls: type, d: dict[str, Any], table: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    errors = [f"[{table}].{k}: unknown field (known: {sorted(names)})" for k in d if k not in names]
    if errors:
        raise ValueError("\n".join(errors))
    try:  # types first (a message naming the field), then the dataclass's own range checks
        return cls(**coerce_fields(cls, d, f"[{table}]"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"[{table}]: {exc}") from None


def validate_model_table(d: dict[str, Any]) -> None:
    """Raise if ``[model]`` is not a valid ``PinnabilityConfig``."""
    PinnabilityConfig.from_dict(dict(d))


def validate_loss_table(d: dict[str, Any]) -> None:
    """Raise if ``[loss]`` is not a valid ``LossConfig``."""
    LossConfig.from_dict(dict(d))


def run_config_from_dict(raw: dict[str, Any], *, source: str = "<dict>") -> RunConfig:
    """Build and fully validate a :class:`RunConfig` from a parsed TOML document."""
    errors: list[str] = []
    unknown = [k for k in raw if k not in (*TABLES, "name")]
    errors += [f"{k}: unknown top-level key (known: name, {', '.join(TABLES)})" for k in unknown]
    name = raw.get("name", "model")
    if not isinstance(name, str) or not name:
        errors.append(f"name: expected a non-empty string, got {name!r}")
    parts: dict[str, Any] = {}
    raw = _legacy_eval_utility(raw, errors)
    for table in TABLES:
        d = raw.get(table, {})
        if not isinstance(d, dict):
            errors.append(f"[{table}]: expected a table, got {d!r}")
            continue
        try:
            if table == "heads":
                parts["heads"] = HeadsConfig.from_dict(d)
            elif table == "data":
                parts["data"] = _build_plain(DataConfig, d, "data")
            elif table == "train":
                parts["train"] = (
                    TrainConfig.from_dict(d, where="train") if d else TrainConfig.preset("small")
                )
            elif table == "eval":
                parts["evaluation"] = _build_plain(EvaluationConfig, d, "eval")
            elif table == "model":
                model = d or {"preset": "small"}
                validate_model_table(model)
                parts["model"] = dict(model)
            else:
                validate_loss_table(d)
                parts["loss"] = dict(d)
        except (TypeError, ValueError, KeyError) as exc:
            msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            for line in msg.removeprefix("invalid config:").strip().splitlines():
                line = line.strip()
                keep = line.startswith(("[", f"{table}."))
                errors.append(line if keep else f"[{table}] {line}")
    if errors:
        raise ValueError(f"invalid run config {source}:\n  " + "\n  ".join(errors))
    heads = parts.get("heads", HeadsConfig())
    if heads.utility is not None and "evaluation" in parts:
        parts["evaluation"] = dataclasses.replace(parts["evaluation"], utility=dict(heads.utility))
    return RunConfig(name=name, **parts)


def _legacy_eval_utility(raw: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    """``[eval] utility`` (run configs and ``model.pt`` files from before ``[heads]``)
    read as ``[heads] utility``; both at once is an error."""
    ev = raw.get("eval")
    if not isinstance(ev, dict) or "utility" not in ev:
        return raw
    heads = raw.get("heads", {})
    if isinstance(heads, dict) and "utility" in heads:
        errors.append("[eval].utility: the utility weights live in [heads] utility; remove it")
        return raw
    out = dict(raw)
    out["eval"] = {k: v for k, v in ev.items() if k != "utility"}
    out["heads"] = {**(heads if isinstance(heads, dict) else {}), "utility": ev["utility"]}
    return out


def read_run_table(path: str | Path) -> dict[str, Any]:
    """The parsed TOML document of a run config file (not validated yet)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"run config {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None


def with_overrides(
    raw: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """``raw`` with ``overrides[table][field]`` set (tables are copied, not mutated)."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    for table, fields in overrides.items():
        base = out.get(table, {})
        out[table] = {**(base if isinstance(base, dict) else {}), **fields}
    return out


def load_run_config(
    path: str | Path, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> RunConfig:
    """Read and validate a run TOML file (see the module docstring for its layout).

    ``overrides`` (``{"train": {"max_steps": 3}}``) replace single fields before the
    validation, as ``transact train --set`` does.
    """
    raw = read_run_table(path)
    return run_config_from_dict(with_overrides(raw, overrides or {}), source=str(path))


def shipped_configs_dir() -> Path:
    """The directory of the run configs shipped with the package (package data)."""
    return Path(str(importlib.resources.files("transact") / "configs"))


def shipped_config_path(name: str) -> Path:
    """The shipped run config ``name`` (``transact_small`` or ``transact_small.toml``)."""
    file = name if name.endswith(".toml") else f"{name}.toml"
    path = shipped_configs_dir() / file
    if not path.is_file():
        known = sorted(p.stem for p in shipped_configs_dir().glob("*.toml"))
        raise FileNotFoundError(f"no shipped run config {name!r}; shipped: {known}")
    return path
