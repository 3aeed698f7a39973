"""HTTP API (FastAPI): ``POST /v1/rank``, ``/healthz``, ``/readyz``, ``/metrics``, OpenAPI.

Every client mistake is a 4xx whose JSON body is ``{"error": ..., "field": ...}`` naming
the field: malformed JSON, invalid UTF-8, lone surrogates, nesting deeper than the
parser's limit and numbers too long to hold (all ``body``), missing or mistyped fields,
ids that break the shared id rule (:mod:`transact.data.ids`), unknown item ids
(``candidates[i]``), too many candidates, NaN or out-of-range times, unknown context
features, and bodies over the size limit (413, checked on the raw stream before parsing).
503 while no model is loaded; 500 only for a server fault, counted in ``/metrics``.

The body is parsed by pydantic's own JSON parser (``RankRequest.model_validate_json``),
not by FastAPI's ``json.loads``: it rejects invalid UTF-8 and lone surrogates, stops at a
fixed nesting depth instead of raising ``RecursionError``, and reports where it failed.

Admin endpoints (``POST /v1/admin/reload``) exist only when an admin token is configured
and require ``Authorization: Bearer <token>``, compared in constant time
(``docs/serving.md``, threat model).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from transact.data.ids import MAX_ID, id_problem
from transact.serving.engine import ModelNotReady, RankingEngine
from transact.serving.features import BadRequest

log = logging.getLogger("transact.serving")

ADMIN_TOKEN_ENV = "TRANSACT_ADMIN_TOKEN"
"""Environment variable holding the admin token (``transact serve`` reads it)."""
MIN_ADMIN_TOKEN_BYTES = 16
_MAX_ERROR_CHARS = 300  # an error echoes client text; never a megabyte of it


def _checked_id(value: object) -> object:
    problem = id_problem(value)
    if problem is not None:
        raise PydanticCustomError("invalid_id", problem.message)
    return value


Id = Annotated[
    int,
    BeforeValidator(_checked_id),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_ID}),
]
"""A user or item id under the shared rule of :mod:`transact.data.ids` (a JSON integer
in 0..2^63-1; no booleans, numeric strings or floats), as the stream processor applies it."""


class RankRequest(BaseModel):
    """A ranking request: one user, the candidate items, optional time and context.

    Strict: no coercion of strings, booleans or floats into integers (``"7"``, ``true``
    and ``7.0`` are refused), the same rule as the stream's event validation."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Id = Field(description="user id (integer in 0..2^63-1)")
    candidates: list[Id] = Field(
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
    415: {"model": ErrorResponse, "description": "content-type is not JSON"},
    422: {"model": ErrorResponse, "description": "bad field (named in `field`)"},
    503: {"model": ErrorResponse, "description": "no model version loaded yet"},
}


def _printable(text: str) -> str:
    """``text`` made encodable as UTF-8 (a lone surrogate becomes ``\\udXXX``) and short."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > _MAX_ERROR_CHARS:
        text = text[:_MAX_ERROR_CHARS] + f"...<{len(text)} chars>"
    return text


def error_response(
    status: int, field: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one error shape ``{"error": message, "field": field}`` with ``status``.

    Both strings may echo client input, so they are escaped to valid UTF-8 and cut to a
    few hundred characters: an error reply can never fail to render (a 500)."""
    return JSONResponse(
        status_code=status,
        content={"error": _printable(message), "field": _printable(field)},
        headers=headers,
    )


def _field_of(loc: tuple[Any, ...]) -> str:
    """pydantic's error location as the API names fields: ``candidates[3]``, ``context.x``."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def validation_error_response(errors: list[Any]) -> JSONResponse:
    """422 for the first of pydantic's ``errors`` (a parse error names ``body``)."""
    first: dict[str, Any] = dict(errors[0]) if errors else {"loc": (), "msg": "invalid"}
    msg = str(first.get("msg", "invalid"))
    if first.get("type") == "json_invalid":
        error = first.get("ctx", {}).get("error", msg)
        return error_response(422, "body", f"malformed JSON body: {error}")
    return error_response(422, _field_of(tuple(first.get("loc", ()))), msg)


