"""HTTP API: ranking, bad input (4xx naming the field, never 500), degraded mode, metrics."""

from __future__ import annotations

import time

import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import hostile_json
from transact.serving.app import create_app
from transact.serving.engine import ServiceConfig
from transact.serving.service import ServiceParts

N_ITEMS = 300  # conftest.N_ITEMS

NOW = int(time.time() * 1000)


@pytest.fixture()
def client(service: ServiceParts) -> TestClient:
    return TestClient(create_app(service.engine), raise_server_exceptions=False)


def test_rank_orders_by_utility_weighted_score(client: TestClient, service: ServiceParts) -> None:
    cands = [5, 17, 42, 99, 5, 250]
    r = client.post("/v1/rank", json={"user_id": 3, "candidates": cands, "request_time_ms": NOW})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "v1" and body["degraded"] is False
    assert sorted(i["item_id"] for i in body["items"]) == sorted(cands)
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    u = body["utility"]
    for item in body["items"]:
        p = item["probabilities"]
        assert set(p) == set(body["heads"])
        assert all(0.0 < v < 1.0 for v in p.values())
        assert item["score"] == pytest.approx(sum(u[h] * p[h] for h in p), abs=1e-5)
    dup = [i["score"] for i in body["items"] if i["item_id"] == 5]
    assert dup[0] == pytest.approx(dup[1], abs=1e-5)  # same item, same user: same score


def test_rank_matches_plain_model_forward(client: TestClient, service: ServiceParts) -> None:
    """The service's optimized forward equals the model's own eager forward on full rows."""
    cands = list(range(0, 60, 3))
    body = client.post(
        "/v1/rank", json={"user_id": 11, "candidates": cands, "request_time_ms": NOW}
    ).json()
    handle = service.registry.current()
    assembled = service.assembler.assemble(11, torch.tensor(cands).numpy(), NOW, {})
    plain = handle.ranker.model  # optimized copy; rebuild the plain model from the file
    from transact.serving.ranker import InferenceOptions, ServingRanker

    ref = ServingRanker(plain, InferenceOptions.plain())
    ref.model.sequence_encoder = _original_encoder(service)
    probs = ref.score(assembled.tensors)
    by_id = {i["item_id"]: i["probabilities"] for i in body["items"]}
    for row, item in enumerate(cands):
        got = torch.tensor([by_id[item][h] for h in body["heads"]])
        assert torch.allclose(got, probs[row], atol=1e-5)


