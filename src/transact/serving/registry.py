"""Model versions for serving: publish, verify on load, serve the newest, swap atomically.

Layout of a models directory (the twice-weekly retrain publishes a new version into it)::

    MODELS/2026-11-26T12-00/model.pt          # the trained model (models/artifact.py format)
    MODELS/2026-11-26T12-00/model.pt.sha256   # its SHA-256
    MODELS/2026-11-26T12-00/version.json      # written LAST: sequence, time, sha256, signature

:func:`publish_model` checks the version name (plain ASCII: letters, digits, ``.``, ``_``,
``-``, ``+``; no whitespace or control characters), refuses to overwrite a published
version, loads the model once (a file that does not load is never published), copies it
in and writes ``version.json`` last, atomically, so a half-copied version is never
loadable. ``version.json`` carries a publish ``sequence`` (one more than the highest
published, under a lock), so versions are ordered by publish order, never by name:
``v10`` after ``v9``. With ``TRANSACT_MODEL_KEY`` set, publish signs the record with an
HMAC-SHA256 and the registry refuses unsigned or badly signed versions: the checksum alone
proves integrity, the signature proves that someone holding the key published it.

:func:`load_verified` refuses a version whose record or signature is missing or wrong,
whose file does not match its checksum, whose metadata lacks the model config or
FeatureSpec, whose FeatureSpec differs from the one the service was started with (its
feature stores are built for it), whose weights do not load strictly, or whose smoke
forward is not finite. The file is read with ``torch.load(weights_only=True)``
(:func:`transact.models.artifact.read_model`), so a file placed in a version directory
cannot run code. :class:`ModelRegistry` serves the verified version with the highest
sequence as one immutable :class:`ModelHandle` and logs which one and why, at start and
at every switch; a request reads the handle once and uses it to the end, so a swap never
changes a model under a request in flight, and a refused version leaves the previous one
serving.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from transact.data.schema import FeatureSpec
from transact.models.artifact import (
    CHECKSUM_SUFFIX,
    MODEL_FILE,
    ArtifactError,
    atomic_write_bytes,
    file_sha256,
    model_file,
    read_model,
)
from transact.pipeline.calibrate import calibration_of
from transact.serving.ranker import InferenceOptions, ServingRanker

log = logging.getLogger("transact.serving")

__all__ = [
    "CHECKSUM_SUFFIX",
    "KEY_ENV",
    "MODEL_FILE",
    "RECORD_FILE",
    "ModelHandle",
    "ModelRefused",
    "ModelRegistry",
    "VersionRecord",
    "file_sha256",
    "list_versions",
    "load_verified",
    "publish_model",
    "scan_versions",
]

RECORD_FILE = "version.json"
KEY_ENV = "TRANSACT_MODEL_KEY"
"""Environment variable holding the HMAC key that signs and checks published versions."""

_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_LOCK_FILE = ".publish.lock"


class ModelRefused(RuntimeError):
    """A model version failed verification; the message says which check and why."""


@dataclass(frozen=True)
class ModelHandle:
    """One loaded, verified model version: what a request scores with from start to end."""

    version: str
    ranker: ServingRanker
    spec: FeatureSpec
    sha256: str
    loaded_at: float
    sequence: int = 0
    utility: Mapping[str, float] = field(default_factory=dict)
    """u_h by head of the model's run config (``[heads] utility``): S's weights by default."""


@dataclass(frozen=True)
class VersionRecord:
    """``version.json`` of a published version: what publish vouches for.

    Args:
        version: the directory name.
        sequence: publish order (1, 2, ...); the registry serves the highest that verifies.
        published_at_ms: wall-clock publish time (for people; ordering uses ``sequence``).
        sha256: SHA-256 of ``model.pt``.
        signature: hex HMAC-SHA256 of the other fields under ``TRANSACT_MODEL_KEY``, or
            None when published without a key.
    """

    version: str
    sequence: int
    published_at_ms: int
    sha256: str
    signature: str | None = None

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers (every field but the signature)."""
        body = {
            "version": self.version,
            "sequence": self.sequence,
            "published_at_ms": self.published_at_ms,
            "sha256": self.sha256,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> str:
        body = json.loads(self.signed_bytes())
        if self.signature is not None:
            body["signature"] = self.signature
        return json.dumps(body, indent=1, sort_keys=True) + "\n"

    @classmethod
    def read(cls, version_dir: Path) -> VersionRecord:
        """Parse ``version_dir/version.json``; ``ValueError`` names what is wrong."""
        path = version_dir / RECORD_FILE
        try:
            raw = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{RECORD_FILE} unreadable: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{RECORD_FILE} is not a JSON object")
        kinds = {"sequence": int, "published_at_ms": int, "sha256": str}
        for key, kind in kinds.items():
            if not isinstance(raw.get(key), kind) or isinstance(raw.get(key), bool):
                raise ValueError(f"{RECORD_FILE}: {key} is missing or not {kind.__name__}")
        signature = raw.get("signature")
        if signature is not None and not isinstance(signature, str):
            raise ValueError(f"{RECORD_FILE}: signature is not a string")
        if raw.get("version") != version_dir.name:
            raise ValueError(
                f"{RECORD_FILE} names version {raw.get('version')!r}, not {version_dir.name!r}"
            )
        return cls(
            version_dir.name, raw["sequence"], raw["published_at_ms"], raw["sha256"], signature
        )


def signing_key() -> bytes | None:
    """The HMAC key from ``TRANSACT_MODEL_KEY`` (None when unset; empty is an error)."""
    value = os.environ.get(KEY_ENV)
    if value is None:
        return None
    if not value:
        raise ValueError(f"{KEY_ENV} is set but empty; unset it or give a key")
    return value.encode()


def _sign(record: VersionRecord, key: bytes) -> str:
    return hmac.new(key, record.signed_bytes(), "sha256").hexdigest()


def check_version_name(version: str) -> None:
    """Raise ``ValueError`` unless ``version`` is a safe directory name (see module doc)."""
    if not isinstance(version, str) or not _VERSION_NAME.fullmatch(version):
        raise ValueError(
            f"version {version!r}: use 1-128 ASCII letters, digits, '.', '_', '-' or '+', "
            "starting with a letter or digit (no whitespace, control characters or '/')"
        )


def scan_versions(models_dir: str | Path) -> tuple[list[VersionRecord], dict[str, str]]:
    """Published versions ordered by sequence (oldest first), and the directories that
    are not published versions (name -> why: no record, unreadable record)."""
    root = Path(models_dir)
    records: list[VersionRecord] = []
    problems: dict[str, str] = {}
    if not root.is_dir():
        return records, problems
    for vdir in sorted(root.iterdir()):
        if not vdir.is_dir() or vdir.name.startswith("."):
            continue
        if not (vdir / RECORD_FILE).exists():
            problems[vdir.name] = f"no {RECORD_FILE}: not published (or publish did not finish)"
            continue
        try:
            records.append(VersionRecord.read(vdir))
        except ValueError as exc:
            problems[vdir.name] = str(exc)
    records.sort(key=lambda r: (r.sequence, r.published_at_ms, r.version))
    return records, problems


def list_versions(models_dir: str | Path) -> list[str]:
    """Names of the published versions, oldest publish first (not verified)."""
    return [r.version for r in scan_versions(models_dir)[0]]


@contextlib.contextmanager
def _publish_lock(root: Path) -> Iterator[None]:
    """One publish at a time per models directory, so sequences are unique."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / _LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def publish_model(model_pt: str | Path, models_dir: str | Path, version: str) -> Path:
    """Publish a trained ``model.pt`` (or its run dir) as ``models_dir/version``.

    Checks the name, verifies that the file loads (checksum, safe unpickling, metadata,
    strict weights), copies it in and writes ``version.json`` last with the next
    sequence number, signed when ``TRANSACT_MODEL_KEY`` is set. Returns the version
    directory.

    Raises:
        ValueError: a bad name, a version published already, or a model that does not
            load (the message says why).
        FileNotFoundError: no model file at ``model_pt``.
    """
    check_version_name(version)
    key = signing_key()
    src = model_file(model_pt)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no model.pt to publish")
    try:
        artifact = read_model(src)
        artifact.build()
    except ArtifactError as exc:
        raise ValueError(f"cannot publish {src}: {exc}") from exc
    root = Path(models_dir)
    dest = root / version
    with _publish_lock(root):
        if (dest / RECORD_FILE).exists():
            raise ValueError(
                f"version {version!r} is published already in {root}; versions are "
                "immutable, publish under a new name"
            )
        records, _ = scan_versions(root)
        sequence = max((r.sequence for r in records), default=0) + 1
        data = src.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != artifact.sha256:
            raise ValueError(f"cannot publish {src}: it changed after it was verified")
        atomic_write_bytes(data, dest / MODEL_FILE)
        atomic_write_bytes((digest + "\n").encode(), dest / (MODEL_FILE + CHECKSUM_SUFFIX))
        record = VersionRecord(version, sequence, int(time.time() * 1000), digest)
        if key is not None:
            record = replace(record, signature=_sign(record, key))
        atomic_write_bytes(record.to_json().encode(), dest / RECORD_FILE)
    log.info(
        "published model %s (sequence %d, sha256 %s...%s)",
        version,
        sequence,
        digest[:12],
        ", signed" if key is not None else "",
    )
    return dest


def load_verified(
    version_dir: str | Path,
    options: InferenceOptions,
    expected_spec: FeatureSpec | None = None,
    smoke: Callable[[ServingRanker], torch.Tensor] | None = None,
    key: bytes | Literal["env"] | None = "env",
) -> ModelHandle:
    """Load and verify one published version; raises :class:`ModelRefused` naming the check.

    Args:
        version_dir: ``MODELS/<version>``.
        options: inference switches for the new ranker.
        expected_spec: the FeatureSpec the service runs with (None: accept the model's).
        smoke: a callable scoring a tiny request; its output must be finite.
        key: the HMAC key; when there is one, the version must carry a matching signature.
            ``"env"`` (default): ``TRANSACT_MODEL_KEY``; None: check checksums only.
    """
    if key == "env":
        key = signing_key()
    vdir = Path(version_dir)
    version = vdir.name
    try:
        record = VersionRecord.read(vdir)
    except ValueError as exc:
        raise ModelRefused(f"model {version}: not a published version: {exc}") from None
    if key is not None:
        if record.signature is None:
            raise ModelRefused(
                f"model {version}: unsigned, and {KEY_ENV} is set (publish it with the key)"
            )
        if not hmac.compare_digest(record.signature, _sign(record, key)):
            raise ModelRefused(f"model {version}: signature does not match (wrong key or edited)")
    try:
        artifact = read_model(vdir / MODEL_FILE, expected_sha256=record.sha256)
        spec = artifact.feature_spec()
        artifact.model_config()
    except ArtifactError as exc:
        raise ModelRefused(f"model {version}: {_reason(exc, vdir)}") from exc
    if expected_spec is not None and spec.to_dict() != expected_spec.to_dict():
        diff = sorted(k for k, v in spec.to_dict().items() if expected_spec.to_dict().get(k) != v)
        raise ModelRefused(
            f"model {version}: FeatureSpec differs from the served one in {diff}; "
            "restart the service with matching feature stores"
        )
    try:
        model = artifact.build()
    except ArtifactError as exc:
        raise ModelRefused(f"model {version}: {_reason(exc, vdir)}") from exc
    try:
        calibration = calibration_of(artifact.metadata, source="metadata calibration")
    except (ValueError, TypeError) as exc:
        raise ModelRefused(f"model {version}: {exc}") from None
    try:
        ranker = ServingRanker(model, options, calibration)
    except ValueError as exc:
        raise ModelRefused(f"model {version}: {exc}") from None
    if smoke is not None:
        out = smoke(ranker)
        if not bool(torch.isfinite(out).all()):
            raise ModelRefused(f"model {version}: smoke request scored non-finite values")
    return ModelHandle(
        version, ranker, spec, artifact.sha256, time.time(), record.sequence,
        model_utility(artifact.metadata),
    )  # fmt: skip


def model_utility(metadata: Mapping[str, Any]) -> dict[str, float]:
    """The utility weights a model's run config gives its heads (``[heads] utility``, or
    ``[eval] utility`` in model files from before ``[heads]``); empty when it has none."""
    run = metadata.get("run_config") or {}
    utility = (run.get("heads") or {}).get("utility") or (run.get("eval") or {}).get("utility")
    return {str(h): float(w) for h, w in (utility or {}).items()}


def _reason(exc: ArtifactError, vdir: Path) -> str:
    """The artifact error without the version directory's path (the log names the version)."""
    return str(exc).replace(f"{vdir / MODEL_FILE}: ", "").replace(f"{vdir}/", "")


class ModelRegistry:
    """The served model version, with verified hot reload from a models directory.

    Args:
        models_dir: directory of published versions (see the module docstring).
        options: inference switches for every loaded version.
        expected_spec: the FeatureSpec the service's feature stores serve.
        smoke: a tiny scoring check run on every candidate version before the swap.
        key: HMAC key for signed versions; ``"env"`` (default): ``TRANSACT_MODEL_KEY``,
            read once here; None: versions are checked by checksum only.

    ``current()`` is one attribute read (atomic); ``reload()`` loads the version with the
    highest publish sequence above the served one that verifies, and swaps it in;
    ``watch()`` polls in a daemon thread. Every switch is logged with the reason.
    """

    def __init__(
        self,
        models_dir: str | Path,
        options: InferenceOptions,
        expected_spec: FeatureSpec | None = None,
        smoke: Callable[[ServingRanker], torch.Tensor] | None = None,
        key: bytes | Literal["env"] | None = "env",
    ) -> None:
        self.models_dir = Path(models_dir)
        self.options = options
        self.expected_spec = expected_spec
        self.smoke = smoke
        self.key = signing_key() if key == "env" else key
        self._handle: ModelHandle | None = None
        self._refused: dict[str, str] = {}  # version -> record refused (not retried unchanged)
        self._skipped: dict[str, str] = {}  # directory -> why it is not a version (logged once)
        self._lock = threading.Lock()  # one reload at a time; readers never take it
        self._stop = threading.Event()
        self.reloads = 0
        self.refusals = 0

    def current(self) -> ModelHandle | None:
        return self._handle

    def install(self, handle: ModelHandle) -> None:
        """Serve ``handle`` from now on (an atomic reference swap)."""
        if self.expected_spec is None:
            self.expected_spec = handle.spec
        self._handle = handle

    def reload(self) -> ModelHandle | None:
        """Serve the newest published version that verifies, if newer than the served one.

        Candidates are tried from the highest publish sequence down to the served one; a
        refused candidate is logged and not retried until its ``version.json`` changes.
        Returns the served handle (None while nothing verifies).
        """
        with self._lock:
            records, problems = scan_versions(self.models_dir)
            for name, why in problems.items():
                if self._skipped.get(name) != why:
                    log.warning("ignoring %s in %s: %s", name, self.models_dir, why)
            self._skipped = problems
            served = self._handle
            floor = served.sequence if served is not None else 0
            newer = [r for r in records if r.sequence > floor and r.version != _name(served)]
            refused_now: list[str] = []
            for record in reversed(newer):
                stamp = record.to_json()
                if self._refused.get(record.version) == stamp:
                    refused_now.append(record.version)
                    continue
                try:
                    handle = load_verified(
                        self.models_dir / record.version,
                        self.options,
                        self.expected_spec,
                        self.smoke,
                        key=self.key,
                    )
                except ModelRefused as exc:
                    self._refused[record.version] = stamp
                    self.refusals += 1
                    refused_now.append(record.version)
                    log.error(
                        "REFUSED %s; still serving %s", exc, _name(served) or "nothing (not ready)"
                    )
                    continue
                self.install(handle)
                self.reloads += 1
                why = "the newest published version"
                if refused_now:
                    why = f"the newest version that verifies (refused: {', '.join(refused_now)})"
                log.info(
                    "serving model %s (sequence %d, published %s, sha256 %s...): %s; previous %s",
                    record.version,
                    record.sequence,
                    time.strftime(
                        "%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.published_at_ms / 1000)
                    ),
                    handle.sha256[:12],
                    why,
                    _name(served) or "none",
                )
                break
            return self._handle

    def watch(self, interval_s: float = 5.0) -> threading.Thread:
        """Poll for new versions every ``interval_s`` in a daemon thread; :meth:`stop` ends it."""

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.reload()
                except Exception:  # keep serving whatever happens to a reload
                    log.exception("model reload failed; still serving the previous version")

        thread = threading.Thread(target=loop, name="model-watch", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


def _name(handle: ModelHandle | None) -> str | None:
    return handle.version if handle is not None else None
