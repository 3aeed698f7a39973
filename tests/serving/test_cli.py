"""`transact serve` / `transact bench` parsers and the publish command."""

from __future__ import annotations

from pathlib import Path

import pytest

from transact.cli import build_parser, main
from transact.models.fast_transact import CPU_CHUNK_SIZE
from transact.serving.registry import MODEL_FILE, file_sha256, list_versions


def test_parsers_and_help_teach() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "run", "--models", "m", "--data", "d", "--plain"])
    assert args.plain and args.handler.__name__ == "_run"
    args = parser.parse_args(["bench", "inference", "--json", "x.json", "--sections", "transact"])
    assert args.sections == ["transact"] and args.handler.__name__ == "_bench_inference"
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


def test_inference_flags_pick_device_defaults() -> None:
    from transact.serving.cli import _options

    parser = build_parser()
    base = ["serve", "run", "--models", "m", "--data", "d"]
    cpu = _options(parser.parse_args(base))
    assert cpu.device == "cpu" and cpu.chunk_size == CPU_CHUNK_SIZE == 24 and not cpu.cuda_graphs
    gpu = _options(parser.parse_args([*base, "--device", "cuda", "--cuda-graphs",
                                      "--precision", "fp16"]))  # fmt: skip
    assert gpu.chunk_size == 0 and gpu.cuda_graphs and gpu.precision == "fp16"
    assert _options(parser.parse_args([*base, "--chunk-size", "64"])).chunk_size == 64
    with pytest.raises(SystemExit, match="cuda_graphs=True needs a CUDA device"):
        _options(parser.parse_args([*base, "--cuda-graphs"]))
    with pytest.raises(SystemExit, match="chunk_size=-1"):
        _options(parser.parse_args([*base, "--chunk-size", "-1"]))