def _original_encoder(service: ServiceParts) -> torch.nn.Module:
    from transact.serving.registry import load_verified

    handle = service.registry.current()
    vdir = service.registry.models_dir / handle.version
    from transact.serving.ranker import InferenceOptions

    plain = load_verified(vdir, InferenceOptions.plain())
    return plain.ranker.model.sequence_encoder


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"candidates": [1, 2]}, "user_id"),
        ({"user_id": 1}, "candidates"),
        ({"user_id": 1, "candidates": []}, "candidates"),
        ({"user_id": 1, "candidates": [1, N_ITEMS + 5]}, "candidates[1]"),
        ({"user_id": 1, "candidates": [-3]}, "candidates[0]"),
        ({"user_id": 1, "candidates": [4, 2**70]}, "candidates[1]"),
        ({"user_id": 2**70, "candidates": [1]}, "user_id"),
        ({"user_id": -1, "candidates": [1]}, "user_id"),
        ({"user_id": "abc", "candidates": [1]}, "user_id"),
        ({"user_id": 1, "candidates": ["x"]}, "candidates[0]"),
        ({"user_id": 1, "candidates": [1], "request_time_ms": -5}, "request_time_ms"),
        ({"user_id": 1, "candidates": [1], "request_time_ms": 10**20}, "request_time_ms"),
        ({"user_id": 1, "candidates": [1], "request_time_ms": 1234.5}, "request_time_ms"),
        ({"user_id": 1, "candidates": [1], "context": {"nope": 1}}, "context.nope"),
        ({"user_id": 1, "candidates": [1], "context": {"surface": 99}}, "context.surface"),
        ({"user_id": 1, "candidates": [1], "context": {"surface": 1.5}}, "context.surface"),
        ({"user_id": 1, "candidates": [1], "context": {"country": 1}}, "context.country"),
        ({"user_id": 1, "candidates": [1], "extra": 1}, "extra"),
    ],
)
def test_bad_input_is_4xx_naming_the_field(client: TestClient, payload: dict, field: str) -> None:
    r = client.post("/v1/rank", json=payload)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json()["field"] == field, r.json()


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"user_id": 1, "candidates": [1], "request_time_ms": NaN}',
        b'{"user_id": 1, "candidates": [1], "context": {"surface": NaN}}',
        b'{"user_id": 1, "candidates": [1], "request_time_ms": Infinity}',
        b"[1, 2, 3]",
        b"",
    ],
)
def test_malformed_and_nan_bodies_are_4xx(client: TestClient, raw: bytes) -> None:
    r = client.post("/v1/rank", content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json()["field"]


def test_too_many_candidates_and_huge_body(service: ServiceParts) -> None:
    service.engine.config = ServiceConfig(max_candidates=50, max_body_bytes=4096)
    client = TestClient(create_app(service.engine), raise_server_exceptions=False)
    r = client.post("/v1/rank", json={"user_id": 1, "candidates": list(range(51))})
    assert r.status_code == 422 and r.json()["field"] == "candidates"
    assert "50" in r.json()["error"]
    big = b'{"user_id": 1, "candidates": [' + b"1," * 5000 + b"1]}"
    r = client.post("/v1/rank", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body"

    def chunks():  # no content-length: the limit applies to the stream
        for _ in range(10):
            yield b" " * 1000

    r = client.post("/v1/rank", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_store_down_degrades_instead_of_failing(client: TestClient, service: ServiceParts) -> None:
    payload = {"user_id": 4, "candidates": [1, 2, 3], "request_time_ms": NOW}
    ok = client.post("/v1/rank", json=payload).json()
    service.assembler.sequences.down = True
    r = client.post("/v1/rank", json=payload)
    assert r.status_code == 200
    body = r.json()
    assert body["degraded"] is True and body["degraded_sources"] == ["realtime_sequence"]
    assert len(body["items"]) == 3
    # an empty sequence must score like the model does for a user without history
    empty = service.assembler.assemble(4, torch.tensor([1, 2, 3]).numpy(), NOW, {})
    assert int(empty.tensors.action_types.abs().sum()) == 0
    assert ok["items"] != body["items"]  # the sequence mattered before the outage
    metrics = client.get("/metrics").text
    assert 'transact_degraded_requests_total{source="realtime_sequence"} 1.0' in metrics


def test_health_ready_metrics_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["model_version"] == "v1"
    for _ in range(3):
        client.post("/v1/rank", json={"user_id": 2, "candidates": [1, 2, 3, 4]})
    client.post("/v1/rank", json={"user_id": 2, "candidates": [N_ITEMS]})
    text = client.get("/metrics").text
    assert 'transact_rank_requests_total{outcome="ok"} 3.0' in text
    assert 'transact_rank_requests_total{outcome="bad_request"} 1.0' in text
    assert "transact_forward_batch_candidates_count 3.0" in text
    assert 'transact_model_info{version="v1"} 1.0' in text
    assert 'transact_item_cache_hit_rate{tier="memory"}' in text
    spec = client.get("/openapi.json").json()
    assert "/v1/rank" in spec["paths"]


def test_item_cache_tiers_count_hits(service: ServiceParts) -> None:
    cache = service.assembler.items.cache
    ids = torch.arange(0, 120).numpy()  # more than the 50-row memory tier
    before = cache.stats.misses
    a = cache.get(ids)
    assert cache.stats.misses - before == 120
    b = cache.get(ids)  # the LRU holds the last 50; the rest come from RocksDB
    assert cache.stats.memory_hits >= 50 and cache.stats.disk_hits >= 70
    assert (a == b).all()
    expected = service.assembler.items._load_rows(ids)
    assert (a == expected).all()


_fields = {
    "user_id": st.one_of(st.integers(-5, 2**65), st.booleans(), st.just("7")),
    "candidates": st.lists(st.one_of(st.integers(-3, 400), st.booleans()), max_size=6),
    "request_time_ms": st.one_of(st.integers(-(2**64), 2**64), st.just(NOW)),
    "context": st.dictionaries(
        st.one_of(st.sampled_from(["surface", "hour_of_day", "country", "x"]), hostile_json.text),
        hostile_json.json_values,
        max_size=3,
    ),
}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=hostile_json.hostile_payloads(_fields))
def test_hostile_bodies_get_200_or_the_documented_4xx_never_500(
    client: TestClient, raw: bytes
) -> None:
    """Property (issue 18): arbitrary JSON, lone surrogates, invalid UTF-8, deep nesting,
    huge numbers, random bytes: a 200 or a 4xx of shape {"error", "field"}; nothing is
    counted as a server error."""
    r = client.post("/v1/rank", content=raw, headers={"content-type": "application/json"})
    assert r.status_code in (200, 413, 422), (r.status_code, r.text[:300], raw[:200])
    if r.status_code != 200:
        body = r.json()
        assert set(body) == {"error", "field"} and body["field"], body
    assert 'outcome="error"' not in client.get("/metrics").text


# --- issue 18 item 5: every bad request gets the documented {"error", "field"} 4xx -------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"user_id": 1, "candidates": [1], "context": {"\\ud800": 1}}', "body"),
        (b'{"user_id": 1, "candidates": [1], "context": {"\\udc80x": 1}}', "body"),
        (b'{"user_id": 1, "candidates": [1], "context": {"\xff\xfe": 1}}', "body"),
        (b'{"user_id": 1, "candidates": [1], "x": ' + b"[" * 2000 + b"]" * 2000 + b"}", "body"),
        (b'{"user_id": 1, "candidates": ' + b"[" * 300 + b"]" * 300 + b"}", "body"),
        (b'{"user_id": ' + b"9" * 5000 + b', "candidates": [1]}', "body"),
        (b'{"user_id": 1, "candidates": [1], "context": {"surface\\ud800": 1}}', "body"),
    ],
)
def test_surrogates_invalid_utf8_deep_nesting_huge_numbers_get_the_4xx_shape(
    client: TestClient, raw: bytes, field: str
) -> None:
    r = client.post("/v1/rank", content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"error", "field"}, body
    assert body["field"] == field
    assert client.post("/v1/rank", json={"user_id": 1, "candidates": [1]}).status_code == 200


