"""Scale presets for the paper's experiments: ``smoke``, ``quick``, ``default``, ``full``,
``settle`` and ``large``.

A budget fixes everything that trades time for fidelity: which world preset is generated,
how many training steps each variant gets, how many seeds are repeated, and how much of
each experiment's grid is run. The model hyperparameters themselves come from the paper
(section 4.1.2) through the model presets; a budget only shrinks the training schedule
and, for ``smoke``, the grids (the grids each experiment runs are written into its
``results.json`` so nothing is hidden).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ExperimentBudget:
    """How much compute one experiment run may spend.

    Args:
        name: preset name (``smoke``, ``default``, ``large``).
        world_preset: simulated-world preset passed to the data stage's ``generate_world``.
        model_preset: ``PinnabilityConfig.preset`` name for every trained variant.
        train_steps: optimizer steps per variant (batches of ``batch_size``).
        batch_size: training batch size (paper: 12000; scaled down, see docs/results.md).
        peak_lr: peak learning rate after warm-up (paper: 0.0048 at batch 12000).
        warmup_steps: linear warm-up steps (paper: 5000; scaled with ``train_steps``).
        seeds: training seeds; every variant is trained once per seed and lifts are
            reported as mean and spread over seeds.
        figure_seeds: seeds of the figures' sweeps (Figures 4 and 5 show trends over a
            grid; the tables, whose rows differ by a few percent, use ``seeds``).
        seq_len: the sequence length |S| of every variant unless the experiment varies
            it (paper: 100).
        fig4_seq_lens: sequence lengths Figure 4 sweeps.
        fig5_layers / fig5_ffn_dims: the transformer grid of Figure 5.
        eval_max_users: evaluate on at most this many users of the held-out week, drawn
            uniformly with all their requests (0 = every user); scoring the whole week is
            most of a variant's cost at |S| = 100.
        embedding_preset: PinnerFormer training preset of the batch user embeddings
            (``transact.embeddings`` presets: ``tiny``, ``demo``, ``full``).
        latency_batches: timed forward passes per latency figure (after warm-up).
        negative_ratio: negatives kept per positive in the training set (paper 4.1.1
            down-samples negatives to a fixed ratio; evaluation is never down-sampled).
    """

    name: str
    world_preset: str
    model_preset: str
    train_steps: int
    batch_size: int
    peak_lr: float
    warmup_steps: int
    seeds: tuple[int, ...]
    figure_seeds: tuple[int, ...]
    seq_len: int
    fig4_seq_lens: tuple[int, ...]
    fig5_layers: tuple[int, ...]
    fig5_ffn_dims: tuple[int, ...]
    eval_max_users: int
    embedding_preset: str
    latency_batches: int
    negative_ratio: float

    def __post_init__(self) -> None:
        for field_name in ("train_steps", "batch_size", "seq_len", "latency_batches"):
            if getattr(self, field_name) < 1:
                raise ValueError(f"ExperimentBudget.{field_name} must be >= 1")
        if not self.seeds or not self.figure_seeds:
            raise ValueError("ExperimentBudget.seeds and figure_seeds must name a seed each")
        if self.warmup_steps < 0 or self.warmup_steps > self.train_steps:
            raise ValueError("ExperimentBudget.warmup_steps must be in [0, train_steps]")
        if self.peak_lr <= 0:
            raise ValueError("ExperimentBudget.peak_lr must be > 0")
        if any(s < 1 for s in self.fig4_seq_lens):
            raise ValueError("ExperimentBudget.fig4_seq_lens must all be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


BUDGETS: dict[str, ExperimentBudget] = {
    # Every experiment in a couple of minutes on 2 cores: a test runs `experiment all`.
    # Numbers from this budget are noise; they prove the pipeline, not the paper.
    "smoke": ExperimentBudget(
        name="smoke",
        world_preset="tiny",
        model_preset="small",
        train_steps=8,
        batch_size=128,
        peak_lr=2e-3,
        warmup_steps=3,
        seeds=(0,),
        figure_seeds=(0,),
        seq_len=10,
        fig4_seq_lens=(5, 10),
        fig5_layers=(1, 2),
        fig5_ffn_dims=(32,),
        eval_max_users=50,
        embedding_preset="tiny",
        latency_batches=1,
        negative_ratio=1.0,
    ),
    # What fits a shared 2-core machine in about an hour per dataset for the tables: the
    # demo world, one seed, 120 steps of 256, 600 evaluation users, thinner grids.
    # docs/results.md reports numbers at this budget.
    "quick": ExperimentBudget(
        name="quick",
        world_preset="demo",
        model_preset="small",
        train_steps=120,
        batch_size=256,
        peak_lr=2e-3,
        warmup_steps=12,
        seeds=(0,),
        figure_seeds=(0,),
        seq_len=100,
        fig4_seq_lens=(10, 50, 100),
        fig5_layers=(1, 2, 4),
        fig5_ffn_dims=(32, 384),
        eval_max_users=600,
        embedding_preset="demo",
        latency_batches=5,
        negative_ratio=1.0,
    ),
    # The budget: every experiment in about an hour per dataset on 2 quiet cores
    # (measured: one TransAct-sized variant trains at ~480 examples/s and scores at ~1,000
    # examples/s per core at |S| = 100, and the LSTM of Table 3 at 34 / 410). One seed,
    # 200 steps of 256 (a quarter of an epoch of the demo world), 500 evaluation users,
    # Figure 5 on 1-2 layers x FFN 32/384 (4 layers x 384 alone costs four TransActs).
    # Lifts at this budget are under-trained estimates; `full` is the budget that can
    # confirm or refute the paper.
    "default": ExperimentBudget(
        name="default",
        world_preset="demo",
        model_preset="small",
        train_steps=200,
        batch_size=256,
        peak_lr=2e-3,
        warmup_steps=20,
        seeds=(0,),
        figure_seeds=(0,),
        seq_len=100,
        fig4_seq_lens=(10, 20, 50, 100),
        fig5_layers=(1, 2),
        fig5_ffn_dims=(32, 384),
        eval_max_users=500,
        embedding_preset="demo",
        latency_batches=5,
        negative_ratio=1.0,
    ),
    # The paper's grids, three seeds, every evaluation user: about 9 hours per dataset on
    # 2 cores (docs/results.md, "Budgets").
    "full": ExperimentBudget(
        name="full",
        world_preset="demo",
        model_preset="small",
        train_steps=300,
        batch_size=256,
        peak_lr=2e-3,
        warmup_steps=30,
        seeds=(0, 1, 2),
        figure_seeds=(0,),
        seq_len=100,
        fig4_seq_lens=(10, 20, 50, 100),
        fig5_layers=(1, 2, 3, 4),
        fig5_ffn_dims=(32, 64, 128, 256, 384),
        eval_max_users=0,
        embedding_preset="demo",
        latency_batches=10,
        negative_ratio=1.0,
    ),
    # The budget that settles the offline tables (issue 15): one epoch of the demo world's
    # training window at the demo's batch (415 x 512 = 212k examples, the `small` trainer
    # preset's schedule), every evaluation user, three seeds. Sized from a pilot with
    # `transact experiment power` so that TransAct's HIT@3/repin lift over the baseline
    # (all users) has an mde <= 4.7%, half the paper's +9.4% (docs/results.md, "Budgets").
    "settle": ExperimentBudget(
        name="settle",
        world_preset="demo",
        model_preset="small",
        train_steps=415,
        batch_size=512,
        peak_lr=2e-3,
        warmup_steps=50,
        seeds=(0, 1, 2),
        figure_seeds=(0,),
        seq_len=100,
        fig4_seq_lens=(10, 20, 50, 100),
        fig5_layers=(1, 2, 3, 4),
        fig5_ffn_dims=(32, 64, 128, 256, 384),
        eval_max_users=0,
        embedding_preset="demo",
        latency_batches=10,
        negative_ratio=1.0,
    ),
    # For machines with more cores or a GPU.
    "large": ExperimentBudget(
        name="large",
        world_preset="demo",
        model_preset="small",
        train_steps=3000,
        batch_size=2048,
        peak_lr=4.8e-3,
        warmup_steps=300,
        seeds=(0, 1, 2, 3, 4),
        figure_seeds=(0, 1, 2),
        seq_len=100,
        fig4_seq_lens=(10, 20, 50, 100, 200),
        fig5_layers=(1, 2, 3, 4),
        fig5_ffn_dims=(32, 64, 128, 256, 384),
        eval_max_users=0,
        embedding_preset="full",
        latency_batches=30,
        negative_ratio=1.0,
    ),
}


def get_budget(name: str) -> ExperimentBudget:
    """The preset called ``name``; raises ``KeyError`` listing the known presets."""
    try:
        return BUDGETS[name]
    except KeyError:
        raise KeyError(f"unknown budget {name!r}; known: {sorted(BUDGETS)}") from None


@dataclass(frozen=True)
class OnlineBudget:
    """How much compute one online experiment (``table5``, ``fig6``, ``diversity``,
    ``feedback-loop``) may spend: the world, the models' training, the simulated days.

    Args:
        name: preset name (``smoke``, ``default``).
        world_preset: the simulated world's preset (the pre-period the models train on).
        world_overrides: ``(field, value)`` changes of that preset (``smoke``: fewer users
            and days, so a test runs in seconds); empty for the settling budgets, whose
            world is the preset as it is.
        train_overrides: ``[train]`` fields set in every variant's run config (empty: as the
            shipped TOML has them, i.e. exactly the demo's models).
        seq_len: ``[data] seq_len`` of every variant (None: the TOML's, 100).
        days: online days of Table 5, the diversity experiment and the feedback loop.
        fig6_days: online days of Figure 6 (the paper's figure spans two weeks).
        retrain_steps: optimizer steps of every retrain during the online period (0: the
            run config's; retraining from scratch dominates the cost of Figure 6).
        retrain: the retraining schedule of the retrained arms (paper 3.4.1: twice a week).
        settle_share: Table 5's bucket share per arm that can settle a lift on this world.
        paper_share: the paper's bucket share (1.5% of users per arm).
        feedback_share: the small bucket of the feedback-loop experiment.
        pre_days: offline days before the experiment that are CUPED's covariate.
    """

    name: str
    world_preset: str
    world_overrides: tuple[tuple[str, int | float], ...]
    train_overrides: tuple[tuple[str, int | float | str | bool], ...]
    seq_len: int | None
    days: int
    fig6_days: int
    retrain_steps: int
    retrain: str
    settle_share: float
    paper_share: float
    feedback_share: float
    pre_days: int

    def __post_init__(self) -> None:
        for field_name in ("days", "fig6_days", "pre_days"):
            if getattr(self, field_name) < 1:
                raise ValueError(f"OnlineBudget.{field_name} must be >= 1")
        for field_name in ("settle_share", "paper_share", "feedback_share"):
            if not 0 < getattr(self, field_name) <= 0.5:
                raise ValueError(f"OnlineBudget.{field_name} must be in (0, 0.5]")

    def to_dict(self) -> dict:
        return asdict(self)


ONLINE_BUDGETS: dict[str, OnlineBudget] = {
    # Every online experiment in well under a minute: a test runs each. A 200-user world
    # of 4 offline days, models of a few steps, 2 online days. Numbers are noise.
    "smoke": OnlineBudget(
        name="smoke",
        world_preset="tiny",
        world_overrides=(("n_users", 200), ("warmup_days", 1), ("train_days", 2), ("eval_days", 1)),
        train_overrides=(("preset", "tiny"), ("max_steps", 6), ("batch_size", 64)),
        seq_len=20,
        days=2,
        fig6_days=3,
        retrain_steps=4,
        retrain="every:1d",
        settle_share=0.5,
        paper_share=0.015,
        feedback_share=0.1,
        pre_days=2,
    ),
    # The demo world and the demo's models, three online days (one week for Figure 6):
    # what fits the shared 2-core machine in about an hour per experiment (a day of one
    # environment of the demo world with a TransAct arm costs about 75 s of CPU).
    "quick": OnlineBudget(
        name="quick",
        world_preset="demo",
        world_overrides=(),
        train_overrides=(),
        seq_len=None,
        days=3,
        fig6_days=7,
        retrain_steps=100,
        retrain="every:3.5d",
        settle_share=0.5,
        paper_share=0.015,
        feedback_share=0.1,
        pre_days=7,
    ),
    # The demo world and the demo's models as the shipped TOMLs train them (so
    # `--dataset runs/demo/world` reuses `transact demo`'s two runs). One week online for
    # Table 5, the diversity experiment and the feedback loop, two for Figure 6;
    # retrains of 150 steps (a third of the demo's training) to keep Figure 6 in hours.
    "default": OnlineBudget(
        name="default",
        world_preset="demo",
        world_overrides=(),
        train_overrides=(),
        seq_len=None,
        days=7,
        fig6_days=14,
        retrain_steps=150,
        retrain="every:3.5d",
        settle_share=0.5,
        paper_share=0.015,
        feedback_share=0.1,
        pre_days=7,
    ),
}


def get_online_budget(name: str) -> OnlineBudget:
    """The online preset called ``name``; raises ``KeyError`` listing the known presets."""
    try:
        return ONLINE_BUDGETS[name]
    except KeyError:
        raise KeyError(
            f"no online budget {name!r}; the online experiments know {sorted(ONLINE_BUDGETS)}"
        ) from None
