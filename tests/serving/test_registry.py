"""Model versions: checksum/config verification, refusal keeps serving, hot reload under load."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.serving.model_files import publish_random
from transact.data.schema import FeatureSpec
from transact.models.artifact import read_model, save_model
from transact.serving.registry import MODEL_FILE, ModelRefused, load_verified, publish_model
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
    # weights that do not fit the config (publish refuses them, so they are placed by hand)
    vdir = publish_random(tmp_path, models, spec, "v4", seed=4)
    artifact = read_model(vdir / MODEL_FILE)
    artifact.weights.pop(next(iter(artifact.weights)))
    save_model(tmp_path / "bad.pt", artifact.weights, artifact.metadata)
    with pytest.raises(ValueError, match="cannot publish .*weights do not fit the config"):
        publish_model(tmp_path / "bad.pt", models, "v4b")
    _replace_published_file(vdir, (tmp_path / "bad.pt").read_bytes())
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="transact.serving"):
        service.registry.reload()
    assert "REFUSED model v4: weights do not fit the config" in caplog.text
    assert _rank(service)["model_version"] == "v1"
    # a directory without a version record is not a published version at all
    (models / "v5").mkdir()
    (models / "v5" / MODEL_FILE).write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="transact.serving"):
        service.registry.reload()
    assert "ignoring v5" in caplog.text and "no version.json" in caplog.text
    assert _rank(service)["model_version"] == "v1"
    with pytest.raises(ModelRefused, match="model v5: not a published version"):
        load_verified(models / "v5", service.registry.options)


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


# ---------------------------------------------------------------------------------------
# Issue 18: safe loading, version order, publish checks, signatures (regression tests)
# ---------------------------------------------------------------------------------------


class _RunsCode:
    """A pickle that creates ``marker`` when unpickled (what a hostile model.pt does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        import os

        return (os.mkdir, (self.marker,))


def _replace_published_file(vdir: Path, data: bytes) -> None:
    """Swap a published model.pt for ``data`` and fix every checksum that names it, as
    someone who can write to the models directory can (the checksum proves no origin)."""
    import hashlib
    import json

    digest = hashlib.sha256(data).hexdigest()
    (vdir / MODEL_FILE).write_bytes(data)
    (vdir / (MODEL_FILE + ".sha256")).write_text(digest + "\n")
    record = vdir / "version.json"
    if record.is_file():
        meta = json.loads(record.read_text())
        meta["sha256"] = digest
        record.write_text(json.dumps(meta))


def test_a_pickle_in_a_version_dir_runs_no_code_and_is_refused(
    service: ServiceParts, spec: FeatureSpec, tmp_path: Path, caplog
) -> None:
    import io

    vdir = publish_random(tmp_path, service.registry.models_dir, spec, "v2", seed=2)
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"model": _RunsCode(marker), "metadata": {}}, buf)
    _replace_published_file(vdir, buf.getvalue())
    with caplog.at_level(logging.ERROR, logger="transact.serving"):
        service.registry.reload()
    assert not marker.exists(), "loading a published version ran code from the file"
    assert "REFUSED model v2" in caplog.text
    assert _rank(service)["model_version"] == "v1"


def test_v10_is_served_after_v9_and_the_choice_is_logged(
    service: ServiceParts, spec: FeatureSpec, tmp_path: Path, caplog
) -> None:
    models = service.registry.models_dir
    publish_random(tmp_path, models, spec, "v9", seed=9)
    assert service.registry.reload().version == "v9"
    publish_random(tmp_path, models, spec, "v10", seed=10)
    with caplog.at_level(logging.INFO, logger="transact.serving"):
        handle = service.registry.reload()
    assert handle is not None and handle.version == "v10"
    assert _rank(service)["model_version"] == "v10"
    assert "serving model v10" in caplog.text and "sequence 3" in caplog.text
    assert "previous v9" in caplog.text


def test_publish_order_wins_over_names_at_start(spec: FeatureSpec, tmp_path: Path) -> None:
    from transact.serving.ranker import InferenceOptions
    from transact.serving.registry import ModelRegistry

    models = tmp_path / "models"
    for version in ("b-latest", "a-newer", "2026-01-02"):  # published in this order
        publish_random(tmp_path, models, spec, version, seed=len(version))
    handle = ModelRegistry(models, InferenceOptions.plain()).reload()
    assert handle is not None and handle.version == "2026-01-02"


@pytest.mark.parametrize("version", ["v 1", "v1 ", "\tv1", "v1\n", "v\x001", "v\x7f", "..", ""])
def test_publish_rejects_names_with_whitespace_or_control_characters(
    spec: FeatureSpec, tmp_path: Path, version: str
) -> None:
    raw = write_model_file(tmp_path / "raw" / "model.pt", spec)
    with pytest.raises(ValueError, match="version"):
        publish_model(raw, tmp_path / "models", version)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