def test_error_text_that_cannot_be_utf8_is_escaped_not_a_500(
    client: TestClient, service: ServiceParts
) -> None:
    """A client string echoed in an error (an unknown context name) may hold a lone
    surrogate even after JSON parsing (Python callers); the reply escapes it."""
    from transact.serving.app import error_response

    r = error_response(422, "context.a\ud800", "unknown context feature 'a\ud800'")
    assert r.status_code == 422
    import json

    body = json.loads(r.body)
    assert body["field"] == "context.a\\ud800"
    assert "\\ud800" in body["error"]
    with pytest.raises(Exception):  # noqa: B017 - the engine sees the raw name
        service.engine.rank(1, [1], None, {"a\ud800": 1.0})


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"user_id": True, "candidates": [1]}, "user_id"),
        ({"user_id": "7", "candidates": [1]}, "user_id"),
        ({"user_id": 7.0, "candidates": [1]}, "user_id"),
        ({"user_id": 1, "candidates": [1, False]}, "candidates[1]"),
        ({"user_id": 1, "candidates": ["3"]}, "candidates[0]"),
        ({"user_id": 1, "candidates": [1], "request_time_ms": "1764158400000"}, "request_time_ms"),
        ({"user_id": 1, "candidates": [1], "context": {"surface": True}}, "context.surface"),
        ({"user_id": 1, "candidates": [1], "context": {"surface": "1"}}, "context.surface"),
    ],
)
def test_booleans_and_numeric_strings_are_not_ids_as_in_the_stream(
    client: TestClient, payload: dict, field: str
) -> None:
    r = client.post("/v1/rank", json=payload)
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.json()["field"] == field, r.json()