def load_admin_token(path: str | None = None, env: str = ADMIN_TOKEN_ENV) -> str | None:
    """The admin token: the first line of the file ``path`` if given, else ``$env``, else
    ``None`` (admin endpoints off). A file or a variable keeps the secret out of ``ps``."""
    if path:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
        if not token:
            raise ValueError(f"admin token file {path} is empty")
        return token
    return os.environ.get(env) or None


class _AdminAuth:
    """``Authorization: Bearer <token>`` against the configured token, in constant time.

    Both sides are hashed first so the comparison (``hmac.compare_digest``) takes the same
    time whatever the length or content of the guess."""

    def __init__(self, token: str) -> None:
        if len(token.encode()) < MIN_ADMIN_TOKEN_BYTES:
            raise ValueError(
                f"the admin token must be at least {MIN_ADMIN_TOKEN_BYTES} bytes "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        self._digest = hashlib.sha256(token.encode()).digest()

    def allows(self, header: str | None) -> bool:
        scheme, _, credential = (header or "").partition(" ")
        # headers arrive as latin-1 text: its bytes are what the client sent
        got = hashlib.sha256(credential.strip().encode("latin-1", "replace")).digest()
        same = hmac.compare_digest(got, self._digest)
        return same and scheme.lower() == "bearer"


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
        too_big = error_response(413, "body", f"request body larger than {self.limit} bytes")
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


def create_app(engine: RankingEngine, admin_token: str | None = None) -> FastAPI:
    """The FastAPI app around ``engine`` (uvicorn serves it; tests use its TestClient).

    Args:
        engine: the ranking engine.
        admin_token: enables ``POST /v1/admin/reload`` behind ``Authorization: Bearer
            <admin_token>`` (at least 16 bytes). ``None``: no admin endpoint at all (404).
    """
    auth = _AdminAuth(admin_token) if admin_token is not None else None
    app = FastAPI(
        title="transact ranking service",
        version="1",
        description=(
            "Ranks candidate items for a user with Pinnability + TransAct (KDD 2023). "
            "One forward pass per request; responses name the model version."
        ),
    )
    app.state.engine = engine

    def bad_request(response: JSONResponse) -> JSONResponse:
        engine.metrics.requests.labels("bad_request").inc()
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return bad_request(validation_error_response(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        field = {404: "path", 405: "method"}.get(exc.status_code, "body")
        return error_response(exc.status_code, field, str(exc.detail), exc.headers)

    body_schema = RankRequest.model_json_schema(ref_template="#/components/schemas/{model}")

    @app.post(
        "/v1/rank",
        response_model=RankResponse,
        responses=_ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            }
        },
    )
    async def rank(request: Request) -> Any:
        ctype = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if ctype != "application/json" and not ctype.endswith("+json"):
            return bad_request(
                error_response(415, "content-type", f"must be application/json, got {ctype!r}")
            )
        try:
            req = RankRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return bad_request(validation_error_response(exc.errors()))
        if len(req.candidates) > engine.config.max_candidates:  # before any work
            return bad_request(
                error_response(
                    422,
                    "candidates",
                    f"{len(req.candidates)} candidates, more than the maximum "
                    f"{engine.config.max_candidates}",
                )
            )
        try:
            return await run_in_threadpool(
                engine.rank, req.user_id, req.candidates, req.request_time_ms, req.context
            )
        except BadRequest as exc:  # counted by the engine
            return error_response(422, exc.field, exc.message)
        except ModelNotReady as exc:
            return error_response(503, "model", str(exc))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        handle = engine.registry.current()
        if handle is None:
            return error_response(503, "model", "no model version loaded yet")
        return JSONResponse({"status": "ready", "model_version": handle.version})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if auth is not None:

        @app.post(
            "/v1/admin/reload",
            responses={401: {"model": ErrorResponse, "description": "missing or wrong token"}},
        )
        async def reload(request: Request) -> Response:
            if not auth.allows(request.headers.get("authorization")):
                log.warning("admin reload refused: bad or missing token from %s", request.client)
                return error_response(
                    401,
                    "authorization",
                    "admin endpoints need 'Authorization: Bearer <admin token>'",
                    headers={"WWW-Authenticate": 'Bearer realm="transact-admin"'},
                )
            handle = await run_in_threadpool(engine.registry.reload)
            return JSONResponse({"model_version": handle.version if handle else None})

    app.add_middleware(_BodyLimit, limit=engine.config.max_body_bytes)
    return app
