"""Item representations on a real log without content: the measurement behind docs/data.md.

MovieLens is exported from its ratings alone (user, movie id, rating -> action, time) as a
generic log, so its items have nothing but an id, then imported with ``transact data import
log`` in five versions that differ only in the item representation:

* ``idstring``: no item file; the sentence model embeds each id string (what a log
  without content gets by default);
* ``item2vec`` / ``mf``: ``transact data item-embeddings`` on the idstring world (vectors
  learned from the training window's engagements);
* ``hashed_id``: the idstring world, ranker with ``model.item_id_embedding`` (a trainable
  hashed id embedding);
* ``text`` (reference): an item file whose one text column is MovieLens' "title. Genres:
  g1, g2." (no ``genres`` column, so the categorical item features stay as empty as in the
  others).

Each is trained with the baseline ranker (no sequence) and TransAct (the small configs)
for several seeds, evaluated with ``transact evaluate``, and summarized: AUC per head
(mean and sd over seeds; the difference to ``idstring`` with a paired bootstrap over
users, seeds averaged), HIT@3 per head and its lift over ``idstring`` with the evaluation
stage's paired interval over users and seeds (``lift_interval``). Every command it runs
goes to ``OUT/commands.sh``; finished steps are skipped on a rerun.

    OMP_NUM_THREADS=1 python benchmarks/compare_item_repr.py \\
        --dataset ../shared/datasets/movielens-latest-small --out runs/item_repr/ml-small \\
        --seeds 0 1 2 --seeds-transact 0 --variants-transact idstring,item2vec,mf

Writes ``OUT/summary.json`` and ``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from transact.data.adapters.movielens import RatingMapping
from transact.evaluation.metrics import roc_auc
from transact.evaluation.predictions import Predictions
from transact.evaluation.report import EvaluationConfig, evaluate
from transact.evaluation.significance import lift_interval

VARIANTS = ("idstring", "item2vec", "mf", "hashed_id", "text")
ENCODERS = {"none": "configs/baseline_small.toml", "transact": "configs/transact_small.toml"}


def export_movielens(dataset: Path, out: Path) -> tuple[Path, Path]:
    """``OUT/log.csv`` (user, item, action, ts in s) and ``OUT/items_text.csv`` (item, text)."""
    if (dataset / "ratings.csv").exists():  # ml-latest(-small) CSV layout
        ratings = pacsv.read_csv(dataset / "ratings.csv")
        users, items = ratings["userId"], ratings["movieId"]
        stars, ts = ratings["rating"], ratings["timestamp"]
        movies = pacsv.read_csv(dataset / "movies.csv")
        ids = movies["movieId"].to_pylist()
        texts = [
            f"{t}. Genres: {', '.join(g.split('|'))}."
            for t, g in zip(movies["title"].to_pylist(), movies["genres"].to_pylist(), strict=True)
        ]
    else:  # RecBole atomic files (ml-100k.inter / .item)
        inter = next(dataset.glob("*.inter"))
        opts = pacsv.ParseOptions(delimiter="\t")
        ratings = pacsv.read_csv(inter, parse_options=opts)
        cols = {c.split(":")[0]: c for c in ratings.column_names}
        users, items = ratings[cols["user_id"]], ratings[cols["item_id"]]
        stars, ts = ratings[cols["rating"]], ratings[cols["timestamp"]]
        movies = pacsv.read_csv(next(dataset.glob("*.item")), parse_options=opts)
        mcols = {c.split(":")[0]: c for c in movies.column_names}
        ids = movies[mcols["item_id"]].to_pylist()
        texts = [
            f"{t}. Genres: {', '.join(str(g).split())}."
            for t, g in zip(
                movies[mcols["movie_title"]].to_pylist(),
                movies[mcols["class"]].to_pylist(),
                strict=True,
            )
        ]
    actions = RatingMapping().apply(np.asarray(stars, dtype=np.float64))
    actions[actions == ""] = "impression"
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.csv"
    pacsv.write_csv(
        pa.table({"user": users, "item": items, "action": actions.tolist(),
                  "ts": pa.array(np.asarray(ts, dtype=np.float64).astype(np.int64))}),
        log,
    )  # fmt: skip
    item_file = out / "items_text.csv"
    pacsv.write_csv(pa.table({"item": [str(i) for i in ids], "text": texts}), item_file)
    return log, item_file


class Runner:
    """Runs ``transact`` commands (logged to ``OUT/commands.sh``), skipping finished ones."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.log = out / "commands.sh"

    def __call__(self, args: list[str], done: Path, log_name: str) -> None:
        if done.exists():
            return
        cmd = [sys.executable, "-m", "transact.cli", *args]
        line = "transact " + " ".join(shlex.quote(a) for a in args)
        with self.log.open("a") as f:
            f.write(line + "\n")
        t0 = time.time()
        with (self.out / "logs" / f"{log_name}.log").open("w") as f:
            code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=os.environ)
        if code != 0:
            raise RuntimeError(f"failed ({code}): {line}; see {self.out}/logs/{log_name}.log")
        print(f"{time.time() - t0:7.0f} s  {line}", flush=True)


