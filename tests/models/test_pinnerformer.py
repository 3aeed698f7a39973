import math

import pytest
import torch

from transact.data.schema import PAD_ACTION
from transact.models.pinnerformer import (
    ItemTower,
    PinnerFormerConfig,
    PinnerFormerEncoder,
    causal_attention_mask,
    dense_all_action_loss,
    time_features,
)

SMALL = PinnerFormerConfig(
    d_item=8, d_user=16, d_model=16, num_heads=2, dim_feedforward=32, dropout=0.0
)


def _batch(b: int = 3, s: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    types = torch.randint(1, 6, (b, s), generator=g)
    types[0, 4:] = PAD_ACTION
    emb = torch.randn(b, s, 8, generator=g) * (types != PAD_ACTION).unsqueeze(-1)
    # newest first: times decrease along the sequence
    times = 1_767_225_600_000 - torch.cumsum(torch.randint(1, 10**7, (b, s), generator=g), 1)
    times = torch.where(types != PAD_ACTION, times, 0)
    return types, emb, times


def test_loss_matches_hand_computation():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    positive_ids = torch.tensor([5, 7])
    positive_log_q = torch.tensor([math.log(0.2), math.log(0.5)])
    negatives = torch.tensor([[-1.0, 0.0]])
    negative_ids = torch.tensor([9])
    negative_log_q = torch.tensor([math.log(0.1)])
    t = 0.5
    loss = dense_all_action_loss(
        anchors, positives, positive_ids, positive_log_q, negatives, negative_ids, negative_log_q, t
    )
    # row 0: candidates pos0 (0.6/.5 - log .2), pos1 (0/.5 - log .5), neg (-1/.5 - log .1)
    row0 = [0.6 / t - math.log(0.2), 0.0 / t - math.log(0.5), -1.0 / t - math.log(0.1)]
    # row 1: pos0 (0.8/.5 - log .2), pos1 (1/.5 - log .5), neg (0/.5 - log .1); target index 1
    row1 = [0.8 / t - math.log(0.2), 1.0 / t - math.log(0.5), 0.0 / t - math.log(0.1)]

    def nll(logits: list[float], target: int) -> float:
        return -(logits[target] - math.log(sum(math.exp(x) for x in logits)))

    expected = (nll(row0, 0) + nll(row1, 1)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_loss_masks_accidental_hits():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    same_ids = torch.tensor([5, 5])  # both rows' positive is the same item
    zero_q = torch.zeros(2)
    negatives = torch.tensor([[-1.0, 0.0]])
    loss = dense_all_action_loss(
        anchors, positives, same_ids, zero_q, negatives, torch.tensor([5]), torch.zeros(1), 1.0
    )
    # every other candidate is the same item: only the own positive remains -> loss 0
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="temperature"):
        dense_all_action_loss(
            anchors, positives, same_ids, zero_q, negatives, torch.tensor([1]), torch.zeros(1), 0.0
        )


def test_log_q_correction_lowers_popular_candidates():
    anchors = torch.tensor([[1.0, 0.0]] * 2)
    positives = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    ids = torch.tensor([1, 2])
    no_neg = torch.zeros(0, 2)
    uniform = dense_all_action_loss(
        anchors,
        positives,
        ids,
        torch.zeros(2),
        no_neg,
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0),
        1.0,
    )
    assert uniform.item() == pytest.approx(math.log(2), rel=1e-6)
    # item 2 very popular: as row 0's negative it is discounted -> row 0's loss drops
    popular = dense_all_action_loss(
        anchors,
        positives,
        ids,
        torch.tensor([0.0, math.log(100.0)]),
        no_neg,
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0),
        1.0,
    )
    row0 = -math.log(1 / (1 + 1 / 100))
    row1 = -math.log((1 / 100) / (1 + 1 / 100))
    assert popular.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_encoder_is_causal_and_normalized():
    torch.manual_seed(0)
    enc = PinnerFormerEncoder(SMALL).eval()
    types, emb, times = _batch()
    out = enc(types, emb, times)
    assert out.shape == (3, 6, 16)
    real = types != PAD_ACTION
    assert torch.allclose(out[real].norm(dim=-1), torch.ones(int(real.sum())), atol=1e-5)
    # change the newest action of row 1: older positions (>= 1) must not move, position 0 must
    emb2 = emb.clone()
    emb2[1, 0] += 1.0
    out2 = enc(types, emb2, times)
    assert torch.allclose(out[1, 1:], out2[1, 1:], atol=1e-6)
    assert (out[1, 0] - out2[1, 0]).abs().max() > 1e-3
    # change an old action: the newest position sees it
    emb3 = emb.clone()
    emb3[2, 5] += 1.0
    assert (enc(types, emb3, times)[2, 0] - out[2, 0]).abs().max() > 1e-4


