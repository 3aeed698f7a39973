"""Evaluation the paper's way: HIT@K (Eq. 3-4), AUC/log loss, lifts with paired
significance over users, the oracle, and diversity (4.4.4)."""

from transact.evaluation.hit import hit_at_k, per_user_hits, ranking_score, top_k_mask
from transact.evaluation.predictions import Predictions, predict
from transact.evaluation.report import Comparison, EvaluationConfig, compare, evaluate

__all__ = [
    "Comparison",
    "EvaluationConfig",
    "Predictions",
    "compare",
    "evaluate",
    "hit_at_k",
    "per_user_hits",
    "predict",
    "ranking_score",
    "top_k_mask",
]