def build_worlds(run: Runner, out: Path, log: Path, items: Path, seed: int) -> dict[str, Path]:
    worlds = out / "worlds"
    common = ["--user-col", "user", "--item-col", "item", "--action-col", "action",
              "--time-col", "ts", "--time-unit", "s", "--seed", str(seed)]  # fmt: skip
    w = {v: worlds / v for v in ("idstring", "text", "item2vec", "mf")}
    run(["data", "import", "log", "--path", str(log), "--out", str(w["idstring"]), *common],
        w["idstring"] / "manifest.json", "import-idstring")  # fmt: skip
    run(["data", "import", "log", "--path", str(log), "--out", str(w["text"]), *common,
         "--items-path", str(items), "--item-id-col", "item", "--text-cols", "text"],
        w["text"] / "manifest.json", "import-text")  # fmt: skip
    for method in ("item2vec", "mf"):
        run(["data", "item-embeddings", str(w["idstring"]), "--method", method,
             "--out", str(w[method]), "--seed", str(seed)],
            w[method] / "manifest.json", f"learn-{method}")  # fmt: skip
    return {**w, "hashed_id": w["idstring"]}


def train_and_evaluate(
    run: Runner, out: Path, world: Path, variant: str, encoder: str, seed: int, a: Any
) -> Path:
    name = f"{variant}-{encoder}-e{a.epochs:g}-s{seed}"
    run_dir = out / "runs" / name
    sets = ["--set", f"train.seed={seed}", "--set", f"train.epochs={a.epochs}",
            "--set", "train.progress=false"]  # fmt: skip
    if variant == "hashed_id":
        sets += ["--set", f"model.item_id_embedding={a.id_dim}",
                 "--set", f"model.item_id_buckets={a.id_buckets}"]  # fmt: skip
    run(["train", "--config", ENCODERS[encoder], "--data", str(world), "--out", str(run_dir),
         *sets], run_dir / "model.pt", f"train-{name}")  # fmt: skip
    run(["evaluate", "--model", str(run_dir), "--data", str(world)],
        run_dir / "eval" / "predictions.npz", f"eval-{name}")  # fmt: skip
    return run_dir / "eval" / "predictions.npz"


