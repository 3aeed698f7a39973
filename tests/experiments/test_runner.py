import json

import numpy as np
import pytest

from tests.fakes import FakeBackend
from transact.experiments import table1, table2
from transact.experiments.budget import BUDGETS, get_budget
from transact.experiments.runner import RunCache, run_experiment
from transact.experiments.spec import ExperimentSpec, Variant


def _spec(*variants: Variant, baseline: Variant | None = None) -> ExperimentSpec:
    base = baseline or Variant(key="baseline", label="base", encoder="none")
    return ExperimentSpec(name="t", title="test", baseline=base, variants=variants)


def test_better_variant_gets_positive_significant_lift(tmp_path):
    backend = FakeBackend(quality={"baseline": 0.2, "good": 0.9, "same": 0.2})
    spec = _spec(
        Variant(key="good", label="good", encoder="transact", paper=(("repin/all", 9.4),)),
        Variant(key="same", label="same", encoder="cnn"),
    )
    budget = BUDGETS["smoke"]
    res = run_experiment(spec, backend, budget, tmp_path, progress=False)
    rows = {v["key"]: v for v in res["variants"]}
    good = rows["good"]["metrics"]
    assert good["repin"]["all"]["lift"] > 0.05
    assert good["repin"]["all"]["p_value"] < 0.05 and good["repin"]["all"]["significant"]
    # same quality and same noise seed: identical scores, so lift 0 and p = 1
    same = rows["same"]["metrics"]["repin"]["all"]
    assert same["lift"] == 0.0 and same["p_value"] == 1.0
    # HIT@3 is a per-user sum over chunks: it is bounded by 3 x requests per user
    assert 0 < good["repin"]["all"]["hit_at_3"] <= 3 * backend.requests_per_user
    # the oracle is at least as good as the best model
    assert res["oracle"]["repin"]["all"]["lift"] >= good["repin"]["all"]["lift"] - 0.02
    # non-core users are the third of users with id % 3 == 0
    assert good["repin"]["non_core"]["n_users"] == backend.n_users // 3 + 1
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["variants"][1]["paper"] == {"repin/all": 9.4, "hide/all": None}
    md = (tmp_path / "results.md").read_text()
    assert "+9.40%" in md and "| good |" in md


def test_seeds_give_mean_and_spread(tmp_path):
    backend = FakeBackend(quality={"baseline": 0.2, "good": 0.6})
    budget = get_budget("smoke")
    from dataclasses import replace

    budget = replace(budget, seeds=(0, 1, 2))
    res = run_experiment(
        _spec(Variant(key="good", label="g")), backend, budget, tmp_path, progress=False
    )
    cell = res["variants"][1]["metrics"]["repin"]["all"]
    lifts = [s["lift"] for s in cell["per_seed"]]
    assert len(lifts) == 3
    assert cell["lift_std"] == pytest.approx(float(np.std(lifts, ddof=1)))
    assert cell["lift_std"] > 0


def test_cache_trains_a_shared_variant_once_and_skips_unavailable(tmp_path):
    backend = FakeBackend(
        quality={
            "baseline": 0.2,
            "transact": 0.9,
            "wdl_seq": 0.3,
            "bst_all": 0.4,
            "bst_positive": 0.5,
            "full": 0.9,
            "no_transact": 0.2,
            "no_user_features": 0.8,
        },
        unavailable={"no_pf"},
    )
    cache = RunCache()
    budget = BUDGETS["smoke"]
    run_experiment(
        table1.build(budget), backend, budget, tmp_path / "t1", cache=cache, progress=False
    )
    res2 = run_experiment(
        table2.build(budget), backend, budget, tmp_path / "t2", cache=cache, progress=False
    )
    keys = [k for k, _ in backend.calls]
    # table2's full model is table1's TransAct and its no_transact row is table1's baseline
    assert keys.count("transact") == 1 and "full" not in keys and "no_transact" not in keys
    rows = {v["key"]: v for v in res2["variants"]}
    assert rows["no_pf"]["skipped"] and "metrics" not in rows["no_pf"]
    assert rows["full"]["label"] == table2.FULL.label  # baseline row keeps the paper's label
    assert rows["no_transact"]["metrics"]["repin"]["all"]["lift"] < 0  # dropping TransAct hurts
    assert "skipped" in (tmp_path / "t2" / "results.md").read_text()


