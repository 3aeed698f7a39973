"""The ranking engine: one request in, candidates ranked by S = sum_h u_h f_h out.

:class:`RankingEngine` is the service without HTTP: it validates a request, assembles its
features (:mod:`transact.serving.features`), scores every candidate in ONE forward pass of
the served model version (:class:`transact.serving.registry.ModelRegistry`), and ranks by
the utility-weighted sum of head probabilities (paper Eq. 3's S). It also owns the
Prometheus metrics. The model handle is read once per request, so a hot reload never
changes the model under a request in flight, and the response names the version used.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from transact.data.schema import FeatureSpec
from transact.serving.features import BadRequest, FeatureAssembler
from transact.serving.registry import ModelRegistry

log = logging.getLogger("transact.serving")

MIN_REQUEST_TIME_MS = 946_684_800_000  # 2000-01-01: anything earlier is a unit mistake
MAX_FUTURE_MS = 86_400_000  # a request may be stamped at most a day ahead of the server


class ModelNotReady(RuntimeError):
    """No model version has been loaded yet (``/readyz`` says 503)."""


@dataclass(frozen=True)
class ServiceConfig:
    """Limits and scoring of the service.

    Args:
        max_candidates: most candidates one request may rank (paper: thousands).
        max_body_bytes: largest request body accepted (413 above).
        utility: u_h per head name for S = sum_h u_h f_h (heads missing here weigh 0);
            None (default): the served model's own, its run config's ``[heads] utility``
            (what it was evaluated with offline).
        max_concurrent_forwards: forward passes run at once (1 on a small CPU box: more
            only splits the same cores).
        micro_batch_wait_ms: > 0 merges concurrent requests into one forward, waiting at
            most this long for company (0: one forward per request, the paper's choice).
        micro_batch_max_candidates: a merged forward stops growing at this many candidates.
    """

    max_candidates: int = 2000
    max_body_bytes: int = 1_000_000
    utility: Mapping[str, float] | None = None
    max_concurrent_forwards: int = 1
    micro_batch_wait_ms: float = 0.0
    micro_batch_max_candidates: int = 4096

    def __post_init__(self) -> None:
        if not 0.0 <= self.micro_batch_wait_ms <= 1000.0:
            raise ValueError(
                f"ServiceConfig.micro_batch_wait_ms={self.micro_batch_wait_ms}: must be in 0..1000"
            )
        if self.micro_batch_max_candidates < 1:
            raise ValueError("ServiceConfig.micro_batch_max_candidates: must be >= 1")
        if self.max_candidates < 1:
            raise ValueError(f"ServiceConfig.max_candidates={self.max_candidates}: must be >= 1")
        if self.max_body_bytes < 1024:
            raise ValueError(f"ServiceConfig.max_body_bytes={self.max_body_bytes}: must be >= 1024")
        if self.max_concurrent_forwards < 1:
            raise ValueError("ServiceConfig.max_concurrent_forwards: must be >= 1")
        for head, u in (self.utility or {}).items():
            if not math.isfinite(float(u)):
                raise ValueError(f"ServiceConfig.utility[{head!r}]={u}: must be finite")


class ServiceMetrics:
    """Prometheus metrics of one service instance (own registry, so tests can make many)."""

    def __init__(self, engine: RankingEngine) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_latency = Histogram(
            "transact_rank_latency_seconds",
            "End-to-end /v1/rank latency inside the service",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
            registry=r,
        )
        self.forward_latency = Histogram(
            "transact_forward_latency_seconds",
            "Model forward (transfer + compute) per request",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
            registry=r,
        )
        self.batch_size = Histogram(
            "transact_forward_batch_candidates",
            "Candidates scored per forward pass",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.requests = Counter(
            "transact_rank_requests", "Rank requests by outcome", ["outcome"], registry=r
        )
        self.degraded = Counter(
            "transact_degraded_requests",
            "Requests ranked with a feature source unavailable",
            ["source"],
            registry=r,
        )
        self.model_info = Gauge(
            "transact_model_info", "Served model version (value 1)", ["version"], registry=r
        )
        r.register(_EngineCollector(engine))


class _EngineCollector:
    """Cache hit rates and reload counts, read at scrape time."""

    def __init__(self, engine: RankingEngine) -> None:
        self.engine = engine

    def collect(self) -> Any:
        assembler = self.engine.built_assembler()
        stats = assembler.items.cache.stats if assembler is not None else None
        lookups = CounterMetricFamily(
            "transact_item_cache_lookups", "Item-cache row lookups by tier served", labels=["tier"]
        )
        rate = GaugeMetricFamily(
            "transact_item_cache_hit_rate", "Share of lookups served by a tier", labels=["tier"]
        )
        total = max(stats.lookups, 1) if stats is not None else 1
        for tier, n in (
            ("memory", stats.memory_hits if stats is not None else 0),
            ("disk", stats.disk_hits if stats is not None else 0),
            ("miss", stats.misses if stats is not None else 0),
        ):
            lookups.add_metric([tier], n)
            rate.add_metric([tier], n / total)
        yield lookups
        yield rate
        reg = self.engine.registry
        yield CounterMetricFamily(
            "transact_model_reloads", "Model versions swapped in", value=reg.reloads
        )
        yield CounterMetricFamily(
            "transact_model_refusals", "Model versions refused by verification", value=reg.refusals
        )
        handle = reg.current()
        if handle is not None:  # the served version's own counts (they restart on a reload)
            ranker = handle.ranker
            reference = CounterMetricFamily(
                "transact_reference_path_requests",
                "Requests whose sequence encoder ran the model's own path: the fast path "
                "cannot take the served model (reason)",
                labels=["reason"],
            )
            if ranker.reference_reason is not None:
                reference.add_metric([ranker.reference_reason], ranker.reference_requests)
            yield reference
            yield CounterMetricFamily(
                "transact_split_layer_fallbacks",
                "Candidates whose split TransAct layer-1 softmax underflowed and ran plainly",
                value=ranker.split_fallbacks,
            )


@dataclass
class _Pending:
    handle: Any
    tensors: Any
    n: int
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class MicroBatcher:
    """Merges concurrent requests of the same model version into one forward pass.

    A request thread :meth:`submit` s its assembled tensors and waits; one worker thread
    takes the oldest request, waits up to ``wait_ms`` for more (same model version, up to
    ``max_candidates`` in all), scores them with ``ServingRanker.score_many`` and hands
    each request its rows. A request never waits for a version other than its own.
    """

    def __init__(self, wait_ms: float, max_candidates: int, metrics: ServiceMetrics) -> None:
        self.wait_s = wait_ms / 1000.0
        self.max_candidates = max_candidates
        self.metrics = metrics
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._held: list[_Pending] = []
        self._stop = threading.Event()
        self.batches = 0
        self._thread = threading.Thread(target=self._loop, name="micro-batcher", daemon=True)
        self._thread.start()

    def submit(self, handle: Any, tensors: Any) -> torch.Tensor:
        item = _Pending(handle, tensors, int(tensors.categorical.shape[0]))
        self._queue.put(item)
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def stop(self) -> None:
        self._stop.set()

    def _next(self, timeout: float | None) -> _Pending | None:
        if self._held:
            return self._held.pop(0)
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            first = self._next(timeout=0.1)
            if first is None:
                continue
            batch, total = [first], first.n
            deadline = time.perf_counter() + self.wait_s
            held: list[_Pending] = []
            while total < self.max_candidates:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
                if item.handle is not first.handle or total + item.n > self.max_candidates:
                    held.append(item)  # next batch: other version, or no room
                    continue
                batch.append(item)
                total += item.n
            self._held.extend(held)
            t0 = time.perf_counter()
            try:
                results = first.handle.ranker.score_many([p.tensors for p in batch])
                for p, r in zip(batch, results, strict=True):
                    p.result = r
            except BaseException as exc:  # hand the failure to every waiting request
                for p in batch:
                    p.error = exc
            self.batches += 1
            self.metrics.forward_latency.observe(time.perf_counter() - t0)
            self.metrics.batch_size.observe(total)
            for p in batch:
                p.done.set()


class RankingEngine:
    """Validates, assembles, scores and ranks; thread-safe (one instance per process).

    Args:
        registry: the served model version(s).
        assembler: feature assembly from the stores, or a function building it for a
            FeatureSpec: then it is built for the spec of the first version the registry
            serves, so a service can start before any version is published (it answers
            503 until then).
        config: :class:`ServiceConfig`.

    Example::

        engine = RankingEngine(registry, assembler, ServiceConfig())
        out = engine.rank(user_id=7, candidates=[3, 9, 4], request_time_ms=None, context={})
        out["items"][0]["item_id"], out["model_version"], out["degraded"]
    """

    def __init__(
        self,
        registry: ModelRegistry,
        assembler: FeatureAssembler | Callable[[FeatureSpec], FeatureAssembler],
        config: ServiceConfig | None = None,
    ) -> None:
        self.registry = registry
        self._assembler: FeatureAssembler | None = None
        self._build_assembler: Callable[[FeatureSpec], FeatureAssembler] | None = None
        if isinstance(assembler, FeatureAssembler):
            self._assembler = assembler
        else:
            self._build_assembler = assembler
        self._assembler_lock = threading.Lock()
        self.config = config or ServiceConfig()
        self._forward_slots = threading.BoundedSemaphore(self.config.max_concurrent_forwards)
        self.metrics = ServiceMetrics(self)
        self._shown_version: str | None = None
        self.batcher: MicroBatcher | None = None
        if self.config.micro_batch_wait_ms > 0:
            self.batcher = MicroBatcher(
                self.config.micro_batch_wait_ms,
                self.config.micro_batch_max_candidates,
                self.metrics,
            )

    @property
    def assembler(self) -> FeatureAssembler:
        """The feature assembler; raises :class:`ModelNotReady` while it waits for the
        first model version's FeatureSpec."""
        assembler = self.built_assembler()
        if assembler is not None:
            return assembler
        handle = self.registry.current()
        if handle is None:
            raise ModelNotReady("no model version loaded yet")
        with self._assembler_lock:  # concurrent first requests build it once
            if self._assembler is None:
                assert self._build_assembler is not None
                self._assembler = self._build_assembler(handle.spec)
                log.info("feature sources built for the FeatureSpec of %s", handle.version)
            return self._assembler

    def built_assembler(self) -> FeatureAssembler | None:
        """The assembler if it exists yet (never builds it; for metrics)."""
        return self._assembler

    def validate(self, user_id: int, candidates: list[int], request_time_ms: int | None) -> int:
        """Raise :class:`BadRequest` for out-of-range fields; returns the request time."""
        if user_id < 0 or user_id >= 2**63:
            raise BadRequest("user_id", f"must be in 0..2^63-1, got {user_id}")
        if not candidates:
            raise BadRequest("candidates", "must list at least one item id")
        if len(candidates) > self.config.max_candidates:
            raise BadRequest(
                "candidates",
                f"{len(candidates)} candidates, more than the maximum {self.config.max_candidates}",
            )
        for i, c in enumerate(candidates):
            if not 0 <= c < 2**63:
                raise BadRequest(f"candidates[{i}]", f"item id {c} is not a non-negative int64")
        now = int(time.time() * 1000)
        if request_time_ms is None:
            return now
        if not MIN_REQUEST_TIME_MS <= request_time_ms <= now + MAX_FUTURE_MS:
            raise BadRequest(
                "request_time_ms",
                f"{request_time_ms} is not a time in ms between 2000-01-01 and a day from now",
            )
        return int(request_time_ms)

    def rank(
        self,
        user_id: int,
        candidates: list[int],
        request_time_ms: int | None = None,
        context: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Rank ``candidates`` for ``user_id``; raises :class:`BadRequest` / :class:`ModelNotReady`."""
        t0 = time.perf_counter()
        m = self.metrics
        try:
            handle = self.registry.current()  # read ONCE: a reload cannot change it below
            if handle is None:
                raise ModelNotReady("no model version loaded yet")
            t_req = self.validate(user_id, candidates, request_time_ms)
            ids = np.asarray(candidates, dtype=np.int64)
            assembled = self.assembler.assemble(user_id, ids, t_req, context)
            if self.batcher is not None:  # merged with concurrent requests
                probs = self.batcher.submit(handle, assembled.tensors)
            else:
                t1 = time.perf_counter()
                with self._forward_slots:
                    probs = handle.ranker.score(assembled.tensors)  # [B, H]
                m.forward_latency.observe(time.perf_counter() - t1)
                m.batch_size.observe(len(candidates))
        except BadRequest:
            m.requests.labels("bad_request").inc()
            raise
        except ModelNotReady:
            m.requests.labels("not_ready").inc()
            raise
        except Exception:
            m.requests.labels("error").inc()
            log.exception("rank failed for user %d", user_id)
            raise
        heads = list(handle.spec.heads)
        weights = self.config.utility if self.config.utility is not None else handle.utility
        utility = torch.tensor([float(weights.get(h, 0.0)) for h in heads])
        scores = probs @ utility  # S = sum_h u_h f_h, [B]
        order = torch.argsort(scores, descending=True, stable=True).tolist()
        p = probs.tolist()
        s = scores.tolist()
        items = [
            {
                "item_id": int(candidates[i]),
                "score": s[i],
                "probabilities": dict(zip(heads, p[i], strict=True)),
            }
            for i in order
        ]
        for source in assembled.degraded:
            m.degraded.labels(source).inc()
        if self._shown_version != handle.version:
            m.model_info.clear()
            m.model_info.labels(handle.version).set(1)
            self._shown_version = handle.version
        m.requests.labels("ok").inc()
        latency = time.perf_counter() - t0
        m.request_latency.observe(latency)
        return {
            "model_version": handle.version,
            "request_time_ms": t_req,
            "degraded": bool(assembled.degraded),
            "degraded_sources": assembled.degraded,
            "heads": heads,
            "utility": {h: float(weights.get(h, 0.0)) for h in heads},
            "items": items,
            "latency_ms": latency * 1000,
        }