def _user_rows(preds: Predictions, users: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(preds.user_ids, kind="stable")
    starts = np.searchsorted(preds.user_ids[order], users)
    ends = np.searchsorted(preds.user_ids[order], users, side="right")
    return [order[s:e] for s, e in zip(starts, ends, strict=True)]


def _keyed(preds: Predictions) -> Predictions:
    """Rows sorted by (user, request, row): every variant's rows then line up one to one
    (the worlds number items differently, but share requests and positions)."""
    order = np.lexsort((np.arange(len(preds)), preds.request_ids, preds.user_ids))
    return Predictions(
        heads=preds.heads, scores=preds.scores[order], labels=preds.labels[order],
        user_ids=preds.user_ids[order], request_ids=preds.request_ids[order],
        item_ids=preds.item_ids[order], is_core=preds.is_core[order],
        top_interest=preds.top_interest[order], gt_probs=preds.gt_probs[order],
    )  # fmt: skip


def auc_difference(
    model: list[Predictions], base: list[Predictions], n_boot: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per head: AUC(model) - AUC(base) of seed-averaged scores, with a paired bootstrap
    over users (the same resampled users for both): ``diff [H]``, ``lo [H]``, ``hi [H]``."""
    m = np.mean([p.scores for p in model], axis=0)
    b = np.mean([p.scores for p in base], axis=0)
    labels = base[0].labels
    for p in model:
        if not (np.array_equal(p.labels, labels) and np.array_equal(p.user_ids, base[0].user_ids)):
            raise ValueError("the variants' evaluation rows differ; they cannot be paired")
    users = np.unique(base[0].user_ids)
    rows = _user_rows(base[0], users)
    heads = range(labels.shape[1])
    diff = np.array([roc_auc(labels[:, h], m[:, h]) - roc_auc(labels[:, h], b[:, h])
                     for h in heads])  # fmt: skip
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, labels.shape[1]))
    for i in range(n_boot):
        pick = np.concatenate([rows[j] for j in rng.integers(0, len(users), len(users))])
        boots[i] = [roc_auc(labels[pick, h], m[pick, h]) - roc_auc(labels[pick, h], b[pick, h])
                    for h in heads]  # fmt: skip
    lo, hi = np.nanpercentile(boots, [2.5, 97.5], axis=0)
    return diff, lo, hi


def summarize(preds: dict[tuple[str, str], list[Predictions]], a: Any) -> dict[str, Any]:
    config = EvaluationConfig()
    out: dict[str, Any] = {"heads": None, "encoders": {}}
    for encoder in ENCODERS:
        if (("idstring", encoder)) not in preds:
            continue
        base = preds[("idstring", encoder)]
        base_hits = [evaluate(p, config).segments["all"].hits for p in base]
        rows: dict[str, Any] = {}
        for variant in VARIANTS:
            if (variant, encoder) not in preds:
                continue
            runs = preds[(variant, encoder)]
            results = [evaluate(p, config).segments["all"] for p in runs]
            heads = runs[0].heads
            out["heads"] = list(heads)
            auc = np.array([r.auc for r in results])
            hit = np.array([r.hits.mean() for r in results])
            row: dict[str, Any] = {
                "seeds": len(runs),
                "auc_mean": auc.mean(0).tolist(),
                "auc_sd": auc.std(0, ddof=1).tolist() if len(runs) > 1 else None,
                "hit3_mean": hit.mean(0).tolist(),
            }
            if variant != "idstring":
                d, lo, hi = auc_difference(runs, base, a.bootstrap)
                row["auc_diff_vs_idstring"] = d.tolist()
                row["auc_diff_ci95"] = [lo.tolist(), hi.tolist()]
                lifts = []
                for h in range(len(heads)):
                    users = base_hits[0].users
                    for r in results:
                        assert np.array_equal(r.hits.users, users), "different evaluation users"
                    m = np.stack([r.hits.hits[:, h] for r in results])
                    b = np.stack([bh.hits[:, h] for bh in base_hits])
                    li = lift_interval(m, b)
                    lifts.append({"lift": li.lift, "ci": [li.ci_low, li.ci_high],
                                  "p": li.p_value})  # fmt: skip
                row["hit3_lift_vs_idstring"] = lifts
            rows[variant] = row
        out["encoders"][encoder] = rows
    return out


def to_markdown(summary: dict[str, Any]) -> str:
    heads = summary["heads"]
    lines = []
    for encoder, rows in summary["encoders"].items():
        lines += [f"### {encoder}", ""]
        header = ["variant"] + [f"AUC {h}" for h in heads] + [f"HIT@3 {h}" for h in heads]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for variant, r in rows.items():
            cells = [variant]
            for h in range(len(heads)):
                c = f"{r['auc_mean'][h]:.4f}"
                if r.get("auc_sd"):
                    c += f" ± {r['auc_sd'][h]:.4f}"
                if "auc_diff_vs_idstring" in r:
                    lo, hi = r["auc_diff_ci95"][0][h], r["auc_diff_ci95"][1][h]
                    c += f" ({r['auc_diff_vs_idstring'][h]:+.4f} [{lo:+.4f}, {hi:+.4f}])"
                cells.append(c)
            for h in range(len(heads)):
                c = f"{r['hit3_mean'][h]:.4f}"
                if "hit3_lift_vs_idstring" in r:
                    li = r["hit3_lift_vs_idstring"][h]
                    c += f" ({li['lift']:+.1%} [{li['ci'][0]:+.1%}, {li['ci'][1]:+.1%}])"
                cells.append(c)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", type=Path, required=True, help="a MovieLens directory")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--seeds-transact", type=int, nargs="+", default=None,
                   help="TransAct's seeds (default: --seeds); its runs are ~6x the baseline's")  # fmt: skip
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--variants-transact", default=None, help="TransAct's (default: --variants)")
    p.add_argument("--encoders", default=",".join(ENCODERS))
    p.add_argument("--id-dim", type=int, default=32, help="hashed_id: embedding size")
    p.add_argument("--id-buckets", type=int, default=65_536, help="hashed_id: table rows")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once")
    p.add_argument("--bootstrap", type=int, default=500, help="AUC bootstrap resamples")
    a = p.parse_args()
    out = a.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    run = Runner(out)
    log, items = export_movielens(a.dataset, out / "export")
    worlds = build_worlds(run, out, log, items, seed=0)
    seeds = {"none": a.seeds, "transact": a.seeds_transact or a.seeds}
    variants = {"none": a.variants, "transact": a.variants_transact or a.variants}
    # the long TransAct trainings first, so that the pool ends with short ones
    encoders = sorted(a.encoders.split(","), key=lambda e: e != "transact")
    jobs = [(v, e, s) for e in encoders for v in variants[e].split(",") for s in seeds[e]]
    with ThreadPoolExecutor(a.jobs) as pool:
        paths = list(pool.map(
            lambda j: train_and_evaluate(run, out, worlds[j[0]], j[0], j[1], j[2], a), jobs
        ))  # fmt: skip
    preds: dict[tuple[str, str], list[Predictions]] = {}
    for (v, e, _), path in zip(jobs, paths, strict=True):
        preds.setdefault((v, e), []).append(_keyed(Predictions.load(path)))
    summary = summarize(preds, a)
    summary["settings"] = {k: str(v) for k, v in vars(a).items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(to_markdown(summary) + "\n")
    print(to_markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