def test_budget_validation_names_the_field():
    from dataclasses import replace

    with pytest.raises(ValueError, match="train_steps"):
        replace(BUDGETS["smoke"], train_steps=0)
    with pytest.raises(KeyError, match="smoke"):
        get_budget("huge")


def test_agreement_counts_concordant_pairs_and_signs():
    from transact.experiments.agreement import column_agreement

    def row(label, paper, ours, base=False):
        entry = {"label": label, "paper": {"repin/all": paper}, "is_baseline": base}
        if not base:
            entry["metrics"] = {"repin": {"all": {"lift": ours}}}
        return entry

    results = {
        "columns": ["repin/all"],
        "variants": [
            row("base", None, None, base=True),
            row("a", 1.0, 0.02),  # paper +1%, ours +2%
            row("b", 9.0, 0.05),  # best in both
            row("c", -1.0, 0.01),  # sign disagrees, and c > base in ours but < in paper
        ],
    }
    a = column_agreement(results, "repin/all")
    # pairs: (base,a) ok, (base,b) ok, (base,c) wrong, (a,b) ok, (a,c) ok, (b,c) ok
    assert a["pairs"] == 6 and a["concordant"] == 5
    assert a["signs"] == 3 and a["sign_agreement"] == pytest.approx(2 / 3)
    assert a["best_paper"] == "b" and a["best_ours"] == "b"


def test_fingerprint_ignores_options_equal_to_transact_defaults():
    from transact.experiments import fig4, table4

    budget = BUDGETS["smoke"]
    plain = Variant(key="a", label="a").resolved(budget.seq_len)
    same = Variant(key="b", label="b", encoder_options=(("fusion", "concat"),)).resolved(
        budget.seq_len
    )
    other = Variant(key="c", label="c", encoder_options=(("fusion", "append"),)).resolved(
        budget.seq_len
    )
    assert plain.fingerprint() == same.fingerprint() != other.fingerprint()
    # the same option on another encoder is not assumed to be a default
    bst = Variant(key="d", label="d", encoder="bst", encoder_options=(("fusion", "concat"),))
    assert bst.config_dict()["encoder_options"] == {"fusion": "concat"}
    # Table 4's TransAct row and Figure 4's concat row at the budget's |S| are TransAct itself
    tk = next(v for v in table4.ROWS if v.key == "first_k_max_pool").resolved(budget.seq_len)
    f4 = next(v for v in fig4.build(budget).variants if v.key == f"concat_{budget.seq_len}")
    assert tk.fingerprint() == plain.fingerprint() == f4.resolved(budget.seq_len).fingerprint()


@pytest.mark.parametrize("name", ["fig4", "fig5"])
def test_figures_write_a_png_and_every_grid_point(tmp_path, name):
    import importlib

    module = importlib.import_module(f"transact.experiments.{name}")
    budget = BUDGETS["smoke"]
    spec = module.build(budget)
    backend = FakeBackend(quality={"baseline": 0.2}, n_users=60)
    res = run_experiment(spec, backend, budget, tmp_path, plot=module.plot, progress=False)
    png = tmp_path / f"{name}.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    rows = [v for v in res["variants"] if not v["is_baseline"]]
    if name == "fig4":
        assert len(rows) == 2 * len(budget.fig4_seq_lens)
        assert {v["config"]["seq_len"] for v in rows} == set(budget.fig4_seq_lens)
    else:
        assert len(rows) == len(budget.fig5_layers) * len(budget.fig5_ffn_dims)
        assert all(v["latency_ms"] > 0 for v in rows)  # Figure 5 times every variant
