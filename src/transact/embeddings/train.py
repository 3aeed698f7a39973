"""Train the PinnerFormer user encoder with the dense all-action objective.

One step: sample ``batch_users`` users; for each, cut a window of up to ``train_seq_len``
consecutive actions ending at a random point of their training history; pick up to
``anchors_per_user`` positions of the window that have at least one positive engagement
in the following ``future_window_days`` (and before the end of the training period); pair
each with one of those future positives drawn uniformly; score all pairs with
:func:`transact.models.pinnerformer.dense_all_action_loss` against in-batch and uniform
random negatives with log-Q correction.

The training period ends at the end of ``train_end_date`` (by default the last day before
the held-out evaluation days), and no target ever lies after it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from transact.data.io import ItemTable, day_end_ms, day_to_date, load_manifest
from transact.data.schema import MS_PER_DAY, ActionVocabulary, padded_embedding_table
from transact.embeddings.histories import UserHistories, gather_windows, load_histories
from transact.models.pinnerformer import (
    ItemTower,
    PinnerFormerConfig,
    PinnerFormerEncoder,
    dense_all_action_loss,
)

CHECKPOINT_NAME = "pinnerformer.pt"


@dataclass(frozen=True)
class EmbedTrainConfig:
    """Training hyperparameters of the PinnerFormer encoder.

    Args:
        model: encoder and item-tower architecture.
        steps: optimizer steps.
        batch_users: users per step.
        anchors_per_user: most (anchor, future positive) pairs drawn from one user per step.
        n_random_negatives: uniform random negatives shared by the batch.
        future_window_days: the dense all-action target window (PinnerFormer: 14 days).
        temperature: sampled-softmax temperature.
        learning_rate / weight_decay / grad_clip: AdamW and gradient clipping.
        train_seq_len: longest training window (default: ``model.max_seq_len``). Shorter
            windows make a step cheaper; inference still reads ``max_seq_len`` actions
            (the encoder has no positional embedding, so it reads any length).
        seed: sampling and initialization seed.
    """

    model: PinnerFormerConfig = field(default_factory=PinnerFormerConfig)
    steps: int = 400
    batch_users: int = 64
    anchors_per_user: int = 16
    n_random_negatives: int = 512
    future_window_days: int = 14
    temperature: float = 0.05
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    train_seq_len: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_users", "anchors_per_user", "future_window_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"EmbedTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_random_negatives < 0:
            raise ValueError("EmbedTrainConfig.n_random_negatives must be >= 0")
        if self.train_seq_len is not None and not 1 <= self.train_seq_len <= self.model.max_seq_len:
            raise ValueError(
                f"EmbedTrainConfig.train_seq_len must be in 1..model.max_seq_len "
                f"({self.model.max_seq_len}), got {self.train_seq_len}"
            )

    @property
    def window_len(self) -> int:
        """Training window length: ``train_seq_len`` or ``model.max_seq_len``."""
        return self.train_seq_len or self.model.max_seq_len

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EmbedTrainConfig:
        """Inverse of :meth:`to_dict`; raises naming every field this version does not know."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(
                f"EmbedTrainConfig: unknown fields {unknown} (a checkpoint of another "
                "version of transact; retrain it)"
            )
        d = dict(d)
        d["model"] = PinnerFormerConfig.from_dict(d["model"])
        return cls(**d)


PRESETS: dict[str, EmbedTrainConfig] = {
    # tests: seconds on one core
    "tiny": EmbedTrainConfig(
        model=PinnerFormerConfig(
            d_model=32, num_heads=2, num_layers=1, dim_feedforward=64, max_seq_len=64
        ),
        steps=30,
        batch_users=16,
        anchors_per_user=8,
        n_random_negatives=64,
    ),
    # demo world / Table 2: about 4 minutes on 2 cores (128-action training windows,
    # 256-action inference); lr, temperature and steps chosen on the demo world's held-out
    # week (docs/batch_embeddings.md)
    "demo": EmbedTrainConfig(
        steps=500,
        batch_users=32,
        anchors_per_user=32,
        train_seq_len=128,
        learning_rate=5e-3,
        temperature=0.1,
    ),
    # longer run, same architecture
    "full": EmbedTrainConfig(
        steps=3000, batch_users=128, anchors_per_user=32, n_random_negatives=2048
    ),
}


