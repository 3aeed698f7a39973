"""The files a run writes and every stage reads back: ``model.pt`` and training checkpoints.

One format, one writer and one loader (the only ``torch.load`` in the package):

* :func:`write_torch_file` saves plain containers of tensors atomically (temp file in the
  same directory, fsync, rename, fsync of the directory) and then writes the sidecar
  ``<file>.sha256``, also atomically. The checksum is written LAST, so a file without one
  is incomplete, and a file that does not match it is damaged.
* :func:`read_torch_file` reads the bytes once, checks them against the sidecar and
  unpickles those same bytes with ``torch.load(weights_only=True)``: the restricted
  unpickler that builds only tensors and plain containers (dict, list, tuple, str, int,
  float, bool, None), so a file someone places next to ours cannot run code.
* :func:`save_model` / :func:`load_model` are the model artifact on top of them::

      {"format": 2, "kind": "model", "weights": state_dict, "metadata_json": "<JSON>"}

  The metadata (the FeatureSpec, the Pinnability config, the run config, the data window)
  is JSON text, so nothing in it is unpickled either. :func:`load_model` rebuilds the
  Pinnability from it and loads the weights strictly.

Training writes these files (``training/``), evaluation and serving read them; they live
here, in ``models/``, so no stage imports a stage above it to use them. The checksum
proves integrity, not origin: the serving registry adds an HMAC signature per version.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from transact.data.schema import FeatureSpec
from transact.models.pinnability import Pinnability, PinnabilityConfig

T = TypeVar("T")

MODEL_FILE = "model.pt"
CHECKSUM_SUFFIX = ".sha256"
ARTIFACT_FORMAT = 2


class ArtifactError(ValueError):
    """A file is missing, incomplete, damaged or not in the expected format.

    The message names the file and the check that failed.
    """


def checksum_path(path: str | Path) -> Path:
    """The sidecar of ``path``: ``<path>.sha256`` (hex SHA-256 of the file, one line)."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # make the renames themselves durable
    finally:
        os.close(fd)


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir, fsync, rename.

    A reader sees the old file or the new one, never a torn one, whenever the writer is
    killed (SIGKILL included). Temp files are ``.<name>.tmp-<pid>``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_torch_file(obj: Mapping[str, Any], path: str | Path) -> str:
    """``torch.save`` ``obj`` to ``path`` atomically, then its checksum; returns the SHA-256.

    ``obj`` must hold only tensors and plain containers/scalars: that is all
    :func:`read_torch_file` loads back (numpy arrays and other objects are refused there).
    """
    buf = io.BytesIO()
    torch.save(dict(obj), buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(data, path)
    atomic_write_bytes((digest + "\n").encode(), checksum_path(path))
    return digest


def read_checksum(path: str | Path) -> str:
    """The SHA-256 recorded in ``path``'s sidecar; ``ArtifactError`` when there is none."""
    sidecar = checksum_path(path)
    try:
        text = sidecar.read_text(errors="replace").strip()
    except FileNotFoundError:
        raise ArtifactError(
            f"{path}: checksum file {sidecar.name} is missing (the file is incomplete, or "
            "was not written by transact)"
        ) from None
    return text.split()[0] if text else ""


def read_torch_file(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    expected_sha256: str | None = None,
    require_checksum: bool = True,
) -> tuple[dict[str, Any], str]:
    """Verify and load a file written by :func:`write_torch_file`; returns ``(obj, sha256)``.

    Args:
        path: the file.
        map_location: where tensors go.
        expected_sha256: a checksum recorded elsewhere (the registry's version record);
            the file must match it as well as its sidecar.
        require_checksum: False only for files of older formats that have no sidecar
            (they are still loaded with ``weights_only=True``).

    Raises:
        ArtifactError: missing file or sidecar, checksum mismatch, or contents that the
            restricted unpickler refuses (a pickle that would run code) or cannot parse.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such file") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read: {exc}") from exc
    got = hashlib.sha256(data).hexdigest()
    if require_checksum or checksum_path(path).exists():
        want = read_checksum(path)
        if got != want:
            raise ArtifactError(
                f"{path}: checksum mismatch (file sha256 {got[:12]}..., "
                f"{checksum_path(path).name} says {want[:12] or 'nothing'}...)"
            )
    if expected_sha256 is not None and got != expected_sha256:
        raise ArtifactError(
            f"{path}: checksum mismatch (file sha256 {got[:12]}..., "
            f"expected {expected_sha256[:12]}...)"
        )
    try:
        with warnings.catch_warnings():
            # torch warns of a pickle protocol it does not write before it refuses or loads
            # such a file; a file not ours then gets the one error below, not a warning too
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            obj = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # any parse failure or refused global is the same user error
        raise ArtifactError(f"{path}: not a loadable transact file: {_first_line(exc)}") from exc
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path}: holds a {type(obj).__name__}, expected a dict")
    return obj, got


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def model_file(path: str | Path) -> Path:
    """``RUN/model.pt`` for a run directory, or the file itself."""
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path


def save_model(
    path: str | Path,
    model: torch.nn.Module | Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any],
) -> str:
    """Write a model artifact: ``model``'s weights plus ``metadata`` as JSON; returns its SHA-256.

    ``metadata`` must be JSON-serializable; :func:`load_model` needs ``feature_spec``
    (``FeatureSpec.to_dict()``) and ``model_config`` (``PinnabilityConfig.to_dict()``).
    """
    weights = model.state_dict() if isinstance(model, torch.nn.Module) else dict(model)
    try:
        metadata_json = json.dumps(dict(metadata), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: metadata is not JSON: {exc}") from exc
    return write_torch_file(
        {
            "format": ARTIFACT_FORMAT,
            "kind": "model",
            "weights": weights,
            "metadata_json": metadata_json,
        },
        path,
    )


@dataclass(frozen=True)
class ModelArtifact:
    """A verified ``model.pt`` read back: weights, metadata and the file's SHA-256.

    Nothing is built yet, so a caller can check the metadata (the serving registry
    compares FeatureSpecs) before paying for the model.
    """

    path: Path
    weights: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    sha256: str

    def feature_spec(self) -> FeatureSpec:
        """The FeatureSpec the model was trained on (``ArtifactError`` if absent or bad)."""
        return self._parse("feature_spec", FeatureSpec.from_dict)

    def model_config(self) -> PinnabilityConfig:
        """The model's :class:`PinnabilityConfig` (``ArtifactError`` if absent or bad)."""
        return self._parse("model_config", lambda d: PinnabilityConfig.from_dict(dict(d)))

    def _parse(self, key: str, parse: Callable[[Any], T]) -> T:
        if key not in self.metadata:
            raise ArtifactError(f"{self.path}: metadata has no {key!r}; not a transact model")
        try:
            return parse(self.metadata[key])
        except Exception as exc:  # any malformed table is the same refusal
            raise ArtifactError(f"{self.path}: bad {key} in metadata: {exc}") from exc

    def build(self, device: str | torch.device = "cpu") -> Pinnability:
        """The Pinnability of the metadata with these weights (strict), in eval mode."""
        spec = self.feature_spec()
        config = self.model_config()
        model = Pinnability(spec, config)
        try:
            model.load_state_dict(self.weights, strict=True)
        except Exception as exc:
            raise ArtifactError(
                f"{self.path}: weights do not fit the config: {_first_line(exc)}"
            ) from exc
        return model.to(device).eval()


def read_model(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    expected_sha256: str | None = None,
) -> ModelArtifact:
    """Verify and read a model artifact (``model.pt`` or its run directory)."""
    file = model_file(path)
    obj, sha = read_torch_file(file, map_location=map_location, expected_sha256=expected_sha256)
    if obj.get("kind") != "model" or obj.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(
            f"{file}: not a transact model.pt of format {ARTIFACT_FORMAT} "
            f"(kind {obj.get('kind')!r}, format {obj.get('format')!r}); retrain or re-save it"
        )
    weights, text = obj.get("weights"), obj.get("metadata_json")
    if not isinstance(weights, dict) or not isinstance(text, str):
        raise ArtifactError(f"{file}: no weights or metadata")
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{file}: metadata is not JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{file}: metadata is not a JSON object")
    return ModelArtifact(file, weights, metadata, sha)


def update_metadata(path: str | Path, extra: Mapping[str, Any]) -> str:
    """Rewrite a verified model artifact with ``extra`` merged into its metadata (atomic,
    a new checksum); returns the new SHA-256. Used to add what is known only after
    training, e.g. the run's calibration."""
    artifact = read_model(path)
    return save_model(artifact.path, artifact.weights, {**artifact.metadata, **extra})


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, FeatureSpec, dict[str, Any]]:
    """Rebuild a trained Pinnability from ``model.pt`` (or its run dir), in eval mode.

    Returns ``(model, feature_spec, metadata)``. Raises ``FileNotFoundError`` when there is
    no file, :class:`ArtifactError` when it does not verify or does not fit.
    """
    file = model_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no trained model (run `transact train` first)")
    artifact = read_model(file, map_location=device)
    model = artifact.build(device)
    return model, artifact.feature_spec(), artifact.metadata
