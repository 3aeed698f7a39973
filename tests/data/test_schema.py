import pytest
import torch

from transact.data.schema import (
    PAD_ACTION,
    PAD_ITEM,
    ActionVocabulary,
    CategoricalFeature,
    FeatureSpec,
    NumericalFeature,
    gather_item_embeddings,
    impressions_schema,
    padded_embedding_table,
)


def test_vocabulary_reserves_zero_for_padding():
    vocab = ActionVocabulary()
    ids = [vocab.id(n) for n in vocab.names]
    assert ids == list(range(1, len(vocab.names) + 1))
    assert PAD_ACTION not in ids
    assert vocab.size == len(vocab.names) + 1
    assert vocab.name(vocab.id("repin")) == "repin"
    with pytest.raises(KeyError, match="unknown action type 'like'"):
        vocab.id("like")
    with pytest.raises(KeyError):
        vocab.name(0)


def test_feature_spec_round_trips_and_validates():
    spec = FeatureSpec(
        categorical=(
            CategoricalFeature("user_state", 5),
            CategoricalFeature("country", 10),
            CategoricalFeature("gender", 3),
        ),
        numerical=(NumericalFeature("quality", group="item"),),
    )
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert spec.categorical_index("country") == 1
    with pytest.raises(KeyError, match="unknown action type 'save'"):
        FeatureSpec(categorical=(), numerical=(), heads=("save",), user_weight_features=())
    with pytest.raises(ValueError, match="group 'page'"):
        CategoricalFeature("surface", 3, group="page")
    with pytest.raises(ValueError, match="'country'"):
        FeatureSpec(categorical=(), numerical=(), user_weight_features=("country",))


def test_pad_item_gathers_zero_row():
    table = padded_embedding_table(torch.arange(6, dtype=torch.float32).reshape(3, 2) + 1)
    out = gather_item_embeddings(table, torch.tensor([[2, PAD_ITEM]]))
    assert out.tolist() == [[[5.0, 6.0], [0.0, 0.0]]]


def test_impressions_schema_has_label_and_truth_per_head():
    schema = impressions_schema(("click", "hide"))
    assert {"label_click", "label_hide", "gt_prob_click", "gt_prob_hide"} <= set(schema.names)
    assert schema.metadata[b"heads"] == b"click,hide"


def test_labeled_batch_to_moves_every_tensor():
    from dataclasses import fields

    from transact.data.schema import LabeledBatch, RankerInputs

    inputs = RankerInputs(*(torch.zeros(2, 3) for _ in RankerInputs._fields))
    batch = LabeledBatch(inputs, *(torch.ones(2) for _ in fields(LabeledBatch)[1:]))
    moved = batch.to("meta")
    assert all(t.device.type == "meta" for t in moved.inputs)
    assert all(getattr(moved, f.name).device.type == "meta" for f in fields(LabeledBatch)[1:])
    assert batch.labels.device.type == "cpu"  # the original is untouched


def test_a_dataset_declares_its_actions_and_their_roles():
    vocab = ActionVocabulary(
        names=("view", "click", "long_view", "like", "hate"),
        positive=("click", "long_view", "like"),
        negative=("hate",),
        impression="view",
        main_positive="like",
        main_negative="hate",
    )
    assert vocab.engagements == ("click", "long_view", "like", "hate")
    assert vocab.negative_ids() == (5,) and vocab.is_negative("hate")
    assert ActionVocabulary.from_dict(vocab.to_dict()) == vocab
    world = ActionVocabulary()
    assert world.engagements == ("closeup", "click", "repin", "hide")
    assert (world.negative, world.main_positive, world.main_negative) == (
        ("hide",),
        "repin",
        "hide",
    )
    # a manifest from before issue 17 (names and positive only) reads with the world's roles
    legacy = ActionVocabulary.from_dict(
        {"names": list(world.names), "positive": list(world.positive)}
    )
    assert legacy == world
    ml = ActionVocabulary.from_dict(
        {
            "names": ["impression", "click", "repin", "hide", "tag"],
            "positive": ["click", "repin", "tag"],
        }
    )
    assert ml.negative == ("hide",) and ml.impression == "impression"
    for kwargs, message in [
        ({"negative": ("like",), "positive": ("like",)}, "both positive and negative"),
        ({"impression": "like"}, "neither positive nor negative"),
        ({"impression": "shown"}, "impression 'shown' is not an action"),
        ({"main_positive": "hate"}, "main_positive 'hate' is not one of the positive"),
        ({"negative": ("dislike",)}, r"negative names unknown actions \['dislike'\]"),
    ]:
        fields = {"names": ("view", "like", "hate"), "positive": ("like",), "negative": ("hate",),
                  "impression": "view", "main_positive": "like", "main_negative": "hate"}  # fmt: skip
        with pytest.raises(ValueError, match=message):
            ActionVocabulary(**{**fields, **kwargs})
    with pytest.raises(ValueError, match="'view' is the impression every example has"):
        FeatureSpec(categorical=(), numerical=(), heads=("view",), actions=vocab,
                    user_weight_features=())  # fmt: skip