def preset(name: str, **overrides: object) -> EmbedTrainConfig:
    """A named :data:`PRESETS` config, with fields overridden (e.g. ``seed=1``)."""
    if name not in PRESETS:
        raise KeyError(f"unknown embedding preset {name!r}; known: {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)  # type: ignore[arg-type]


def default_train_end_date(data_dir: str | Path) -> str:
    """The last training day: the day before the manifest's evaluation range begins, so
    no day of the held-out evaluation requests is in training."""
    eval_start_ms = load_manifest(data_dir).eval_start_ms
    return day_to_date(eval_start_ms // MS_PER_DAY - 1)


def item_log_q(positive_items: np.ndarray, n_items: int) -> np.ndarray:
    """``[n_items]`` log popularity of each item among training positives (add-half smoothed)."""
    counts = np.bincount(positive_items, minlength=n_items).astype(np.float64) + 0.5
    return np.log(counts / counts.sum())


class DenseAllActionSampler:
    """Draws training batches of (window, anchor positions, future positives) from histories.

    Args:
        histories: the users' training-period histories.
        positive_ids: action ids that count as positive engagement.
        config: the training config.
        end_time_ms: no target at or after this time.
    """

    def __init__(
        self,
        histories: UserHistories,
        positive_ids: tuple[int, ...],
        config: EmbedTrainConfig,
        end_time_ms: int,
    ) -> None:
        self.h = histories
        self.config = config
        self.end_time_ms = end_time_ms
        self.is_positive = np.isin(histories.action_types, positive_ids)
        n_pos = (
            np.add.reduceat(self.is_positive.astype(np.int64), histories.offsets[:-1])
            if len(self.is_positive)
            else np.zeros(0, np.int64)
        )
        lengths = np.diff(histories.offsets)
        n_pos = np.where(lengths > 0, n_pos, 0)
        # a user trains only if some action has a later positive: >= 2 events, >= 1 positive
        self.trainable = np.flatnonzero((lengths >= 2) & (n_pos >= 1))
        if len(self.trainable) == 0:
            raise ValueError("no user has two or more actions with a positive: nothing to train on")

    def sample(
        self, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """-> (types [B, L], items [B, L], times [B, L], anchor_rows [N], anchor_pos [N], target_items [N])."""
        cfg = self.config
        h = self.h
        rows = rng.choice(
            self.trainable, size=min(cfg.batch_users, len(self.trainable)), replace=False
        )
        rows.sort()
        starts, stops = h.offsets[rows], h.offsets[rows + 1]
        # window end: uniform over 2..n events, so every window has an older action
        ends = starts + 2 + np.floor(rng.random(len(rows)) * (stops - starts - 1)).astype(np.int64)
        types, items, times, lengths = gather_windows(h, rows, ends, cfg.window_len)
        window = int(cfg.future_window_days) * 86_400_000
        a_rows, a_pos, targets = [], [], []
        for b, (start, stop, length) in enumerate(zip(starts, stops, lengths, strict=True)):
            pos_idx = start + np.flatnonzero(self.is_positive[start:stop])
            pos_times = h.times_ms[pos_idx]
            anchor_times = times[b, :length]
            lo = np.searchsorted(pos_times, anchor_times, side="right")
            hi = np.searchsorted(
                pos_times, np.minimum(anchor_times + window, self.end_time_ms - 1), side="right"
            )
            ok = np.flatnonzero(hi > lo)
            if len(ok) == 0:
                continue
            if len(ok) > cfg.anchors_per_user:
                ok = np.sort(rng.choice(ok, size=cfg.anchors_per_user, replace=False))
            pick = lo[ok] + np.floor(rng.random(len(ok)) * (hi[ok] - lo[ok])).astype(np.int64)
            a_rows.append(np.full(len(ok), b))
            a_pos.append(ok)
            targets.append(h.item_ids[pos_idx[pick]])
        if not a_rows:
            empty = np.zeros(0, np.int64)
            return types, items, times, empty, empty, empty
        max_len = max(int(lengths.max()), 1)
        return (
            types[:, :max_len],
            items[:, :max_len],
            times[:, :max_len],
            np.concatenate(a_rows),
            np.concatenate(a_pos),
            np.concatenate(targets),
        )


def model_version(state: dict[str, torch.Tensor], train_end_date: str) -> str:
    """``pf-<train_end_date>-<8 hex of the weights>``: names the model that made a table."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().numpy().tobytes())
    return f"pf-{train_end_date}-{digest.hexdigest()[:8]}"


def train_pinnerformer(
    data_dir: str | Path,
    out_dir: str | Path,
    config: EmbedTrainConfig | None = None,
    train_end_date: str | None = None,
    vocab: ActionVocabulary | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> Path:
    """Train on ``data_dir``'s events up to the end of ``train_end_date``; returns the checkpoint.

    Writes ``out_dir/pinnerformer.pt`` (config, weights, model version, train end date) and
    ``out_dir/train_log.json`` (loss per step). Deterministic for a config seed on one
    machine (torch CPU kernels, numpy Generator). ``device="cuda"`` trains on a GPU (same
    sampling; float results differ slightly from CPU). The checkpoint is saved on CPU.
    """
    from tqdm import tqdm

    config = config or EmbedTrainConfig()
    vocab = vocab or load_manifest(data_dir).actions
    if config.model.num_action_types != vocab.size:
        config = replace(config, model=replace(config.model, num_action_types=vocab.size))
    train_end_date = train_end_date or default_train_end_date(data_dir)
    end_ms = day_end_ms(train_end_date)
    item_content = ItemTable.load(data_dir).embeddings_np
    if item_content.shape[1] != config.model.d_item:
        config = replace(config, model=replace(config.model, d_item=item_content.shape[1]))
    n_items = item_content.shape[0]
    histories = load_histories(data_dir, end_time_ms=end_ms, vocab=vocab, n_items=n_items)
    positive_ids = vocab.positive_ids()
    sampler = DenseAllActionSampler(histories, positive_ids, config, end_ms)
    log_q = torch.as_tensor(
        item_log_q(histories.item_ids[sampler.is_positive], n_items), dtype=torch.float32
    )

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    encoder = PinnerFormerEncoder(config.model).to(device)
    tower = ItemTower(config.model).to(device)
    params = list(encoder.parameters()) + list(tower.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    content = padded_embedding_table(item_content).to(device)
    log_q = log_q.to(device)
    warmup = max(1, config.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, config.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    losses: list[float] = []
    started = time.perf_counter()
    encoder.train()
    tower.train()
    bar = tqdm(range(config.steps), desc="embed train", disable=not progress)
    for _ in bar:
        types, items, times, a_rows, a_pos, targets = sampler.sample(rng)
        if len(a_rows) == 0:
            continue
        states = encoder(
            torch.as_tensor(types, device=device),
            content[torch.as_tensor(items, device=device)],
            torch.as_tensor(times, device=device),
        )
        anchors = states[
            torch.as_tensor(a_rows, device=device), torch.as_tensor(a_pos, device=device)
        ]
        target_ids = torch.as_tensor(targets, device=device)
        negative_ids = torch.as_tensor(
            rng.integers(0, n_items, size=config.n_random_negatives), device=device
        )
        item_vectors = tower(content[torch.cat([target_ids, negative_ids])])
        n = len(target_ids)
        # log of each candidate's expected count in the batch (Yi et al. 2019, mixed negatives)
        positive_log_q = log_q[target_ids] + math.log(n)
        negative_log_q = torch.full(
            (len(negative_ids),),
            math.log(max(config.n_random_negatives, 1) / n_items),
            device=device,
        )
        loss = dense_all_action_loss(
            anchors,
            item_vectors[:n],
            target_ids,
            positive_log_q,
            item_vectors[n:],
            negative_ids,
            negative_log_q,
            config.temperature,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder.cpu()
    tower.cpu()
    state = {"encoder": encoder.state_dict(), "item_tower": tower.state_dict()}
    version = model_version(
        {
            **{f"e.{k}": v for k, v in state["encoder"].items()},
            **{f"t.{k}": v for k, v in state["item_tower"].items()},
        },
        train_end_date,
    )
    path = out_dir / CHECKPOINT_NAME
    torch.save(
        {
            "train_config": config.to_dict(),
            "model_version": version,
            "train_end_date": train_end_date,
            "action_names": list(vocab.names),
            **state,
        },
        path,
    )
    (out_dir / "train_log.json").write_text(
        json.dumps(
            {
                "model_version": version,
                "train_end_date": train_end_date,
                "steps": len(losses),
                "loss_first20": float(np.mean(losses[:20])) if losses else None,
                "loss_last20": float(np.mean(losses[-20:])) if losses else None,
                "losses": losses,
                "seconds": time.perf_counter() - started,
                "n_users": histories.n_users,
                "n_events": histories.n_events,
                "config": config.to_dict(),
            },
            indent=1,
        )
    )
    return path


@dataclass
class LoadedPinnerFormer:
    """A trained checkpoint, ready for inference (eval mode)."""

    encoder: PinnerFormerEncoder
    item_tower: ItemTower
    config: EmbedTrainConfig
    model_version: str
    train_end_date: str


def load_pinnerformer(path: str | Path) -> LoadedPinnerFormer:
    """Load a checkpoint written by :func:`train_pinnerformer` (eval mode, CPU)."""
    from transact.models.artifact import read_torch_file

    ckpt, _ = read_torch_file(path, require_checksum=False)  # weights_only: runs no code
    config = EmbedTrainConfig.from_dict(ckpt["train_config"])
    encoder = PinnerFormerEncoder(config.model)
    encoder.load_state_dict(ckpt["encoder"])
    tower = ItemTower(config.model)
    tower.load_state_dict(ckpt["item_tower"])
    encoder.eval()
    tower.eval()
    return LoadedPinnerFormer(encoder, tower, config, ckpt["model_version"], ckpt["train_end_date"])
