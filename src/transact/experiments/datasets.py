"""Datasets the experiments run on: the simulated world, MovieLens, or a prepared folder.

:func:`prepare_dataset` turns the ``--dataset`` argument into a :class:`PreparedDataset`:
a data directory in the data stage's layout (``manifest.json``, items, users, events,
impressions) plus its train and evaluation windows. The simulated world is generated once
per preset and cached; MovieLens is converted once by the data stage's adapter and cached;
a path is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHARED_DATASETS = ("movielens-latest-small", "movielens-100k")


def shared_root() -> Path:
    """``../shared/datasets`` relative to the repository root."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "datasets"


@dataclass
class PreparedDataset:
    """A dataset directory and its windows, ready to build example sets from.

    Fields:
        name: what the reports call it (``world-demo``, ``movielens-latest-small``).
        data_dir: the directory in the data stage's layout.
        manifest: its :class:`~transact.data.io.WorldManifest`.
    """

    name: str
    data_dir: Path
    manifest: Any

    def describe(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "name": self.name,
            "data_dir": str(self.data_dir),
            "users": m.n_users,
            "items": m.n_items,
            "train_window_ms": [m.train_start_ms, m.train_end_ms],
            "eval_window_ms": [m.eval_start_ms, m.eval_end_ms],
        }

    def example_sets(
        self, *, seq_len: int, negative_ratio: float, user_embeddings: Any, seed: int
    ) -> tuple[Any, Any]:
        """(training examples of the train window, evaluation examples of the eval window).

        Training negatives are down-sampled to ``negative_ratio`` per positive (paper
        4.1.1); evaluation keeps every impression of the randomized requests (4.2.1).
        """
        from transact.data.examples import build_example_set

        m = self.manifest
        train = build_example_set(
            self.data_dir,
            m.train_start_ms,
            m.train_end_ms,
            seq_len=seq_len,
            negative_ratio=negative_ratio,
            randomized_only=False,
            user_embeddings=user_embeddings,
            seed=seed,
        )
        evaluation = build_example_set(
            self.data_dir,
            m.eval_start_ms,
            m.eval_end_ms,
            seq_len=seq_len,
            negative_ratio=None,
            randomized_only=True,
            user_embeddings=user_embeddings,
            seed=seed,
        )
        return train, evaluation


def prepare_dataset(
    dataset: str, cache_dir: Path, *, world_preset: str, progress: bool = True
) -> PreparedDataset:
    """Resolve ``dataset`` (``world``, a shared MovieLens name, or a path) to a directory."""
    from transact.data.io import MANIFEST_NAME, load_manifest

    cache_dir = Path(cache_dir)
    if dataset == "world":
        data_dir = cache_dir / f"world-{world_preset}-seed0"
        if not (data_dir / MANIFEST_NAME).exists():
            from transact.data.world import PRESETS, generate_world

            if world_preset not in PRESETS:
                raise KeyError(f"unknown world preset {world_preset!r}; known: {sorted(PRESETS)}")
            generate_world(
                data_dir, PRESETS[world_preset], seed=0, preset=world_preset, progress=progress
            )
        return PreparedDataset(f"world-{world_preset}", data_dir, load_manifest(data_dir))
    if dataset in SHARED_DATASETS or (Path(dataset) / "ratings.csv").exists():
        source = shared_root() / dataset if dataset in SHARED_DATASETS else Path(dataset)
        if not source.exists():
            raise FileNotFoundError(f"dataset {dataset!r}: {source} does not exist")
        name = source.name
        data_dir = cache_dir / name
        if not (data_dir / MANIFEST_NAME).exists():
            from transact.data.movielens import prepare_movielens

            prepare_movielens(source, data_dir)
        return PreparedDataset(name, data_dir, load_manifest(data_dir))
    path = Path(dataset)
    if not (path / MANIFEST_NAME).exists():
        raise FileNotFoundError(
            f"dataset {dataset!r} is not 'world', one of {list(SHARED_DATASETS)}, a MovieLens "
            f"folder, or a prepared data directory with {MANIFEST_NAME} "
            "(prepare one with `transact data prepare`)"
        )
    return PreparedDataset(path.name, path, load_manifest(path))
