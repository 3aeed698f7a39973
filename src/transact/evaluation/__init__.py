"""Evaluation the paper's way: HIT@K (Eq. 3-4) and expected HIT@K, AUC/log loss, lifts with
95% intervals and paired significance over users, verdicts against the paper's numbers,
calibration, the oracle, and diversity (4.4.4)."""

from transact.evaluation.calibration import Calibration, fit_calibration
from transact.evaluation.hit import (
    hit_at_k,
    per_user_expected_hits,
    per_user_hits,
    ranking_score,
    top_k_mask,
)
from transact.evaluation.predictions import Predictions, predict
from transact.evaluation.reliability import calibration_report
from transact.evaluation.report import Comparison, EvaluationConfig, compare, evaluate
from transact.evaluation.significance import LiftInterval, lift_interval
from transact.evaluation.verdict import CellVerdict, judge_cell

__all__ = [
    "Calibration",
    "CellVerdict",
    "Comparison",
    "EvaluationConfig",
    "LiftInterval",
    "Predictions",
    "calibration_report",
    "compare",
    "evaluate",
    "fit_calibration",
    "hit_at_k",
    "judge_cell",
    "lift_interval",
    "per_user_expected_hits",
    "per_user_hits",
    "predict",
    "ranking_score",
    "top_k_mask",
]
