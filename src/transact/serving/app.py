"""HTTP API (FastAPI): ``POST /v1/rank``, ``/healthz``, ``/readyz``, ``/metrics``, OpenAPI.

Every client mistake is a 4xx whose JSON body names the field: malformed JSON (``body``),
missing or mistyped fields, unknown item ids (``candidates[i]``), too many candidates,
NaN or out-of-range times, unknown context features, and bodies over the size limit
(413, checked on the raw stream before parsing). 503 while no model is loaded; 500 only
for a server fault, counted in ``/metrics``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from transact.serving.engine import ModelNotReady, RankingEngine
from transact.serving.features import BadRequest

log = logging.getLogger("transact.serving")


class RankRequest(BaseModel):
    """A ranking request: one user, the candidate items, optional time and context."""

    model_config = ConfigDict(extra="forbid", strict=False)

    user_id: int = Field(ge=0, description="user id (non-negative integer)")
    candidates: list[int] = Field(
        min_length=1, description="candidate item ids (dense item indices)"
    )
    request_time_ms: int | None = Field(
        default=None, description="request time, ms since the epoch; default: now"
    )
    context: dict[str, float] = Field(
        default_factory=dict,
        description="context features by FeatureSpec name (categorical: local index)",
    )


class RankedItem(BaseModel):
    """One candidate with its score S = sum_h u_h p_h and each head's probability p_h."""

    item_id: int
    score: float
    probabilities: dict[str, float]


class RankResponse(BaseModel):
    """Candidates best first, the model version that scored them and degradation flags."""

    model_version: str
    request_time_ms: int
    degraded: bool
    degraded_sources: list[str]
    heads: list[str]
    utility: dict[str, float]
    items: list[RankedItem]
    latency_ms: float


class ErrorResponse(BaseModel):
    """A client or availability error: what went wrong and which request field."""

    error: str
    field: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "body larger than the limit"},
    422: {"model": ErrorResponse, "description": "bad field (named in `field`)"},
    503: {"model": ErrorResponse, "description": "no model version loaded yet"},
}


def _error(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message, "field": field})


class _BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes (declared or streamed)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_big = _error(413, "body", f"request body larger than {self.limit} bytes")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await too_big(scope, receive, send)
            return
        seen = 0
        exceeded = False

        async def limited() -> dict:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise _TooLarge
            return message

        replaced = False

        async def guarded_send(message: dict) -> None:
            # the body parser turns our error into its own 4xx: answer 413 instead
            nonlocal replaced
            if exceeded:
                if not replaced:
                    replaced = True
                    await too_big(scope, receive, send)
                return
            await send(message)

        try:
            await self.app(scope, limited, guarded_send)
        except _TooLarge:
            if not replaced:
                await too_big(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(engine: RankingEngine) -> FastAPI:
    """The FastAPI app around ``engine`` (uvicorn serves it; tests use its TestClient)."""
    app = FastAPI(
        title="transact ranking service",
        version="1",
        description=(
            "Ranks candidate items for a user with Pinnability + TransAct (KDD 2023). "
            "One forward pass per request; responses name the model version."
        ),
    )
    app.state.engine = engine

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = dict(exc.errors()[0]) if exc.errors() else {"loc": ("body",)}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        field = ".".join(loc) if loc else "body"
        msg = first.get("msg", "invalid")
        if first.get("type") == "json_invalid":
            field, msg = "body", f"malformed JSON: {first.get('ctx', {}).get('error', msg)}"
        return _error(422, field, msg)

    @app.post("/v1/rank", response_model=RankResponse, responses=_ERRORS)
    async def rank(req: RankRequest) -> Any:
        if len(req.candidates) > engine.config.max_candidates:  # before any work
            return _error(
                422,
                "candidates",
                f"{len(req.candidates)} candidates, more than the maximum "
                f"{engine.config.max_candidates}",
            )
        try:
            return await run_in_threadpool(
                engine.rank, req.user_id, req.candidates, req.request_time_ms, req.context
            )
        except BadRequest as exc:
            return _error(422, exc.field, exc.message)
        except ModelNotReady as exc:
            return _error(503, "model", str(exc))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        handle = engine.registry.current()
        if handle is None:
            return _error(503, "model", "no model version loaded yet")
        return JSONResponse({"status": "ready", "model_version": handle.version})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/admin/reload")
    async def reload() -> Response:
        handle = await run_in_threadpool(engine.registry.reload)
        return JSONResponse({"model_version": handle.version if handle else None})

    app.add_middleware(_BodyLimit, limit=engine.config.max_body_bytes)
    return app
