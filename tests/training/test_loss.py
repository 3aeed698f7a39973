import math

import pytest
import torch
import torch.nn.functional as F

from transact.data.schema import CategoricalFeature, FeatureSpec, NumericalFeature
from transact.training.loss import (
    LossConfig,
    WeightedMultiHeadBCE,
    diagonal_matrix,
    label_weight_matrix,
    standard_matrix,
)

HEADS = ("click", "repin", "hide")
# the paper's Appendix A, Table 7, by action name: M[head][action]
TABLE7 = {
    "click": {"click": 100, "repin": 0, "hide": 100},
    "repin": {"click": 0, "repin": 100, "hide": 100},
    "hide": {"click": 1, "repin": 5, "hide": 10},
}


def table7_matrix(heads=HEADS, impression_weight=1.0):
    return label_weight_matrix(heads, TABLE7, impression_weight=impression_weight)


SPEC = FeatureSpec(
    categorical=(
        CategoricalFeature("user_state", 4, group="user"),
        CategoricalFeature("country", 5, group="user"),
        CategoricalFeature("gender", 3, group="user"),
        CategoricalFeature("item_category", 6, group="item"),
    ),
    numerical=(NumericalFeature("quality"),),
)


def _batch(b=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, 3, generator=g) * 3
    labels = (torch.rand(b, 3, generator=g) < 0.3).float()
    cat = torch.stack(
        [torch.randint(0, c.cardinality, (b,), generator=g) for c in SPEC.categorical], 1
    )
    return logits, labels, cat


def test_diagonal_matrix_with_unit_impression_is_standard_multi_head_bce():
    logits, labels, cat = _batch()
    standard = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(1).mean()
    loss = WeightedMultiHeadBCE(HEADS, diagonal_matrix(3, weight=1.0, impression_weight=1.0))
    torch.testing.assert_close(loss(logits, labels, cat), standard)
    # the "sum" reading (impression as one more always-present action) needs M = [0 | 1]
    as_sum = WeightedMultiHeadBCE(HEADS, standard_matrix(3), combine="sum")
    torch.testing.assert_close(as_sum(logits, labels, cat), standard)
    doubled = WeightedMultiHeadBCE(HEADS, diagonal_matrix(3, 1.0, 1.0), combine="sum")
    pos_weighted = (
        (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * (1 + labels))
        .sum(1)
        .mean()
    )
    torch.testing.assert_close(doubled(logits, labels, cat), pos_weighted)


def test_table7_matrix_gives_the_appendix_worked_weights():
    m = table7_matrix(HEADS, impression_weight=0.0)
    assert m[:, :3].tolist() == [[100, 0, 100], [0, 100, 100], [1, 5, 10]]
    for combine in ("max", "sum"):
        loss = WeightedMultiHeadBCE(HEADS, m, combine=combine)
        only_hide = loss.head_weights(torch.tensor([[0.0, 0.0, 1.0]]))[0]
        assert only_hide[HEADS.index("repin")] == 100 and only_hide[HEADS.index("click")] == 100
        only_repin = loss.head_weights(torch.tensor([[0.0, 1.0, 0.0]]))[0]
        assert only_repin[HEADS.index("hide")] == 5 and only_repin[HEADS.index("click")] == 0
        # a plain impression weighs nothing without the impression column (Eq. 2 alone)
        assert loss.head_weights(torch.zeros(1, 3)).abs().sum() == 0
    floor = WeightedMultiHeadBCE(HEADS, table7_matrix(HEADS, impression_weight=1.0))
    assert floor.head_weights(torch.tensor([[0.0, 1.0, 0.0]]))[0].tolist() == [1, 100, 5]
    assert floor.head_weights(torch.zeros(1, 3))[0].tolist() == [1, 1, 1]
    # heads in another order: the same weights follow the names
    reordered = table7_matrix(("hide", "click", "repin"), impression_weight=0.0)
    assert reordered[0, :3].tolist() == [10, 1, 5]  # hide row: hide, click, repin


def test_label_weights_by_name_for_any_vocabulary():
    heads = ("click", "long_view", "like", "hate")
    m = label_weight_matrix(
        heads, {"like": {"like": 10, "hate": 50, "view": 2}, "hate": {"like": 5}},
        impression="view", impression_weight=1.0,
    )  # fmt: skip
    assert m.shape == (4, 5)
    assert m[2].tolist() == [0, 0, 10, 50, 2]  # like row: its own impression weight 2
    assert m[3].tolist() == [0, 0, 5, 0, 1]  # hate row: the default impression column
    assert m[0].tolist() == [0, 0, 0, 0, 1]  # no row: standard BCE
    with pytest.raises(ValueError) as err:
        label_weight_matrix(heads, {"like": {"follow": 1, "hate": -1}, "save": {"like": 1}})
    msg = str(err.value)
    assert "heads.label_weights.save: not a head" in msg
    assert "heads.label_weights.like.follow: not a head" in msg
    assert "heads.label_weights.like.hate: must be finite and >= 0, got -1" in msg


