"""`transact serve` / `transact bench` parsers and the publish command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from transact.cli import build_parser, main
from transact.models.fast_transact import CPU_CHUNK_SIZE
from transact.serving.registry import MODEL_FILE, file_sha256, list_versions, publish_model


def test_parsers_and_help_teach(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "run", "--models", "m", "--data", str(tmp_path), "--plain"])
    assert args.plain and args.handler.__name__ == "_run"
    args = parser.parse_args(["bench", "inference", "--json", "x.json", "--sections", "transact"])
    assert args.sections == ["transact"] and args.handler.__name__ == "run_inference"
    serve = parser._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    assert "examples:" in serve.epilog and "publish" in serve.epilog


def test_publish_writes_model_and_checksum(tmp_path: Path) -> None:
    from transact.models import example_feature_spec
    from transact.serving.synthetic import write_model_file

    src = write_model_file(tmp_path / "run" / MODEL_FILE, example_feature_spec("small"))
    rc = main(
        ["serve", "publish", str(src.parent), "--models", str(tmp_path / "m"), "--version", "v7"]
    )
    assert rc == 0
    dest = tmp_path / "m" / "v7"
    assert (dest / MODEL_FILE).read_bytes() == src.read_bytes()
    assert (dest / (MODEL_FILE + ".sha256")).read_text().strip() == file_sha256(src)
    assert list_versions(tmp_path / "m") == ["v7"]


def test_inference_flags_pick_device_defaults(tmp_path: Path) -> None:
    from transact.serving.cli import _options

    parser = build_parser()
    base = ["serve", "run", "--models", "m", "--data", str(tmp_path)]
    cpu = _options(parser.parse_args(base))
    assert cpu.device == "cpu" and cpu.chunk_size == CPU_CHUNK_SIZE == 24 and not cpu.cuda_graphs
    gpu = _options(parser.parse_args([*base, "--device", "cuda", "--cuda-graphs",
                                      "--precision", "fp16"]))  # fmt: skip
    assert gpu.chunk_size == 0 and gpu.cuda_graphs and gpu.precision == "fp16"
    assert _options(parser.parse_args([*base, "--chunk-size", "64"])).chunk_size == 64
    with pytest.raises(ValueError, match="cuda_graphs=True needs a CUDA device"):
        _options(parser.parse_args([*base, "--cuda-graphs"]))


@pytest.mark.parametrize("models", ["missing", "empty"])
def test_serve_run_without_a_model_answers_503_then_serves(tmp_path: Path, models: str) -> None:
    """`transact serve run` on a missing or empty --models starts and answers 503; once a
    version is published and loaded it ranks, with the sequence reader and the user
    embeddings built for that version's FeatureSpec (seq_len 7, d_user 16: neither is a
    default of theirs), not patched after the engine is built."""
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from transact.data.world import PRESETS, generate_world, world_feature_spec
    from transact.features.store import RocksDBSequenceStore
    from transact.serving.app import create_app
    from transact.serving.cli import build_service
    from transact.serving.synthetic import write_model_file

    cfg = replace(PRESETS["tiny"], n_users=25, warmup_days=1, train_days=1, eval_days=1)
    world = generate_world(tmp_path / "world", cfg, seed=3, progress=False)
    RocksDBSequenceStore(str(tmp_path / "seq")).close()
    (tmp_path / "user_embeddings").mkdir()
    if models == "empty":
        (tmp_path / models).mkdir()
    args = build_parser().parse_args(
        ["serve", "run", "--models", str(tmp_path / models), "--data", str(world),
         "--sequence-store", str(tmp_path / "seq"), "--watch-interval", "0",
         "--user-embeddings", str(tmp_path / "user_embeddings"), "--item-cache-rows", "10"]
    )  # fmt: skip
    parts = build_service(args)
    client = TestClient(create_app(parts.engine))
    request = {"user_id": 3, "candidates": [1, 2, 5]}
    assert client.get("/readyz").status_code == 503
    response = client.post("/v1/rank", json=request)
    assert response.status_code == 503 and response.json()["field"] == "model"
    assert client.get("/metrics").status_code == 200  # scrapes before any model too

    spec = replace(world_feature_spec(cfg), seq_len=7, d_user=16)
    publish_model(write_model_file(tmp_path / "raw" / "model.pt", spec), tmp_path / models, "v1")
    assert parts.registry.reload() is not None
    response = client.post("/v1/rank", json=request)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "v1"
    assert [i["item_id"] for i in response.json()["items"]] != []
    assert parts.assembler.sequences.seq_len == 7
    assert parts.assembler.user_embeddings.d_user == 16
    assert client.get("/readyz").status_code == 200


def _bench_inference_call(monkeypatch, entry, argv: list[str]) -> tuple[dict, dict]:  # noqa: ANN001
    """Run a bench-inference entry point with the measuring process stubbed: the
    environment it would start with, and the arguments its call would pass."""
    import subprocess

    import transact.serving.bench_entry as bench_entry

    started: dict = {}
    measured: dict = {}

    def fake_run(cmd, env, check):  # noqa: ANN001, ANN202
        started.update(cmd=cmd, env=env)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(bench_entry.subprocess, "run", fake_run)
    assert entry(argv) == 0
    monkeypatch.setattr(bench_entry, "measure_inference", lambda *a: measured.update(args=a))
    assert started["cmd"][:2] == [sys.executable, "-c"]
    exec(started["cmd"][2], {})  # what the fresh process would run
    return started["env"], measured["args"]


def test_bench_inference_is_one_program_behind_both_entry_points(monkeypatch, tmp_path) -> None:
    """`transact bench inference` and benchmarks/bench_inference.py take the same flags and
    start the same measuring process: OpenMP policy and malloc in its environment."""
    from transact.serving.bench_entry import inference_main

    out = tmp_path / "out.json"
    flags = ["--json", str(out), "--sections", "transact", "--repeats", "3", "--threads", "1",
             "--omp-wait-policy", "active", "--malloc", "default"]  # fmt: skip
    cli_env, cli_call = _bench_inference_call(monkeypatch, main, ["bench", "inference", *flags])
    script_env, script_call = _bench_inference_call(monkeypatch, inference_main, flags)
    assert cli_call == script_call == (str(out), ("transact",), 3, 1)
    assert cli_env["OMP_WAIT_POLICY"] == script_env["OMP_WAIT_POLICY"] == "ACTIVE"
    assert "MALLOC_MMAP_THRESHOLD_" not in script_env
    _, tuned = _bench_inference_call(monkeypatch, inference_main, ["--json", str(out)])
    assert tuned == (str(out), ("transact", "ranker", "cuda"), 20, 0)


def test_bench_service_takes_every_flag_through_both_entry_points(monkeypatch) -> None:
    """benchmarks/bench_service.py lacked --omp-wait-policy and --default-malloc; now both
    entry points pass the same arguments to the load test."""
    import transact.serving.load as load
    from transact.serving.bench_entry import service_main

    calls: list[tuple] = []
    monkeypatch.setattr(
        load,
        "run_service_benchmark",
        lambda *a, **k: calls.append((a, k)) or {"best_rate_rps": 5.0},
    )
    flags = ["--json", "s.json", "--rates", "5", "10", "--duration", "2", "--omp-wait-policy",
             "active", "--default-malloc", "--server-threads", "1", "--concurrent-forwards", "2"]  # fmt: skip
    assert main(["bench", "service", *flags]) == 0
    assert service_main(flags) == 0
    assert calls[0] == calls[1]
    _, kwargs = calls[0]
    assert kwargs["omp_wait_policy"] == "active" and kwargs["default_malloc"] is True
    assert kwargs["rates"] == [5.0, 10.0] and kwargs["concurrent_forwards"] == 2
