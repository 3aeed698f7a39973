"""The split layer-1 algebra against the plain attention block on concat-fused tokens:
values and gradients (several users), the one-user chunked form, the underflow report."""

from __future__ import annotations

import pytest
import torch

from transact.models import split_attention as layer1
from transact.models.attention import MaskedSelfAttention

D_U, D_C, S = 6, 4, 9


def _setup(heads: int, n_users: int, seed: int = 0):
    torch.manual_seed(seed)
    attn = MaskedSelfAttention(D_U + D_C, heads, dropout=0.0, attention="reference").double()
    user_tokens = torch.randn(n_users, S, D_U, dtype=torch.float64)
    hidden = torch.zeros(n_users, S, dtype=torch.bool)
    hidden[0, 5:] = True  # padding
    hidden[-1, :2] = True  # actions at or after the request
    user_tokens = user_tokens.masked_fill(hidden[..., None], 0.0)
    return attn, user_tokens, hidden


def _frozen(attn: MaskedSelfAttention) -> layer1.AttentionWeights:
    """Detached weights (the inference-only functions write in place)."""
    w = layer1.AttentionWeights.of(attn)
    return w._replace(**{k: getattr(w, k).detach() for k in ("in_w", "in_b", "out_w", "out_b")})


def _plain(attn, user_tokens, key_mask, candidates, user_index):
    tokens = torch.cat(
        [user_tokens[user_index], candidates[:, None].expand(-1, S, -1)], dim=-1
    )  # [B, S, d]: the candidate copied onto every position
    return tokens + attn(tokens, key_mask[user_index])


@pytest.mark.parametrize("heads", [1, 2, 5])
def test_split_attention_equals_the_plain_block_values_and_gradients(heads: int) -> None:
    attn, user_tokens, key_mask = _setup(heads, n_users=3)
    candidates = torch.randn(7, D_C, dtype=torch.float64)
    user_index = torch.tensor([2, 0, 1, 1, 2, 0, 2])
    user_tokens.requires_grad_(True)
    candidates.requires_grad_(True)
    weights = layer1.AttentionWeights.of(attn)
    user = layer1.user_part(user_tokens, key_mask, weights)
    got = layer1.split_attention(
        user, user_tokens, key_mask[user_index], candidates, user_index, weights
    )
    want = _plain(attn, user_tokens, key_mask, candidates, user_index)
    assert not got.underflow.any()
    torch.testing.assert_close(got.residual, want, rtol=0, atol=1e-12)
    probe = torch.randn_like(want)  # a loss that weighs every output differently
    params = [user_tokens, candidates, *attn.parameters()]
    grads_split = torch.autograd.grad((got.residual * probe).sum(), params)
    grads_plain = torch.autograd.grad((want * probe).sum(), params)
    for a, b in zip(grads_split, grads_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("heads", [1, 2])
def test_one_user_chunks_equal_split_attention(heads: int) -> None:
    attn, user_tokens, key_mask = _setup(heads, n_users=1, seed=1)
    candidates = torch.randn(10, D_C, dtype=torch.float64)
    weights = _frozen(attn)
    with torch.inference_mode():
        user = layer1.user_part(user_tokens, key_mask, weights)
        part = layer1.one_user_candidates(user, user_tokens, key_mask, candidates, weights)
        chunks = [layer1.one_user_chunk(part, lo, min(lo + 4, 10)) for lo in range(0, 10, 4)]
        want = _plain(attn, user_tokens, key_mask, candidates, torch.zeros(10, dtype=torch.long))
    assert part.underflow is None and all(redo is None for _, redo in chunks)
    got = torch.cat([residual for residual, _ in chunks], dim=1).transpose(0, 1)  # [S,b,d]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_underflow_is_reported_per_candidate() -> None:
    """Logit maxima ~1e4 apart: exp(A - max) * exp(G - max) underflows for the wild
    candidates only, and only those are flagged for the plain recomputation."""
    attn, user_tokens, key_mask = _setup(1, n_users=1, seed=2)
    with torch.no_grad():
        attn.in_proj.weight[: 2 * (D_U + D_C)].mul_(40.0)  # queries and keys
    calm = torch.randn(3, D_C, dtype=torch.float64) * 1e-3
    wild = torch.randn(3, D_C, dtype=torch.float64) * 30.0
    candidates = torch.cat([calm, wild])
    weights = _frozen(attn)
    index = torch.zeros(6, dtype=torch.long)
    with torch.inference_mode():
        user = layer1.user_part(user_tokens, key_mask, weights)
        split = layer1.split_attention(
            user, user_tokens, key_mask[index], candidates, index, weights
        )
        part = layer1.one_user_candidates(user, user_tokens, key_mask, candidates, weights)
        _, redo = layer1.one_user_chunk(part, 0, 6)
    assert split.underflow[:3].tolist() == [False] * 3
    assert split.underflow[3:].any()
    assert redo is not None and redo.tolist() == split.underflow.nonzero().squeeze(1).tolist()
    want = _plain(attn, user_tokens, key_mask, candidates, index).detach()
    ok = ~split.underflow
    torch.testing.assert_close(split.residual[ok], want[ok], rtol=0, atol=1e-9)


def test_a_candidate_mask_may_hide_more_than_its_users() -> None:
    """Per-example training windows hide more keys for some candidates than the user's
    mask given to user_part: the split still equals the plain block under that mask."""
    attn, user_tokens, key_mask = _setup(2, n_users=2, seed=3)
    candidates = torch.randn(5, D_C, dtype=torch.float64)
    user_index = torch.tensor([0, 1, 1, 0, 1])
    per_candidate = key_mask[user_index].clone()
    per_candidate[1, 2:5] = True  # a window over three more of user 1's actions
    per_candidate[3, 0] = True
    weights = layer1.AttentionWeights.of(attn)
    user = layer1.user_part(user_tokens, key_mask, weights)
    got = layer1.split_attention(user, user_tokens, per_candidate, candidates, user_index, weights)
    tokens = torch.cat([user_tokens[user_index], candidates[:, None].expand(-1, S, -1)], dim=-1)
    want = tokens + attn(tokens, per_candidate)
    assert not got.underflow.any()
    torch.testing.assert_close(got.residual, want, rtol=0, atol=1e-12)
