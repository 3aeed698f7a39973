"""Trainable item-id embeddings, hashed into a fixed number of rows (a ranker option).

A log whose items have no content gives the ranker no item representation of its own:
the ``candidate_embedding`` is then whatever the data stage made of the item id. This
module lets the ranker learn one: the candidate's dense item index is hashed into
``buckets`` rows of a trainable table (:class:`HashedItemEmbedding`). A fixed table size
keeps the model's size independent of the catalogue and lets new items in without a
resize; the price is collisions, which a configurable size trades against memory
(``PinnabilityConfig.item_id_buckets``; with n items in b buckets about ``n^2 / 2b``
pairs of items share a row when n is much smaller than b).

The hash (:func:`hash_item_ids`) is a fixed cubic polynomial over the prime field of the
Mersenne prime ``p = 2^31 - 1``, ``h(x) = ((c3 x + c2) x + c1) x + c0 mod p``, then
``mod buckets`` (a member of the 4-wise independent polynomial family of Carter and
Wegman). Ids next to each other (adapters number items in file order) land in unrelated
rows and fill the buckets as random placement would; a linear ``a x + b mod p`` does not:
its lattice gives 563 distinct rows to 1,000 consecutive ids in 1,000 buckets where chance
gives 632 (measured). Horner's steps keep every product below 2^62 (no int64 overflow:
the same rows on every device and under ``torch.export``), and the same id always gets
the same row, in training and serving.
"""

from __future__ import annotations

import torch
from torch import nn

HASH_PRIME = 2_147_483_647  # 2^31 - 1
HASH_COEFFICIENTS = (1_103_515_245, 1_664_525, 1_013_904_223, 12_345)
"""``(c3, c2, c1, c0)``, each below p; fixed forever, so a saved model's rows keep their items."""


def hash_item_ids(item_ids: torch.Tensor, buckets: int) -> torch.Tensor:
    """``[...]`` int64 item indices (>= 0) -> ``[...]`` int64 rows in ``0..buckets-1``."""
    x = item_ids.remainder(HASH_PRIME)
    h = torch.zeros_like(x)
    for c in HASH_COEFFICIENTS:  # Horner: h < p and x < p, so h * x + c < 2^62
        h = (h * x + c).remainder(HASH_PRIME)
    return h.remainder(buckets)


class HashedItemEmbedding(nn.Module):
    """A trainable ``[buckets, dim]`` table read at ``hash_item_ids(item_ids, buckets)``.

    Args:
        buckets: rows of the table.
        dim: embedding size.

    Example::

        emb = HashedItemEmbedding(buckets=65_536, dim=32)
        vectors = emb(torch.tensor([0, 1, 123_456]))   # [3, 32]
    """

    def __init__(self, buckets: int, dim: int) -> None:
        super().__init__()
        if buckets < 1 or dim < 1:
            raise ValueError(f"HashedItemEmbedding: buckets={buckets} and dim={dim} must be >= 1")
        self.buckets = buckets
        self.dim = dim
        self.table = nn.Embedding(buckets, dim)
        nn.init.normal_(self.table.weight, std=dim**-0.5)  # as the categorical table

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        """``[B]`` int64 item indices -> ``[B, dim]``."""
        return self.table(hash_item_ids(item_ids, self.buckets))


__all__ = ["HASH_COEFFICIENTS", "HASH_PRIME", "HashedItemEmbedding", "hash_item_ids"]
