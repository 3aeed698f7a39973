"""The experiment's configuration: retraining schedules, arms, shares, every bad field named."""

from __future__ import annotations

import pytest

from transact.online.config import ArmSpec, OnlineConfig, RetrainSchedule


def test_schedules_parse_and_give_the_midnights_of_retraining() -> None:
    assert RetrainSchedule.parse("fixed").retrain_days(14) == ()
    twice_a_week = RetrainSchedule.parse("every:3.5d")
    assert twice_a_week.retrain_days(14) == (3, 7, 10)  # day 14 is past a 14-day run
    assert twice_a_week.retrain_days(15) == (3, 7, 10, 14)
    assert RetrainSchedule.parse("every:1d").retrain_days(4) == (1, 2, 3)
    assert RetrainSchedule.parse("every:7").retrain_days(14) == (7,)
    assert RetrainSchedule.parse("days:7,3,3").retrain_days(5) == (3,)
    for text in ("fixed", "every:3.5d", "days:3,7"):
        assert str(RetrainSchedule.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("weekly", "expected fixed"),
        ("every:often", "every:3.5d"),
        ("every:0.5d", ">= 1"),
        ("days:", "days:3,7"),
        ("days:0,2", ">= 1"),
    ],
)
def test_bad_schedules_say_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetrainSchedule.parse(text)


def test_shares_default_to_an_equal_split_of_what_is_left() -> None:
    arms = (ArmSpec("a", "policy:production", 0.2), ArmSpec("b", "x"), ArmSpec("c", "y"))
    cfg = OnlineConfig("w", arms)
    assert cfg.shares() == pytest.approx({"a": 0.2, "b": 0.4, "c": 0.4})
    assert cfg.control_arm == "a" and cfg.bucket_salt == "online-0"
    assert OnlineConfig("w", arms, control="c", seed=3).control_arm == "c"
    assert OnlineConfig("w", arms, seed=3).bucket_salt == "online-3"
    fixed = OnlineConfig("w", (ArmSpec("a", "x", retrain=RetrainSchedule.parse("every:2d")),))
    assert str(fixed.schedule(fixed.arms[0])) == "every:2d"


def test_a_bad_config_names_every_bad_field() -> None:
    arms = (ArmSpec("a", "x", 0.7), ArmSpec("a", "y", 0.6))
    with pytest.raises(ValueError) as err:
        OnlineConfig("w", arms, control="z", days=0, training_data="mine", rest="policy:nope")
    text = str(err.value)
    for part in ("duplicate names", "control='z'", "sum to 1.3", "days=0", "training_data",
                 "OnlineConfig.rest"):  # fmt: skip
        assert part in text, part
    with pytest.raises(ValueError, match="leave nothing"):
        OnlineConfig("w", (ArmSpec("a", "x", 1.0), ArmSpec("b", "y")))
    with pytest.raises(ValueError, match="'rest' names"):
        OnlineConfig("w", (ArmSpec("rest", "x"),))


def test_a_bucket_model_copy_needs_a_paired_retrained_model_arm() -> None:
    every = RetrainSchedule.parse("every:3.5d")
    arms = (ArmSpec("base", "x", 0.8), ArmSpec("t", "y", 0.1), ArmSpec("p", "policy:random"))
    ok = OnlineConfig("w", arms, days=7, paired=True, retrain=every, bucket_model_copies=("t",))
    assert ok.bucket_model_copies == ("t",)
    cases = [
        ({"bucket_model_copies": ("z",)}, "'z' is not an arm"),
        ({"bucket_model_copies": ("p",)}, "arm 'p' is a world policy"),
        ({"bucket_model_copies": ("t", "t")}, "names an arm twice"),
        ({"bucket_model_copies": ("t",), "paired": False}, "needs paired=True"),
        ({"bucket_model_copies": ("t",), "training_data": "pooled"}, "already serves"),
        ({"bucket_model_copies": ("t",), "days": 3}, "retrains on none of the 3 days"),
        ({"bucket_model_copies": ("t",), "retrain": RetrainSchedule()}, "repeat paired/t"),
    ]
    base = {"days": 7, "paired": True, "retrain": every}
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            OnlineConfig("w", arms, **{**base, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "1a", "model": "x"}, "ArmSpec.name"),
        ({"name": "a", "model": "policy:best"}, "unknown policy"),
        ({"name": "a", "model": "x", "share": 0.0}, "share"),
        ({"name": "a", "model": "x", "share": float("nan")}, "share"),
    ],
)
def test_bad_arms(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArmSpec(**kwargs)


def test_policies_are_recognized() -> None:
    assert ArmSpec("a", "policy:oracle").policy == "oracle"
    assert ArmSpec("a", "runs/x").policy is None
