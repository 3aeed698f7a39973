"""Many users' requests in one forward, each user encoded alone by the one-user fast path.

:meth:`FastTransAct.forward_users` with ``U > 1`` users splits layer 1 for all candidates
at once, which gathers a ``[S, S]`` matrix per candidate, and keeps every position some
user can read. Evaluation scores batches of many small requests (about 20 candidates
each), where the one-user path is the better one: per user it keeps only that user's
visible actions, computes layer 1's per-user part once and the per-candidate part for the
whole request. :class:`PerUserFastTransAct` runs it user by user, the users spread over the
single-threaded chunk workers (:mod:`.workers`) when the caller has several intra-op
threads. Same function as :class:`FastTransAct` (and so as the model's TransAct).
"""

from __future__ import annotations

import torch

from transact.models.fast_transact.encoder import FastTransAct
from transact.models.fast_transact.workers import chunk_pool
from transact.models.sequence import SequenceEncoder


class PerUserFastTransAct(SequenceEncoder):
    """:class:`FastTransAct` applied one user at a time (inference only).

    Args:
        fast: the fast encoder (its options apply within each user).

    ``forward_users`` takes ``U`` users' rows ``[U, ...]``, candidates ``[B, d_item]`` and
    ``user_index [B]`` (any order) and returns ``[B, out_dim]``.
    """

    def __init__(self, fast: FastTransAct) -> None:
        super().__init__()
        self.fast = fast

    @property
    def out_dim(self) -> int:
        return self.fast.out_dim

    @torch.inference_mode()
    def forward(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
    ) -> torch.Tensor:
        """The model's signature: row ``b`` is candidate ``b`` with its own user."""
        index = torch.arange(candidate_embedding.shape[0], device=candidate_embedding.device)
        return self.forward_users(
            action_types, action_embeddings, action_times_ms, request_time_ms,
            candidate_embedding, index,
        )  # fmt: skip

    @torch.inference_mode()
    def forward_users(
        self,
        action_types: torch.Tensor,
        action_embeddings: torch.Tensor,
        action_times_ms: torch.Tensor,
        request_time_ms: torch.Tensor,
        candidate_embedding: torch.Tensor,
        user_index: torch.Tensor,
    ) -> torch.Tensor:
        """Encode each user's candidates with the one-user fast path -> ``[B, out_dim]``."""
        n_users = action_types.shape[0]
        request_time_ms = request_time_ms.reshape(-1)
        order = torch.argsort(user_index, stable=True)
        sizes = torch.bincount(user_index, minlength=n_users).tolist()
        out = candidate_embedding.new_empty(candidate_embedding.shape[0], self.out_dim)
        users = (action_types, action_embeddings, action_times_ms, request_time_ms)
        candidates = candidate_embedding[order]
        starts = [0]
        for size in sizes:
            starts.append(starts[-1] + size)

        def run(first: int, last: int) -> None:
            """Users ``[first, last)``, written into their rows of ``out``."""
            with torch.inference_mode(), torch.autocast(out.device.type, enabled=False):
                for u in range(first, last):
                    lo, hi = starts[u], starts[u + 1]
                    if hi == lo:
                        continue
                    types, embs, times, request = (t[u : u + 1] for t in users)
                    out[order[lo:hi]] = self.fast.forward_users(
                        types, embs, times, request, candidates[lo:hi]
                    )

        workers = _workers(out.device, len(candidates))
        if workers == 1:
            run(0, n_users)
            return out
        # contiguous runs of users with about equal numbers of candidates
        edges = [0]
        for w in range(1, workers):
            target = w * len(candidates) // workers
            edges.append(max(edges[-1], int(torch.searchsorted(torch.tensor(starts), target))))
        edges.append(n_users)
        pool = chunk_pool(workers)
        tasks = [pool.submit(run, a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        for task in tasks:
            task.result()
        return out


MIN_CANDIDATES_PER_WORKER = 64


def _workers(device: torch.device, n_cand: int) -> int:
    """Single-threaded workers for ``n_cand`` candidates: the caller's intra-op thread count
    on CPU (one per :data:`MIN_CANDIDATES_PER_WORKER` candidates at most), 1 elsewhere."""
    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), n_cand // MIN_CANDIDATES_PER_WORKER))