@pytest.mark.parametrize("content", [b"", b"junk" * 100, b"PK\x03\x04truncated"])
def test_publish_refuses_a_file_that_does_not_load(tmp_path: Path, content: bytes) -> None:
    src = tmp_path / "run" / MODEL_FILE
    src.parent.mkdir()
    src.write_bytes(content)
    with pytest.raises(ValueError, match="cannot publish"):
        publish_model(src, tmp_path / "models", "v1")
    assert not (tmp_path / "models" / "v1" / "version.json").exists()


def test_publish_refuses_to_overwrite_a_published_version(spec: FeatureSpec, tmp_path: Path):
    publish_random(tmp_path, tmp_path / "models", spec, "v1", seed=1)
    before = (tmp_path / "models" / "v1" / MODEL_FILE).read_bytes()
    with pytest.raises(ValueError, match="published already"):
        publish_random(tmp_path, tmp_path / "models", spec, "v1", seed=2)
    assert (tmp_path / "models" / "v1" / MODEL_FILE).read_bytes() == before


def test_signed_versions_when_a_key_is_set(
    spec: FeatureSpec, tmp_path: Path, monkeypatch, caplog
) -> None:
    from transact.serving.ranker import InferenceOptions
    from transact.serving.registry import KEY_ENV, ModelRegistry

    models = tmp_path / "models"
    monkeypatch.setenv(KEY_ENV, "the key")
    publish_random(tmp_path, models, spec, "signed", seed=1)
    monkeypatch.delenv(KEY_ENV)
    publish_random(tmp_path, models, spec, "unsigned", seed=2)
    monkeypatch.setenv(KEY_ENV, "other key")
    publish_random(tmp_path, models, spec, "wrong-key", seed=3)
    monkeypatch.setenv(KEY_ENV, "the key")
    registry = ModelRegistry(models, InferenceOptions.plain())
    with caplog.at_level(logging.ERROR, logger="transact.serving"):
        assert registry.reload().version == "signed"  # the two newer ones are refused
    assert "REFUSED model wrong-key: signature does not match" in caplog.text
    assert "REFUSED model unsigned: unsigned" in caplog.text
    with pytest.raises(ModelRefused, match="unsigned"):  # a direct load reads the key too
        load_verified(models / "unsigned", InferenceOptions.plain())
    assert load_verified(models / "unsigned", InferenceOptions.plain(), key=None).version
    # a signed version whose file is swapped afterwards fails the signature, not only the sum
    publish_random(tmp_path, models, spec, "tampered", seed=4)
    _replace_published_file(models / "tampered", (models / "unsigned" / MODEL_FILE).read_bytes())
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="transact.serving"):
        assert registry.reload().version == "signed"
    assert "REFUSED model tampered: signature does not match" in caplog.text
    # without the key only the checksums are checked, and the edited version passes them:
    # a checksum proves integrity, not origin
    monkeypatch.delenv(KEY_ENV)
    assert ModelRegistry(models, InferenceOptions.plain()).reload().version == "tampered"


def _calibration(spec: FeatureSpec):
    from transact.evaluation.calibration import Calibration

    h = len(spec.heads)
    return Calibration(
        tuple(spec.heads), 0.1, "independent", slope=(0.8,) * h, intercept=(-0.3,) * h
    )


def test_a_model_with_a_calibration_serves_calibrated_probabilities(
    spec: FeatureSpec, tmp_path: Path
) -> None:
    """``transact train`` writes the calibration into the metadata; the loaded ranker
    serves ``calibration(sigmoid(logits))``, a model without one the raw sigmoid, and a
    calibration that does not fit the model is refused naming it."""
    from tests.serving.test_ranker import _request
    from transact.models.artifact import update_metadata
    from transact.serving.ranker import InferenceOptions

    raw_file = write_model_file(tmp_path / "raw" / "model.pt", spec, "small", seed=1)
    plain = load_verified(publish_model(raw_file, tmp_path / "m", "v1"), InferenceOptions())
    cal = _calibration(spec)
    update_metadata(raw_file, {"calibration": cal.to_dict()})
    handle = load_verified(publish_model(raw_file, tmp_path / "m", "v2"), InferenceOptions())
    assert plain.ranker.calibration is None and handle.ranker.calibration == cal
    req = _request(spec)
    raw, served = plain.ranker.score(req), handle.ranker.score(req)
    assert torch.allclose(served, cal.apply_torch(raw), atol=1e-6)
    # the correction pulls down-sampled probabilities down: keep rate 0.1 inflates them
    assert float(served.mean()) < float(raw.mean()) - 0.05
    many = handle.ranker.score_many([req, req])
    assert torch.allclose(many[1], served, atol=1e-6)

    bad = cal.to_dict() | {"heads": ["a", "b"]}
    if len(spec.heads) == 2:
        bad["heads"] = ["x", "y", "z"]
    update_metadata(raw_file, {"calibration": bad})
    with pytest.raises(ModelRefused, match="v3: .*calibration"):
        load_verified(publish_model(raw_file, tmp_path / "m", "v3"), InferenceOptions())
