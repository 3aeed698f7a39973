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
    cell = good["repin"]["all"]
    # the lift is of expected HIT@3 (the fake has ground truth), the sampled one beside it
    assert cell["metric"] == "expected_hit_at_3"
    assert cell["lift"] == pytest.approx(
        cell["expected_hit_at_3"] / rows["baseline"]["metrics"]["repin"]["all"]["expected_hit_at_3"]
        - 1
    )
    assert cell["lift"] > 0.05 and cell["sampled_lift"] > 0.05
    assert cell["p_value"] < 0.05 and cell["significant"]
    lo, hi = cell["ci95"]
    assert 0 < lo < cell["lift"] < hi
    # one seed: the interval is the users' alone, and the MDE is 2.80 standard errors
    assert cell["seed_sd"] is None and cell["se"] == pytest.approx(cell["se_users"])
    assert cell["mde"] == pytest.approx(2.8016 * cell["se"], rel=1e-4)
    assert (hi - lo) / 2 == pytest.approx(1.95996 * cell["se"], rel=1e-4)
    # the paper's +9.4% is positive and the interval is above 0: the cell holds
    assert cell["verdict"] == "holds" and cell["rule"] == "direction"
    assert cell["size"] == ("consistent" if lo <= 0.094 <= hi else "larger")
    # same quality and same noise seed: identical scores, so lift 0 and p = 1
    same = rows["same"]["metrics"]["repin"]["all"]
    assert same["lift"] == 0.0 and same["p_value"] == 1.0 and same["ci95"] == [0.0, 0.0]
    assert "verdict" not in same  # no paper number, no verdict
    # HIT@3 is a per-user sum over chunks: it is bounded by 3 x requests per user
    assert 0 < cell["hit_at_3"] <= 3 * backend.requests_per_user
    # the oracle is at least as good as the best model
    assert res["oracle"]["repin"]["all"]["lift"] >= cell["lift"] - 0.02
    # non-core users are the third of users with id % 3 == 0
    assert good["repin"]["non_core"]["n_users"] == backend.n_users // 3 + 1
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["variants"][1]["paper"] == {"repin/all": 9.4, "hide/all": None}
    assert on_disk["agreement"]["repin/all"]["verdicts"] == {
        "holds": 1,
        "contradicted": 0,
        "unsettled": 0,
    }
    md = (tmp_path / "results.md").read_text()
    assert "+9.40%" in md and "| good |" in md and "**holds**" in md
    assert f"[{lo * 100:+.1f}, {hi * 100:+.1f}]" in md
    png = tmp_path / "lifts.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"


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
    assert len(lifts) == 3 and cell["n_seeds"] == 3
    assert cell["seed_sd"] == pytest.approx(float(np.std(lifts, ddof=1)))
    assert cell["seed_sd"] > 0
    # users and seeds combine as independent sources: se^2 = se_users^2 + seed_sd^2 / 3
    assert cell["se"] ** 2 == pytest.approx(cell["se_users"] ** 2 + cell["seed_sd"] ** 2 / 3)
    assert cell["hit_at_3_std"] > 0


def test_verdicts_follow_the_sign_of_the_paper_and_its_insignificance_marks(tmp_path):
    """A clearly better variant, judged against paper numbers of either sign and against
    cells the paper marks insignificant (the equivalence rule)."""
    backend = FakeBackend(quality={"baseline": 0.2, "good": 0.9, "same": 0.2})
    paper = (("repin/all", -5.0), ("hide/all", 1.0))
    good = Variant(key="good", label="good", paper=paper, paper_marks=("hide/all",))
    same = Variant(key="same", label="same", encoder="cnn", paper=paper, paper_marks=("hide/all",))
    res = run_experiment(_spec(good, same), backend, BUDGETS["smoke"], tmp_path, progress=False)
    rows = {v["key"]: v["metrics"] for v in res["variants"]}
    repin, hide = rows["good"]["repin"]["all"], rows["good"]["hide"]["all"]
    # the paper says repin falls; ours rises significantly: contradicted, and "smaller"
    assert repin["ci95"][0] > 0
    assert repin["verdict"] == "contradicted" and repin["size"] == "smaller"
    assert repin["strict_verdict"] == "contradicted"
    # hide is lower-is-better (utility -20): the better ranker lowers expected hide by
    # about 28%, a benefit far beyond the 5% margin of a cell the paper calls
    # insignificant: the equivalence rule says contradicted
    assert hide["rule"] == "equivalence" and hide["margin"] == 0.05
    assert hide["ci95"][1] < -0.05
    assert hide["verdict"] == "contradicted"
    # the same ranker as the baseline: lift exactly 0, inside the margin: the "no effect"
    # cell holds, while the directional repin cell (paper -5%) cannot be settled
    assert rows["same"]["hide"]["all"]["verdict"] == "holds"
    assert rows["same"]["repin"]["all"]["verdict"] == "unsettled"


def test_without_ground_truth_the_lift_is_of_sampled_hit_at_3(tmp_path):
    backend = FakeBackend(quality={"baseline": 0.2, "good": 0.9}, ground_truth=False)
    res = run_experiment(
        _spec(Variant(key="good", label="g")), backend, BUDGETS["smoke"], tmp_path, progress=False
    )
    cell = res["variants"][1]["metrics"]["repin"]["all"]
    assert cell["metric"] == "hit_at_3" and cell["expected_hit_at_3"] is None
    assert cell["lift"] == cell["sampled_lift"] and cell["ci95"] == cell["sampled_ci95"]
    assert res["oracle"] is None


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


def test_another_vocabulary_plays_the_papers_repin_and_hide_columns(tmp_path):
    """On a log whose heads are click/like/hate, the paper's repin and hide columns are the
    heads its vocabulary names as main positive and main negative."""
    from transact.experiments.runner import dataset_columns

    backend = FakeBackend(
        quality={"baseline": 0.2, "good": 0.9},
        heads=("click", "like", "hate"),
        utility={"click": 1.0, "like": 5.0, "hate": -20.0},
        roles={"repin": "like", "hide": "hate"},
    )
    good = Variant(key="good", label="good", encoder="transact",
                   paper=(("repin/all", 9.4), ("hide/all", -14.9)))  # fmt: skip
    res = run_experiment(_spec(good), backend, BUDGETS["smoke"], tmp_path, progress=False)
    assert res["columns"] == ["like/all", "hate/all"]
    assert res["paper_columns"] == {"like/all": "repin/all", "hate/all": "hide/all"}
    row = next(v for v in res["variants"] if v["key"] == "good")
    assert row["paper"] == {"like/all": 9.4, "hate/all": -14.9}
    assert row["metrics"]["like"]["all"]["verdict"] == "holds"
    assert row["metrics"]["hate"]["all"]["verdict"] in ("holds", "unsettled")
    # the best row of a negative head (negative utility) is the lowest lift
    assert res["agreement"]["hate/all"]["best_ours"] in ("good", "base")
    # a vocabulary without a main negative has no hide column
    assert dataset_columns(("repin/all", "hide/all"), {"repin": "like"}, ("click", "like")) == {
        "like/all": "repin/all"
    }
