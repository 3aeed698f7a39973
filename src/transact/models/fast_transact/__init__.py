"""TransAct's inference fast path, one module per concern.

* :mod:`.encoder`: :class:`FastTransAct`, the module the serving ranker runs: the
  per-request plan (visible positions, the user part), the chunks of candidates, the plain
  and folded encoder layers. It computes layer 1 with the exact per-user / per-candidate
  algebra of :mod:`transact.models.split_attention` (model math, so it lives with the
  model, where training can use it too).
* :mod:`.folding`: the encoder layers' weights copied once and folded into fewer
  operations (one-head attention projections, the FFN's output bias).
* :mod:`.workers`: which chunks run on which single-threaded CPU worker, and the
  leader/follower scheduling of one request's plan and chunks.

The plain reference beside it is :class:`transact.models.fast_transact.reference.ReferenceTransAct`;
``tests/serving/test_fast_transact.py`` compares the two within 1e-5 in fp32.
"""

from transact.models.fast_transact.encoder import FastTransAct, FastTransActOptions
from transact.models.fast_transact.workers import CPU_CHUNK_SIZE

__all__ = ["CPU_CHUNK_SIZE", "FastTransAct", "FastTransActOptions"]
