import numpy as np
import pytest

from transact.embeddings.evaluate import (
    evaluate_embeddings,
    interest_precision,
    recall_at_k,
    top_k_items,
)


def test_top_k_and_recall_on_a_hand_case():
    users = np.array([[1.0, 0.0], [0.0, 1.0]])
    items = np.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5], [-1.0, 0.0]])
    top = top_k_items(users, items, k=3, chunk=1)
    # user 0 scores 0.9, 0.1, 0.5, -1 ; user 1 scores 0.1, 0.9, 0.5, 0
    assert top.tolist() == [[0, 2, 1], [1, 2, 0]]
    targets = [np.array([2, 3, 3]), np.array([1])]
    # user 0: distinct {2, 3}; top-1 {0} -> 0, top-2 {0, 2} -> 1/2 ; user 1: 1 in top-1 -> 1
    assert recall_at_k(top, targets, 1) == pytest.approx((0 + 1) / 2)
    assert recall_at_k(top, targets, 2) == pytest.approx((0.5 + 1) / 2)
    assert recall_at_k(top, targets, 3) == pytest.approx((0.5 + 1) / 2)
    with pytest.raises(ValueError, match="user row 1 has no target"):
        recall_at_k(top, [np.array([1]), np.array([], dtype=np.int64)], 1)
    # ties break toward the lower item index
    assert top_k_items(np.array([[1.0, 1.0]]), np.array([[1.0, 0], [0, 1.0]]), 2).tolist() == [
        [0, 1]
    ]
    item_interest = np.array([7, 8, 7, 9])
    assert interest_precision(top, item_interest, [{7}, {8}], 2) == pytest.approx((1.0 + 0.5) / 2)


def test_evaluate_reports_three_methods_and_interest_recovery(toy_world, tiny_model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, truth = toy_world
    result = evaluate_embeddings(root, tiny_model, "2026-01-07", ks=(10, 50), window_days=3)
    assert result["n_users"] > 40
    assert set(result["recall"]) == {"pinnerformer", "mean_item_embedding", "popularity"}
    for by_k in result["recall"].values():
        assert 0.0 <= by_k[10] <= by_k[50] <= 1.0
    assert result["interest_precision"] is None  # the toy world stores no interests on disk
    # with a side file of ground-truth interests the recovery is measured
    pairs = [(u, c) for u, cs in truth["user_interests"].items() for c in cs]
    pq.write_table(
        pa.table({"user_id": [p[0] for p in pairs], "interest": [p[1] for p in pairs]}),
        root / "user_interests.parquet",
    )
    try:
        result = evaluate_embeddings(root, tiny_model, "2026-01-07", ks=(10,), window_days=3)
    finally:
        (root / "user_interests.parquet").unlink()
    ip = result["interest_precision"]
    assert ip["n_users"] == result["n_users"]
    # the embedding's neighbours fall in the user's interests far above chance
    assert ip["pinnerformer"][10] > ip["chance"] + 0.2
