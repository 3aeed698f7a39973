"""Model versions for serving: publish with a checksum, verify on load, swap atomically.

Layout of a models directory (the twice-weekly retrain publishes a new version into it)::

    MODELS/2026-11-26T12-00/model.pt          # written by `transact train` (model + metadata)
    MODELS/2026-11-26T12-00/model.pt.sha256   # hex SHA-256 of model.pt, written last

:func:`publish_model` copies a trained ``model.pt`` in and writes the checksum file last,
so a half-copied version is never loadable. :func:`load_verified` refuses a version whose
checksum is missing or wrong, whose metadata lacks the model config or FeatureSpec,
whose FeatureSpec differs from the one the service was started with (its feature stores
are built for it), whose weights do not load strictly, or whose smoke forward is not
finite. :class:`ModelRegistry` holds the served version as one immutable
:class:`ModelHandle`; a request reads the handle once and uses it to the end, so a swap
never changes a model under a request in flight, and a refused version leaves the
previous one serving.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from transact.data.schema import FeatureSpec
from transact.serving.ranker import InferenceOptions, ServingRanker

log = logging.getLogger("transact.serving")

MODEL_FILE = "model.pt"
CHECKSUM_SUFFIX = ".sha256"


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


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def publish_model(model_pt: str | Path, models_dir: str | Path, version: str) -> Path:
    """Copy a trained ``model.pt`` (or its run dir) to ``models_dir/version`` with a checksum.

    The checksum file is written last and atomically, so a reader sees either no version
    or a complete one. Returns the version directory.
    """
    src = Path(model_pt)
    src = src / MODEL_FILE if src.is_dir() else src
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no model.pt to publish")
    if not version or "/" in version or version.startswith("."):
        raise ValueError(f"version {version!r}: must be a plain directory name")
    dest = Path(models_dir) / version
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{MODEL_FILE}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest / MODEL_FILE)
    digest = file_sha256(dest / MODEL_FILE)
    tmp_sum = dest / f".{MODEL_FILE}{CHECKSUM_SUFFIX}.tmp"
    tmp_sum.write_text(digest + "\n")
    os.replace(tmp_sum, dest / (MODEL_FILE + CHECKSUM_SUFFIX))
    return dest


def list_versions(models_dir: str | Path) -> list[str]:
    """Published versions (directories with a checksum file), oldest name first."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and (p / (MODEL_FILE + CHECKSUM_SUFFIX)).is_file()
    )


def load_verified(
    version_dir: str | Path,
    options: InferenceOptions,
    expected_spec: FeatureSpec | None = None,
    smoke: Callable[[ServingRanker], torch.Tensor] | None = None,
) -> ModelHandle:
    """Load and verify one published version; raises :class:`ModelRefused` naming the check.

    Args:
        version_dir: ``MODELS/<version>``.
        options: inference switches for the new ranker.
        expected_spec: the FeatureSpec the service runs with (None: accept the model's).
        smoke: a callable scoring a tiny request; its output must be finite.
    """
    from transact.models import Pinnability, PinnabilityConfig

    vdir = Path(version_dir)
    version = vdir.name
    file = vdir / MODEL_FILE
    sum_file = vdir / (MODEL_FILE + CHECKSUM_SUFFIX)
    if not file.is_file():
        raise ModelRefused(f"model {version}: {file} is missing")
    if not sum_file.is_file():
        raise ModelRefused(f"model {version}: checksum file {sum_file.name} is missing")
    want = sum_file.read_text().strip().split()[0] if sum_file.read_text().strip() else ""
    got = file_sha256(file)
    if got != want:
        raise ModelRefused(
            f"model {version}: checksum mismatch (file sha256 {got[:12]}..., "
            f"{sum_file.name} says {want[:12]}...)"
        )
    try:
        saved: dict[str, Any] = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as exc:  # a file with a valid checksum can still be unreadable
        raise ModelRefused(f"model {version}: cannot read {file.name}: {exc}") from exc
    md = saved.get("metadata") if isinstance(saved, dict) else None
    if not isinstance(md, dict) or "model" not in saved:
        raise ModelRefused(f"model {version}: not a `transact train` model.pt (no model/metadata)")
    for key in ("feature_spec", "model_config"):
        if key not in md:
            raise ModelRefused(f"model {version}: metadata has no {key!r}")
    try:
        spec = FeatureSpec.from_dict(md["feature_spec"])
        config = PinnabilityConfig.from_dict(dict(md["model_config"]))
    except Exception as exc:
        raise ModelRefused(f"model {version}: bad config: {exc}") from exc
    if expected_spec is not None and spec.to_dict() != expected_spec.to_dict():
        diff = sorted(k for k, v in spec.to_dict().items() if expected_spec.to_dict().get(k) != v)
        raise ModelRefused(
            f"model {version}: FeatureSpec differs from the served one in {diff}; "
            "restart the service with matching feature stores"
        )
    model = Pinnability(spec, config)
    try:
        model.load_state_dict(saved["model"], strict=True)
    except Exception as exc:
        raise ModelRefused(f"model {version}: weights do not fit the config: {exc}") from exc
    ranker = ServingRanker(model.eval(), options)
    if smoke is not None:
        out = smoke(ranker)
        if not bool(torch.isfinite(out).all()):
            raise ModelRefused(f"model {version}: smoke request scored non-finite values")
    return ModelHandle(version, ranker, spec, got, time.time())


class ModelRegistry:
    """The served model version, with verified hot reload from a models directory.

    Args:
        models_dir: directory of published versions (see the module docstring).
        options: inference switches for every loaded version.
        expected_spec: the FeatureSpec the service's feature stores serve.
        smoke: a tiny scoring check run on every candidate version before the swap.

    ``current()`` is one attribute read (atomic); ``reload()`` loads the newest version not
    served yet and swaps it in only if it verifies; ``watch()`` polls in a daemon thread.
    """

    def __init__(
        self,
        models_dir: str | Path,
        options: InferenceOptions,
        expected_spec: FeatureSpec | None = None,
        smoke: Callable[[ServingRanker], torch.Tensor] | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.options = options
        self.expected_spec = expected_spec
        self.smoke = smoke
        self._handle: ModelHandle | None = None
        self._refused: dict[str, str] = {}  # version -> sha256 refused (not retried unchanged)
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
        """Load the newest published version if it is new; returns the served handle."""
        with self._lock:
            versions = list_versions(self.models_dir)
            served = self._handle.version if self._handle else None
            for version in reversed(versions):
                if version == served:
                    break
                vdir = self.models_dir / version
                sum_file = vdir / (MODEL_FILE + CHECKSUM_SUFFIX)
                try:
                    stamp = sum_file.read_text().strip()
                except OSError:
                    continue
                if self._refused.get(version) == stamp:
                    continue
                try:
                    handle = load_verified(vdir, self.options, self.expected_spec, self.smoke)
                except ModelRefused as exc:
                    self._refused[version] = stamp
                    self.refusals += 1
                    log.error("REFUSED %s; still serving %s", exc, served or "nothing (not ready)")
                    continue
                self.install(handle)
                self.reloads += 1
                log.info("serving model %s (sha256 %s...)", version, handle.sha256[:12])
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