def test_encoder_ignores_padding_content_and_length():
    torch.manual_seed(0)
    enc = PinnerFormerEncoder(SMALL).eval()
    types, emb, times = _batch()
    base = enc.user_embedding(types, emb, times)
    # garbage in padded slots must not matter
    emb_noise = emb.clone()
    emb_noise[0, 4:] = 5.0
    assert torch.allclose(enc.user_embedding(types, emb_noise, times), base, atol=1e-6)
    # extra padding columns must not matter
    pad = 3
    types_p = torch.cat([types, torch.zeros(3, pad, dtype=torch.long)], 1)
    emb_p = torch.cat([emb, torch.zeros(3, pad, 8)], 1)
    times_p = torch.cat([times, torch.zeros(3, pad, dtype=torch.long)], 1)
    assert torch.allclose(enc.user_embedding(types_p, emb_p, times_p), base, atol=1e-5)


def test_time_features_and_mask():
    types = torch.tensor([[2, 3, 0]])
    day = 86_400_000
    times = torch.tensor([[10 * day + 6 * 3_600_000, 10 * day, 0]])
    f = time_features(times, types)
    assert f.shape == (1, 3, 5)
    assert f[0, 0, 0].item() == pytest.approx(math.log1p(6.0), rel=1e-6)  # 6 h gap
    assert f[0, 1, 0].item() == 0.0  # oldest action: no older neighbour
    assert torch.all(f[0, 2] == 0)  # padding
    assert f[0, 0, 1].item() == pytest.approx(math.sin(2 * math.pi * 6 / 24), abs=1e-6)
    mask = causal_attention_mask(types, num_heads=2)
    assert mask.shape == (2, 3, 3)
    allowed = mask[0] == 0
    assert allowed.tolist() == [[True, True, False], [False, True, False], [False, False, True]]


def test_item_tower_and_config_validation():
    tower = ItemTower(SMALL)
    out = tower(torch.randn(4, 8))
    assert torch.allclose(out.norm(dim=-1), torch.ones(4), atol=1e-5)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        PinnerFormerConfig(d_model=10, num_heads=3)
    with pytest.raises(ValueError, match="dropout"):
        PinnerFormerConfig(dropout=1.5)
    assert PinnerFormerConfig.from_dict(SMALL.to_dict()) == SMALL
    legacy = {"n_layers": 1, "n_heads": 4, "d_ff": 8, "n_action_types": 9}  # older checkpoints
    assert PinnerFormerConfig.from_dict(legacy) == PinnerFormerConfig(
        num_layers=1, num_heads=4, dim_feedforward=8, num_action_types=9
    )
    enc = PinnerFormerEncoder(SMALL)
    with pytest.raises(ValueError, match="action_embeddings"):
        enc(
            torch.ones(2, 3, dtype=torch.long),
            torch.zeros(2, 4, 8),
            torch.ones(2, 3, dtype=torch.long),
        )


def test_fused_causal_path_matches_explicit_mask_reference():
    torch.manual_seed(1)
    enc = PinnerFormerEncoder(SMALL).eval()
    g = torch.Generator().manual_seed(3)
    b, s = 9, 12
    lengths = torch.tensor([1, 2, 5, 12, 7, 3, 12, 8, 4])
    types = torch.randint(1, 6, (b, s), generator=g)
    types[torch.arange(s).unsqueeze(0) >= lengths.unsqueeze(1)] = PAD_ACTION
    emb = torch.randn(b, s, 8, generator=g) * (types != PAD_ACTION).unsqueeze(-1)
    times = 1_767_225_600_000 - torch.cumsum(torch.randint(1, 10**7, (b, s), generator=g), 1)
    times = torch.where(types != PAD_ACTION, times, 0)
    fast = enc(types, emb, times)
    ref = enc(types, emb, times, reference=True)
    real = types != PAD_ACTION
    assert torch.allclose(fast[real], ref[real], atol=1e-5)
    bad = types.clone()
    bad[2, 1] = PAD_ACTION
    with pytest.raises(ValueError, match="row 2: padding"):
        enc(bad, emb, times)