def test_every_client_error_is_counted_as_bad_request(client: TestClient) -> None:
    client.post("/v1/rank", content=b"{not json", headers={"content-type": "application/json"})
    client.post("/v1/rank", json={"user_id": True, "candidates": [1]})
    client.post("/v1/rank", json={"user_id": 1, "candidates": [N_ITEMS]})
    text = client.get("/metrics").text
    assert 'transact_rank_requests_total{outcome="bad_request"} 3.0' in text
    assert 'outcome="error"' not in text


# --- issue 18 item 3: admin endpoints need a token ---------------------------------------

TOKEN = "s3cret-admin-token-0123456789"


def _publish_v2(service: ServiceParts, spec, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.serving.model_files import publish_random

    publish_random(tmp_path, service.registry.models_dir, spec, "v2", seed=2)


def test_admin_reload_is_off_without_a_configured_token(
    client: TestClient, service: ServiceParts, spec, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    _publish_v2(service, spec, tmp_path)
    for headers in ({}, {"authorization": f"Bearer {TOKEN}"}):
        r = client.post("/v1/admin/reload", headers=headers)
        assert r.status_code == 404, r.text
        assert set(r.json()) == {"error", "field"}
    assert service.registry.current().version == "v1"
    assert service.registry.reloads == 1  # the initial load only


def test_admin_reload_needs_the_token_compared_in_constant_time(
    service: ServiceParts, spec, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import hmac

    from transact.serving import app as app_module

    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a, b):  # type: ignore[no-untyped-def]
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(app_module.hmac, "compare_digest", spy)
    client = TestClient(create_app(service.engine, admin_token=TOKEN), raise_server_exceptions=True)
    _publish_v2(service, spec, tmp_path)
    bad = [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Bearer {TOKEN}x"},
        {"authorization": TOKEN},  # no scheme
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": "Bearer \u00e9\u00e8".encode()},  # raw non-ASCII bytes
    ]
    for headers in bad:
        r = client.post("/v1/admin/reload", headers=headers)
        assert r.status_code == 401, (headers, r.status_code, r.text)
        assert r.json()["field"] == "authorization"
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert service.registry.current().version == "v1"
    assert len(calls) >= 3 and all(isinstance(a, bytes) for a, _ in calls)
    r = client.post("/v1/admin/reload", headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.json() == {"model_version": "v2"}
    assert service.registry.current().version == "v2"


def test_a_short_admin_token_is_refused(service: ServiceParts) -> None:
    with pytest.raises(ValueError, match="admin token"):
        create_app(service.engine, admin_token="short")


def test_admin_token_comes_from_a_file_or_the_environment(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from transact.serving.app import ADMIN_TOKEN_ENV, load_admin_token

    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    assert load_admin_token(None) is None  # off by default
    monkeypatch.setenv(ADMIN_TOKEN_ENV, TOKEN)
    assert load_admin_token(None) == TOKEN
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}-file \nsecond line\n")
    assert load_admin_token(str(path)) == f"{TOKEN}-file"  # the file wins over the env
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        load_admin_token(str(path))


def test_non_json_content_type_is_415_with_the_error_shape(client: TestClient) -> None:
    r = client.post(
        "/v1/rank",
        content=b'{"user_id": 1, "candidates": [1]}',
        headers={"content-type": "text/plain"},
    )
    assert r.status_code == 415 and r.json()["field"] == "content-type"
    r = client.post(
        "/v1/rank",
        content=b'{"user_id": 1, "candidates": [1]}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 200, r.text
