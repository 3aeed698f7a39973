"""The model artifact: one format, verified on read, never unpickles code (issue 18/19)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from transact.models import Pinnability, PinnabilityConfig, example_feature_spec
from transact.models.artifact import (
    ArtifactError,
    checksum_path,
    load_model,
    read_model,
    read_torch_file,
    save_model,
    write_torch_file,
)
from transact.models.examples import example_ranker_inputs

SPEC = replace(example_feature_spec("small"), seq_len=8)


class _RunsCode:
    """Creates ``marker`` when unpickled: what a hostile file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (self.marker,))


def _hostile_file(path: Path, marker: Path, *, with_checksum: bool = True) -> None:
    buf = io.BytesIO()
    torch.save({"format": 2, "kind": "model", "weights": _RunsCode(marker)}, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    if with_checksum:  # whoever places the file can write its checksum too
        checksum_path(path).write_text(hashlib.sha256(buf.getvalue()).hexdigest())


def _model(seed: int = 0) -> Pinnability:
    torch.manual_seed(seed)
    return Pinnability(SPEC, PinnabilityConfig.preset("small")).eval()


def test_save_then_load_gives_the_same_model_and_metadata(tmp_path: Path) -> None:
    model = _model()
    md = {
        "feature_spec": SPEC.to_dict(),
        "model_config": PinnabilityConfig.preset("small").to_dict(),
        "data": {"start_ms": 1, "end_ms": 2},
    }
    sha = save_model(tmp_path / "run" / "model.pt", model, md)
    assert checksum_path(tmp_path / "run" / "model.pt").read_text().strip() == sha
    loaded, spec, metadata = load_model(tmp_path / "run")  # the run directory works too
    assert spec == SPEC and metadata == md and not loaded.training
    inputs = example_ranker_inputs(SPEC, batch_size=5, seed=1)
    with torch.no_grad():
        assert torch.equal(loaded(inputs), model(inputs))


@pytest.mark.parametrize("with_checksum", [True, False])
def test_a_file_that_would_run_code_is_refused_without_running_it(
    tmp_path: Path, with_checksum: bool
) -> None:
    marker = tmp_path / "pwned"
    _hostile_file(tmp_path / "model.pt", marker, with_checksum=with_checksum)
    with pytest.raises(ArtifactError, match="model.pt"):
        load_model(tmp_path / "model.pt")
    assert not marker.exists()


def test_evaluate_command_runs_no_code_from_the_model_file(tmp_path: Path) -> None:
    """`transact evaluate` used to load model.pt with weights_only=False."""
    from transact.cli import main

    marker = tmp_path / "pwned"
    _hostile_file(tmp_path / "run" / "model.pt", marker)
    assert main(["evaluate", "--model", str(tmp_path / "run"), "--data", str(tmp_path)]) == 2
    assert not marker.exists()


def test_damaged_and_incomplete_files_name_the_check(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    write_torch_file({"x": torch.ones(3)}, path)
    obj, _ = read_torch_file(path)
    assert torch.equal(obj["x"], torch.ones(3))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        read_torch_file(path)
    checksum_path(path).unlink()  # written last: without it the file is incomplete
    with pytest.raises(ArtifactError, match=r"checksum file model.pt.sha256 is missing"):
        read_torch_file(path)
    with pytest.raises(ArtifactError, match="no such file"):
        read_torch_file(tmp_path / "nothing.pt")


def test_a_pickle_of_another_protocol_is_one_error_and_no_warning(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    path.write_bytes(b"\x80\x04not a pickle at all" * 50)  # protocol 4's header, then junk
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ArtifactError, match="other.pt: not a loadable transact file"):
            read_torch_file(path, require_checksum=False)
    assert [str(w.message) for w in seen] == []


def test_expected_checksum_from_elsewhere_must_match_too(tmp_path: Path) -> None:
    sha = write_torch_file({"x": torch.zeros(2)}, tmp_path / "f.pt")
    read_torch_file(tmp_path / "f.pt", expected_sha256=sha)
    with pytest.raises(ArtifactError, match="expected 000000000000"):
        read_torch_file(tmp_path / "f.pt", expected_sha256="0" * 64)


def test_metadata_must_be_json_and_weights_must_fit(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="metadata is not JSON"):
        save_model(tmp_path / "a.pt", _model(), {"array": np.zeros(2)})
    md = {"feature_spec": SPEC.to_dict(), "model_config": {"preset": "small"}}
    weights = _model().state_dict()
    weights.pop(next(iter(weights)))
    save_model(tmp_path / "b.pt", weights, md)
    with pytest.raises(ArtifactError, match="weights do not fit the config"):
        load_model(tmp_path / "b.pt")
    save_model(tmp_path / "c.pt", _model(), {"model_config": {"preset": "small"}})
    with pytest.raises(ArtifactError, match="metadata has no 'feature_spec'"):
        load_model(tmp_path / "c.pt")
    save_model(tmp_path / "d.pt", _model(), {**md, "model_config": {"encoder": "gru"}})
    with pytest.raises(ArtifactError, match="bad model_config"):
        read_model(tmp_path / "d.pt").build()


def test_other_formats_are_refused_with_a_reason(tmp_path: Path) -> None:
    write_torch_file({"model": {}, "metadata": {}}, tmp_path / "old.pt")  # format 1
    with pytest.raises(ArtifactError, match="not a transact model.pt of format 2"):
        read_model(tmp_path / "old.pt")
    (tmp_path / "json.pt").write_text(json.dumps({"x": 1}))
    checksum_path(tmp_path / "json.pt").write_text(
        hashlib.sha256((tmp_path / "json.pt").read_bytes()).hexdigest()
    )
    with pytest.raises(ArtifactError, match="not a loadable transact file"):
        read_model(tmp_path / "json.pt")
