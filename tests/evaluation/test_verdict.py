import math

import pytest

from transact.evaluation.verdict import (
    benefit_direction,
    direction_verdict,
    equivalence_verdict,
    judge_cell,
    size_against_paper,
)

NAN = math.nan


@pytest.mark.parametrize(
    ("paper", "ci", "verdict"),
    [
        (0.094, (0.01, 0.20), "holds"),  # above 0, the paper's side
        (0.094, (-0.20, -0.01), "contradicted"),
        (0.094, (-0.01, 0.20), "unsettled"),
        # a hide lift the paper reports as negative: the paper's side is negative
        (-0.1486, (-0.30, -0.02), "holds"),
        (-0.1486, (0.02, 0.30), "contradicted"),
        # Table 2's hide rises when a component is removed: positive side, same head
        (0.1745, (0.05, 0.40), "holds"),
        (0.1745, (NAN, NAN), "unsettled"),
    ],
)
def test_direction_rule_takes_the_side_from_the_paper_sign(paper, ci, verdict):
    assert direction_verdict(paper, *ci) == verdict
    assert judge_cell(paper, *ci, null_claim=False, benefit=1).verdict == verdict


def test_size_is_reported_apart_from_the_direction():
    # the world's lift is 30% where the paper's is 9.4%: the direction holds, size larger
    cell = judge_cell(0.094, 0.20, 0.40, null_claim=False, benefit=1)
    assert (cell.verdict, cell.size, cell.rule) == ("holds", "larger", "direction")
    assert cell.strict_verdict == "contradicted"  # the literal reading
    assert size_against_paper(0.094, 0.01, 0.05) == "smaller"
    assert size_against_paper(0.094, 0.0, 0.2) == "consistent"
    assert size_against_paper(-0.15, -0.05, 0.01) == "smaller"  # closer to 0 than -15%
    assert size_against_paper(-0.15, -0.40, -0.20) == "larger"
    assert size_against_paper(0.094, -0.2, -0.1) == "smaller"  # wholly on the other side
    assert size_against_paper(0.1, NAN, NAN) is None
    consistent = judge_cell(0.094, 0.01, 0.2, null_claim=False, benefit=1)
    assert consistent.strict_verdict == consistent.verdict == "holds"
    with pytest.raises(ValueError, match="non-zero"):
        direction_verdict(0.0, -1, 1)


@pytest.mark.parametrize(
    ("ci", "benefit", "verdict"),
    [
        # repin-like head (higher is better), margin 5%
        ((-0.03, 0.04), 1, "holds"),  # any benefit is below 5%
        ((-0.30, 0.02), 1, "holds"),  # it may even hurt: "does not add much value" holds
        ((0.01, 0.20), 1, "contradicted"),  # a significant benefit not shown to be small
        ((-0.02, 0.12), 1, "unsettled"),
        # hide-like head (lower is better): a benefit is a negative lift
        ((-0.04, 0.30), -1, "holds"),
        ((-0.20, -0.01), -1, "contradicted"),
        ((-0.12, 0.02), -1, "unsettled"),
        # no utility weight: two-sided
        ((-0.04, 0.04), 0, "holds"),
        ((0.02, 0.30), 0, "contradicted"),
        ((-0.30, -0.06), 0, "contradicted"),
        ((-0.10, 0.04), 0, "unsettled"),
        ((NAN, NAN), 1, "unsettled"),
    ],
)
def test_equivalence_rule_for_no_effect_claims(ci, benefit, verdict):
    assert equivalence_verdict(*ci, benefit=benefit, margin=0.05) == verdict
    cell = judge_cell(0.0229, *ci, null_claim=True, benefit=benefit, margin=0.05)
    assert (cell.verdict, cell.rule, cell.margin) == (verdict, "equivalence", 0.05)
    assert cell.strict_verdict == verdict


def test_a_paper_value_of_zero_is_a_null_claim_and_benefit_follows_the_utility():
    assert judge_cell(0.0, -0.01, 0.01, null_claim=False, benefit=1).rule == "equivalence"
    assert [benefit_direction(u) for u in (2.0, -5.0, 0.0)] == [1, -1, 0]
    with pytest.raises(ValueError, match="margin"):
        equivalence_verdict(-1, 1, benefit=1, margin=0)
