"""core.maps.reduce: PCA dimensions and variance, map parameters, the cache, subsets, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from core.base.errors import DataError
from core.maps import reduce
from core.maps.reduce import MapParams, cached_map, compute_map, lookup_map, lookup_reducer, pca, seeded_subset


def _clusters(n_per: int = 30, dim: int = 50, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=8.0, size=(k, dim))
    labels = np.repeat(np.arange(k), n_per)
    return (centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def test_pca_dimensions_and_explained_variance():
    values, _ = _clusters()
    result = pca(values, n_components=40)
    assert result.components.shape == (90, 40)
    assert result.components.dtype == np.float32
    ratio = result.explained_variance_ratio
    assert ratio.shape == (40,) and np.all(np.diff(ratio) <= 1e-9)  # sorted, a curve to plot
    assert 0.5 < ratio[:2].sum() <= 1.0  # 3 clusters: two components carry most of the variance


def test_pca_is_capped_by_points_and_features():
    values = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    assert pca(values, n_components=40).components.shape == (6, 4)


def test_pca_map_is_the_first_two_components():
    values, _ = _clusters()
    result = compute_map(values, MapParams(method="pca"))
    np.testing.assert_allclose(result.coords, result.pca.components[:, :2])


def test_tsne_map_separates_planted_clusters():
    values, labels = _clusters()
    coords = compute_map(values, MapParams(method="tsne", perplexity=10)).coords
    assert coords.shape == (90, 2) and np.isfinite(coords).all()
    centroids = np.stack([coords[labels == c].mean(axis=0) for c in range(3)])
    spread = max(np.linalg.norm(coords[labels == c] - centroids[c], axis=1).mean() for c in range(3))
    gap = min(np.linalg.norm(centroids[a] - centroids[b]) for a in range(3) for b in range(a + 1, 3))
    assert gap > 2 * spread


def test_umap_map_is_seeded_and_separates_clusters():
    values, labels = _clusters(n_per=20)
    first = compute_map(values, MapParams(method="umap", n_neighbors=8, seed=3)).coords
    again = compute_map(values, MapParams(method="umap", n_neighbors=8, seed=3)).coords
    np.testing.assert_allclose(first, again, atol=1e-4)
    centroids = np.stack([first[labels == c].mean(axis=0) for c in range(3)])
    nearest = np.argmin(np.linalg.norm(first[:, None] - centroids[None], axis=2), axis=1)
    assert (nearest == labels).mean() > 0.95


def test_a_umap_map_keeps_its_fitted_reducer_beside_it_only_when_asked(ws):
    values, _ = _clusters(n_per=15)
    params = MapParams(method="umap", n_neighbors=8)
    plain = cached_map(ws, values, params, input_key="plain")
    assert plain.reducer is None and lookup_reducer(ws, "plain", params) is None
    kept = cached_map(ws, values, params, input_key="kept", keep_reducer=True)
    reducer = lookup_reducer(ws, "kept", params)
    assert reducer is not None and reducer.n_points == len(values)
    np.testing.assert_allclose(reducer.umap.embedding_, kept.coords, atol=1e-6)  # the map is its embedding
    # its projection is the map's own PCA (the scores the UMAP was fitted on)
    np.testing.assert_allclose(reducer.project(values), kept.pca.components, atol=1e-3)
    np.testing.assert_allclose(reducer.project(values), pca(values).components, atol=1e-3)
    assert lookup_map(ws, "kept", params) is not None and lookup_map(ws, "kept", params).reducer is None
    with pytest.raises(DataError, match="features"):
        reducer.project(values[:, :10])


def test_a_map_cached_without_its_reducer_gets_one_when_asked_again(ws, monkeypatch):
    values, _ = _clusters(n_per=15)
    params = MapParams(method="umap", n_neighbors=8)
    first = cached_map(ws, values, params, input_key="old")  # as a map cached before reducers were kept
    assert cached_map(ws, values, params, input_key="old").cached  # without keep_reducer: a plain hit
    again = cached_map(ws, values, params, input_key="old", keep_reducer=True)
    assert not again.cached and lookup_reducer(ws, "old", params) is not None
    np.testing.assert_allclose(again.coords, first.coords, atol=1e-4)  # seeded: the same layout
    monkeypatch.setattr(reduce, "umap_fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError("refitted")))
    assert cached_map(ws, values, params, input_key="old", keep_reducer=True).cached


def test_an_unreadable_or_foreign_reducer_entry_is_as_if_none_was_kept(ws):
    from core.base.cache import open_cache

    params = MapParams(method="umap")
    cache = open_cache(ws)
    cache.set(reduce.reducer_key("x", params), {"umap": None})  # not what cached_map stores
    cache.close()
    assert lookup_reducer(ws, "x", params) is None


def _fake_layout(monkeypatch) -> list[int]:
    """Replace t-SNE by a cheap stand-in that counts its calls (the cache is under test, not t-SNE)."""
    calls: list[int] = []

    def layout(components, params, progress=None):
        calls.append(1)
        return components[:, :2] * params.perplexity

    monkeypatch.setattr(reduce, "tsne_2d", layout)
    return calls


def test_cache_hit_does_no_work_and_survives_a_new_call(ws, monkeypatch):
    values, _ = _clusters()
    calls = _fake_layout(monkeypatch)
    params = MapParams(method="tsne", perplexity=10)
    first = cached_map(ws, values, params)
    assert not first.cached and calls == [1]

    def no_work(*args, **kwargs):
        raise AssertionError("recomputed on a cache hit")

    monkeypatch.setattr(reduce, "pca", no_work)
    monkeypatch.setattr(reduce, "tsne_2d", no_work)
    second = cached_map(ws, values, params)
    assert second.cached
    np.testing.assert_array_equal(second.coords, first.coords)
    assert lookup_map(ws, reduce.array_key(values), params) is not None


def test_cache_key_follows_content_and_relevant_params(ws, monkeypatch):
    values, _ = _clusters()
    _fake_layout(monkeypatch)
    cached_map(ws, values, MapParams(method="tsne", perplexity=10))
    # Changing a UMAP-only parameter must not invalidate a t-SNE map...
    assert cached_map(ws, values, MapParams(method="tsne", perplexity=10, n_neighbors=99)).cached
    # ... but the perplexity, the seed or one changed value must.
    assert not cached_map(ws, values, MapParams(method="tsne", perplexity=12)).cached
    assert not cached_map(ws, values, MapParams(method="tsne", perplexity=10, seed=1)).cached
    changed = values.copy()
    changed[0, 0] += 1
    assert not cached_map(ws, changed, MapParams(method="tsne", perplexity=10)).cached


def test_switching_method_reuses_the_cached_pca(ws, monkeypatch):
    values, _ = _clusters()
    _fake_layout(monkeypatch)
    cached_map(ws, values, MapParams(method="pca"), input_key="emb-1")
    monkeypatch.setattr(reduce, "pca", lambda *a, **k: (_ for _ in ()).throw(AssertionError("PCA recomputed")))
    result = cached_map(ws, values, MapParams(method="tsne", perplexity=10), input_key="emb-1")
    assert result.coords.shape == (90, 2) and not result.cached


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        (MapParams(method="mds"), "unknown map method"),
        (MapParams(pca_components=1), "PCA components"),
        (MapParams(n_neighbors=1), "neighbours"),
        (MapParams(min_dist=2.0), "min_dist"),
        (MapParams(perplexity=0), "perplexity"),
    ],
)
def test_bad_parameters_are_data_errors(params, problem):
    with pytest.raises(DataError, match=problem):
        compute_map(np.zeros((10, 3), dtype=np.float32), params)


def test_bad_values_are_data_errors():
    with pytest.raises(DataError, match="at least 2 points"):
        pca(np.zeros((1, 3)))
    with pytest.raises(DataError, match="2-D"):
        pca(np.zeros(5))
    bad = np.ones((5, 3))
    bad[2, 1] = np.nan
    with pytest.raises(DataError, match="1 point"):
        pca(bad)


def test_tiny_sets_fall_back_to_pca_layout():
    values = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    result = compute_map(values, MapParams(method="umap"))
    np.testing.assert_allclose(result.coords, result.pca.components[:, :2])


def test_seeded_subset():
    first = seeded_subset(1000, 100, seed=2)
    assert len(first) == 100 and len(np.unique(first)) == 100 and np.all(np.diff(first) > 0)
    np.testing.assert_array_equal(first, seeded_subset(1000, 100, seed=2))
    assert not np.array_equal(first, seeded_subset(1000, 100, seed=3))
    np.testing.assert_array_equal(seeded_subset(10, None), np.arange(10))
    np.testing.assert_array_equal(seeded_subset(10, 50), np.arange(10))
    with pytest.raises(DataError):
        seeded_subset(10, 0)


def test_warm_up_can_be_switched_off(ws, monkeypatch):
    monkeypatch.setenv(reduce.WARMUP_ENV, "0")
    assert reduce.start_warm_up(ws) is None


def test_warm_up_reaches_the_approximate_neighbour_search_real_maps_use(ws, monkeypatch):
    import umap.umap_

    class Reached(Exception):
        pass

    def nndescent(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(umap.umap_, "NNDescent", nndescent)  # what maps of 4,096+ points build
    with pytest.raises(Reached):
        reduce.warm_up(ws)
