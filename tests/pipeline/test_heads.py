import pytest

from transact.data.schema import ActionVocabulary
from transact.pipeline.heads import HeadsConfig, default_utility
from transact.pipeline.run_config import run_config_from_dict

SHORT_VIDEO = ActionVocabulary(
    names=("impression", "click", "long_view", "like", "hate"),
    positive=("click", "long_view", "like"),
    negative=("hate",),
    impression="impression",
    main_positive="like",
    main_negative="hate",
)
LABELS = ("click", "long_view", "like", "hate")


def test_defaults_are_every_label_action_with_signed_unit_utility():
    r = HeadsConfig().resolve(SHORT_VIDEO, LABELS)
    assert r.names == LABELS
    assert r.utility == {"click": 1.0, "long_view": 1.0, "like": 1.0, "hate": -1.0}
    assert r.label_weights is None
    assert default_utility(("click", "repin", "hide"), ActionVocabulary())["hide"] == -1.0


def test_a_run_declares_heads_utility_and_label_weights_by_name():
    config = HeadsConfig.from_dict(
        {
            "names": ["like", "hate"],
            "utility": {"like": 4, "hate": -20},
            "label_weights": {"like": {"like": 10, "hate": 50, "impression": 2}},
        }
    )
    r = config.resolve(SHORT_VIDEO, LABELS)
    assert r.names == ("like", "hate") and r.utility == {"like": 4.0, "hate": -20.0}
    assert r.label_weights == {"like": {"like": 10.0, "hate": 50.0, "impression": 2.0}}
    # a partial utility: the other heads weigh 0
    assert HeadsConfig(utility={"like": 1.0}).resolve(SHORT_VIDEO, LABELS).utility["click"] == 0.0


def test_every_bad_name_is_one_line_naming_its_field():
    config = HeadsConfig.from_dict(
        {
            "names": ["click", "like"],
            "utility": {"repin": 2.0, "hate": -5.0},
            "label_weights": {"like": {"hate": 50.0, "save": 1.0}, "follow": {"like": 1.0}},
        }
    )
    with pytest.raises(ValueError) as err:
        config.resolve(SHORT_VIDEO, LABELS)
    lines = str(err.value).splitlines()
    assert "heads.utility.repin: unknown action 'repin'" in lines
    assert any(line.startswith("heads.utility.hate: 'hate' is not a head") for line in lines)
    assert any(
        line.startswith("heads.label_weights.like.hate: 'hate' is not a head") for line in lines
    )
    assert "heads.label_weights.like.save: unknown action 'save'" in lines
    assert "heads.label_weights.follow: unknown action 'follow'" in lines
    with pytest.raises(ValueError, match=r"heads.names\[1\]: unknown action 'repin'"):
        HeadsConfig(names=("click", "repin")).resolve(SHORT_VIDEO, LABELS)
    with pytest.raises(ValueError, match=r"heads.names\[0\]: 'impression' is the impression"):
        HeadsConfig(names=("impression",)).resolve(SHORT_VIDEO, LABELS)
    with pytest.raises(ValueError, match=r"heads.names\[0\]: the dataset has no labels of 'hate'"):
        HeadsConfig(names=("hate",)).resolve(SHORT_VIDEO, ("click", "like"))
    with pytest.raises(ValueError, match="heads.utility: every weight is 0"):
        HeadsConfig(utility={"like": 0}).resolve(SHORT_VIDEO, LABELS)


def test_the_table_is_type_checked_when_a_run_config_is_read():
    with pytest.raises(ValueError) as err:
        run_config_from_dict(
            {
                "heads": {
                    "names": "like",
                    "utility": {"like": "a lot"},
                    "weights": 1,
                    "label_weights": {"like": {"hate": -1}},
                }
            },  # fmt: skip
            source="r.toml",
        )
    msg = str(err.value)
    assert "invalid run config r.toml" in msg
    assert "heads.weights: unknown field" in msg
    assert "heads.names: expected a list of action names, got 'like'" in msg
    assert "heads.utility.like: expected a number, got 'a lot'" in msg
    assert "heads.label_weights.like.hate: must be >= 0, got -1.0" in msg


def test_utility_moved_from_eval_to_heads_and_old_files_still_read():
    config = run_config_from_dict({"heads": {"utility": {"like": 2.0}}})
    assert dict(config.evaluation.utility) == {"like": 2.0}
    assert config.to_dict()["heads"] == {"utility": {"like": 2.0}}
    assert "utility" not in config.to_dict()["eval"]
    old = run_config_from_dict({"eval": {"k": 3, "utility": {"repin": 1.0}}})  # model.pt of before
    assert old.heads.utility == {"repin": 1.0} and dict(old.evaluation.utility) == {"repin": 1.0}
    with pytest.raises(
        ValueError, match=r"\[eval\].utility: the utility weights live in \[heads\]"
    ):
        run_config_from_dict({"eval": {"utility": {"a": 1}}, "heads": {"utility": {"a": 1}}})
    resolved = run_config_from_dict({}).resolved(SHORT_VIDEO, LABELS)
    assert resolved.heads.names == LABELS and dict(resolved.evaluation.utility)["hate"] == -1.0
