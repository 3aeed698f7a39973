"""Model versions: checksum/config verification, refusal keeps serving, hot reload under load."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tests.serving.model_files import publish_random
from transact.data.schema import FeatureSpec
from transact.serving.registry import MODEL_FILE, load_verified, publish_model
from transact.serving.service import ServiceParts
from transact.serving.synthetic import write_model_file

NOW = int(time.time() * 1000)


def _rank(service: ServiceParts, user: int = 3) -> dict:
    return service.engine.rank(user, [1, 2, 3, 4, 5], NOW, {})


def test_wrong_checksum_is_refused_and_previous_keeps_serving(
    service: ServiceParts, spec: FeatureSpec, tmp_path: Path, caplog
) -> None:
    before = _rank(service)
    vdir = publish_random(tmp_path, service.registry.models_dir, spec, "v2", seed=2)
    with open(vdir / MODEL_FILE, "r+b") as f:  # corrupt one byte after publishing
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0xFF]))
    with caplog.at_level(logging.ERROR, logger="transact.serving"):
        service.registry.reload()
    assert "REFUSED model v2: checksum mismatch" in caplog.text
    assert "still serving v1" in caplog.text
    after = _rank(service)
    assert after["model_version"] == "v1"
    assert after["items"] == before["items"]
    assert service.registry.refusals == 1
    service.registry.reload()  # the same bad file is not retried (no log spam)
    assert service.registry.refusals == 1


def test_wrong_spec_missing_checksum_and_bad_weights_are_refused(
    service: ServiceParts, spec: FeatureSpec, tmp_path: Path, caplog
) -> None:
    models = service.registry.models_dir
    other = replace(spec, d_item=16)
    publish_model(write_model_file(tmp_path / "o" / "model.pt", other), models, "v3")
    with caplog.at_level(logging.ERROR, logger="transact.serving"):
        service.registry.reload()
    assert "REFUSED model v3: FeatureSpec differs from the served one in ['d_item']" in caplog.text
    # weights that do not fit the config
    raw = write_model_file(tmp_path / "w" / "model.pt", spec)
    saved = torch.load(raw, weights_only=False)
    saved["model"].pop(next(iter(saved["model"])))
    torch.save(saved, raw)
    publish_model(raw, models, "v4")
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="transact.serving"):
        service.registry.reload()
    assert "REFUSED model v4: weights do not fit the config" in caplog.text
    assert _rank(service)["model_version"] == "v1"
    # a directory without a checksum file is not a published version at all
    (models / "v5").mkdir()
    (models / "v5" / MODEL_FILE).write_bytes(b"junk")
    service.registry.reload()
    assert _rank(service)["model_version"] == "v1"
    try:
        load_verified(models / "v5", service.registry.options)
    except Exception as exc:
        assert "checksum file" in str(exc)
    else:
        raise AssertionError("unverified model loaded")


def test_hot_reload_under_concurrent_requests(
    service: ServiceParts, spec: FeatureSpec, tmp_path: Path
) -> None:
    """Requests keep succeeding while a new version is swapped in; each names its version,
    and scores always match the version named (no request sees a half-swapped model)."""
    expected = {"v1": _rank(service, 7)["items"]}
    errors: list[BaseException] = []
    seen: list[str] = []
    started_after_swap: list[str] = []
    swapped_at = [float("inf")]
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                t0 = time.monotonic()
                out = _rank(service, 7)
                seen.append(out["model_version"])
                if t0 > swapped_at[0]:
                    started_after_swap.append(out["model_version"])
                want = expected.get(out["model_version"])
                if want is not None and want != out["items"]:
                    errors.append(AssertionError(f"{out['model_version']} scores changed"))
            except BaseException as exc:  # noqa: BLE001 - any failure fails the test
                errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    publish_random(tmp_path, service.registry.models_dir, spec, "v2", seed=2)
    handle = service.registry.reload()
    swapped_at[0] = time.monotonic()
    assert handle is not None and handle.version == "v2"
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert "v1" in seen and "v2" in seen
    assert started_after_swap and set(started_after_swap) == {"v2"}
    v2 = _rank(service, 7)
    assert v2["model_version"] == "v2" and v2["items"] != expected["v1"]


def test_publish_then_watch_thread_picks_up_new_version(
    service: ServiceParts, spec: FeatureSpec, tmp_path: Path
) -> None:
    thread = service.registry.watch(interval_s=0.05)
    try:
        publish_random(tmp_path, service.registry.models_dir, spec, "v9", seed=9)
        deadline = time.time() + 10
        while time.time() < deadline and service.registry.current().version != "v9":
            time.sleep(0.05)
        assert service.registry.current().version == "v9"
    finally:
        service.registry.stop()
        thread.join(timeout=2)
    assert np.isfinite(_rank(service)["items"][0]["score"])


def test_micro_batching_merges_concurrent_requests_with_equal_scores(
    service: ServiceParts,
) -> None:
    from transact.serving.engine import RankingEngine, ServiceConfig

    users = [3, 5, 8, 13, 21, 34]
    cands = [[(u * 7 + i) % 300 for i in range(4 + u % 5)] for u in users]
    solo = [service.engine.rank(u, c, NOW, {}) for u, c in zip(users, cands, strict=True)]
    batched = RankingEngine(
        service.registry, service.assembler, ServiceConfig(micro_batch_wait_ms=200)
    )
    barrier = threading.Barrier(len(users))
    out: dict[int, dict] = {}

    def call(i: int) -> None:
        barrier.wait()
        out[i] = batched.rank(users[i], cands[i], NOW, {})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(users))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert batched.batcher is not None and batched.batcher.batches < len(users)
    for i, want in enumerate(solo):
        got = out[i]
        assert [x["item_id"] for x in got["items"]] == [x["item_id"] for x in want["items"]]
        for a, b in zip(got["items"], want["items"], strict=True):
            assert abs(a["score"] - b["score"]) < 1e-4
    batched.batcher.stop()