def test_hand_computed_value_with_user_weights():
    m = [[2.0, 0.0, 1.0], [0.0, 3.0, 0.5]]  # 2 heads + impression
    loss = WeightedMultiHeadBCE(
        ("click", "repin"),
        m,
        user_weights={"user_state": {2: 4.0}, "gender": {1: 0.5}},
        spec=FeatureSpec(categorical=SPEC.categorical, numerical=(), heads=("click", "repin")),
    )
    logits = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    cat = torch.tensor([[2, 0, 1, 0], [0, 0, 0, 0]])

    def bce(z, y):
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    # row 0: w_click = max(2*1, 1) = 2, w_repin = max(0, 0.5) = 0.5, w_u = 4 * 0.5
    row0 = 4 * 0.5 * (2 * bce(0.0, 1) + 0.5 * bce(1.0, 0))
    # row 1: no positives: impression floor 1 and 0.5, w_u = 1
    row1 = 1 * bce(2.0, 0) + 0.5 * bce(-1.0, 0)
    got = loss(logits, labels, cat)
    assert got.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    assert loss.user_weight(cat, 2).tolist() == [2.0, 1.0]


def test_gradients_are_finite_and_scaled_by_the_weights():
    logits, labels, cat = _batch()
    logits.requires_grad_(True)
    WeightedMultiHeadBCE(HEADS, table7_matrix(HEADS))(logits, labels, cat).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_validation_names_the_problem():
    with pytest.raises(ValueError, match=r"label_weights must be \[H=3, H\+1=4\]"):
        WeightedMultiHeadBCE(HEADS, torch.eye(3))
    with pytest.raises(ValueError, match="'item_category' is not in spec.user_weight_features"):
        WeightedMultiHeadBCE(HEADS, user_weights={"item_category": {1: 2.0}}, spec=SPEC)
    with pytest.raises(ValueError, match=r"user_weights\['gender'\] index 3 is outside 0..2"):
        WeightedMultiHeadBCE(HEADS, user_weights={"gender": {3: 2.0}}, spec=SPEC)
    loss = WeightedMultiHeadBCE(HEADS)
    with pytest.raises(ValueError, match=r"labels\[1, 2\] \(head 'hide'\) = 0.5"):
        loss(torch.zeros(2, 3), torch.tensor([[0.0, 1, 0], [0, 0, 0.5]]))
    with pytest.raises(ValueError, match="must both be"):
        loss(torch.zeros(2, 3), torch.zeros(2, 2))


def test_loss_config_from_dict_builds_the_loss():
    cfg = LossConfig.from_dict({"impression_weight": 2, "user_weights": {"country": {"3": 1.5}}})
    assert cfg.user_weights == {"country": {3: 1.5}} and cfg.impression_weight == 2.0
    loss = cfg.build(SPEC, TABLE7)  # M by name, its impression column the loss's weight
    torch.testing.assert_close(loss.label_weights, table7_matrix(HEADS, 2.0))
    cat = torch.tensor([[0, 3, 0, 0], [0, 2, 0, 0]])
    assert loss.user_weight(cat, 2).tolist() == [1.5, 1.0]
    explicit = LossConfig.from_dict({"label_weights": [[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1]]})
    assert explicit.matrix(HEADS).shape == (3, 4)
    with pytest.raises(ValueError, match=r"LossConfig: unknown field\(s\) \['weights'\]"):
        LossConfig.from_dict({"weights": "standard"})
    with pytest.raises(ValueError, match="LossConfig.label_weights='table9'"):
        LossConfig.from_dict({"label_weights": "table9"})
    with pytest.raises(
        ValueError, match=r"Table 7 is written by action name in \[heads.label_weights\]"
    ):
        LossConfig.from_dict({"label_weights": "table7"})
    with pytest.raises(ValueError, match="both set M"):
        explicit.matrix(HEADS, TABLE7)
    with pytest.raises(ValueError, match="LossConfig.user_weights.country: keys must be integer"):
        LossConfig.from_dict({"user_weights": {"country": {"us": 2.0}}})
    with pytest.raises(ValueError, match="LossConfig.combine='mean'"):
        LossConfig.from_dict({"combine": "mean"})
