"""FAISS index building, search, serialisation and storage round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uniembed import storage
from uniembed.index import (
    IdMap,
    build_index,
    default_nlist,
    index_from_bytes,
    index_kind,
    index_to_bytes,
    load_index,
    read_metadata,
    save_index,
    search,
)


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force_topk(
    queries: np.ndarray, pool: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    sims = queries @ pool.T
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, idx, axis=1), idx


def test_flat_search_equals_brute_force_numpy() -> None:
    pool, queries = unit_rows(500, 24, seed=1), unit_rows(40, 24, seed=2)
    scores, indices = search(build_index(pool), queries, k=10)
    want_scores, want_idx = brute_force_topk(queries, pool, 10)
    np.testing.assert_array_equal(indices, want_idx)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    assert scores.dtype == np.float32 and indices.dtype == np.int64


def test_chunked_search_matches_one_chunk() -> None:
    pool, queries = unit_rows(300, 16, seed=3), unit_rows(53, 16, seed=4)
    index = build_index(pool)
    whole = search(index, queries, k=7, batch_size=4096)
    chunked = search(index, queries, k=7, batch_size=5)
    np.testing.assert_array_equal(whole[1], chunked[1])
    np.testing.assert_array_equal(whole[0], chunked[0])


def test_k_above_pool_size_pads_with_minus_one_and_minus_inf() -> None:
    scores, indices = search(build_index(unit_rows(3, 8, seed=5)), unit_rows(2, 8, seed=6), k=5)
    assert (indices[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert sorted(indices[0, :3].tolist()) == [0, 1, 2]


def test_ivf_with_nprobe_equal_nlist_equals_flat() -> None:
    pool, queries = unit_rows(2000, 32, seed=7), unit_rows(30, 32, seed=8)
    flat = search(build_index(pool, "flat"), queries, k=20)
    ivf_index = build_index(pool, "ivf", nlist=16, nprobe=16)
    assert index_kind(ivf_index) == "ivf" and ivf_index.nlist == 16 and ivf_index.nprobe == 16
    ivf = search(ivf_index, queries, k=20)
    np.testing.assert_array_equal(ivf[1], flat[1])
    np.testing.assert_allclose(ivf[0], flat[0], atol=1e-5)


def test_ivf_low_nprobe_is_approximate_but_sane() -> None:
    pool, queries = unit_rows(2000, 32, seed=9), unit_rows(50, 32, seed=10)
    exact = search(build_index(pool), queries, k=10)[1]
    approx = search(build_index(pool, "ivf", nlist=32, nprobe=1), queries, k=10)[1]
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert 0.0 < recall < 1.0  # one probed list of 32 misses some neighbours


def test_ivf_sampled_training_is_seeded() -> None:
    pool = unit_rows(700, 8, seed=11)  # > 256 * nlist rows: k-means trains on a sample
    a = index_to_bytes(build_index(pool, "ivf", nlist=2, seed=1))
    b = index_to_bytes(build_index(pool, "ivf", nlist=2, seed=1))
    assert a == b


def test_ivf_defaults_and_nprobe_cap() -> None:
    assert default_nlist(100) == 2 and default_nlist(10) == 1 and default_nlist(10_000) == 256
    index = build_index(unit_rows(200, 8, seed=12), "ivf", nlist=4, nprobe=16)
    assert index.nprobe == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "ivf", "nlist": 50}, r"nlist=50 needs at least 50 .* n=20"),
        ({"kind": "ivf", "nlist": 0}, "nlist: must be >= 1"),
        ({"kind": "ivf", "nlist": 2, "nprobe": 0}, "nprobe"),
        ({"kind": "hnsw"}, "kind"),
    ],
)
def test_build_index_argument_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_index(unit_rows(20, 8, seed=13), **kwargs)


def test_build_index_input_errors_name_the_row() -> None:
    x = unit_rows(5, 4, seed=14)
    x[3] *= 2
    with pytest.raises(ValueError, match="embeddings: row 3 has L2 norm 2"):
        build_index(x)
    assert build_index(x, check_norm=False).ntotal == 5
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="embeddings: row 2 holds NaN"):
        build_index(x, check_norm=False)
    with pytest.raises(ValueError, match="2-D"):
        build_index(np.ones(4, dtype=np.float32))
    with pytest.raises(ValueError, match="0 rows"):
        build_index(np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="queries: expected dimension 4, got 3"):
        search(build_index(unit_rows(5, 4, seed=15)), unit_rows(1, 3, seed=16), k=1)
    with pytest.raises(ValueError, match="k: must be >= 1"):
        search(build_index(unit_rows(5, 4, seed=15)), unit_rows(1, 4, seed=16), k=0)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_bytes_round_trip(kind: str) -> None:
    pool, queries = unit_rows(400, 12, seed=17), unit_rows(10, 12, seed=18)
    index = build_index(pool, kind, nlist=8 if kind == "ivf" else None, nprobe=3)
    again = index_from_bytes(index_to_bytes(index))
    assert index_kind(again) == kind and again.ntotal == 400 and again.d == 12
    if kind == "ivf":
        assert again.nprobe == 3
    for got, want in zip(search(again, queries, 5), search(index, queries, 5)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="empty"):
        index_from_bytes(b"")


def test_id_map() -> None:
    ids = IdMap.from_ids(["x", "y", "z"])
    assert len(ids) == 3 and "y" in ids and ids.position("z") == 2
    assert ids.lookup(np.array([2, -1, 0])) == ["z", None, "x"]
    np.testing.assert_array_equal(ids.positions(["z", "x"]), [2, 0])
    assert IdMap.from_bytes(ids.to_bytes()) == ids
    with pytest.raises(KeyError, match="'w'"):
        ids.position("w")
    with pytest.raises(IndexError, match="position 3"):
        ids.lookup([3])
    with pytest.raises(ValueError, match=r"ids\[2\]: id 'x' repeats ids\[0\]"):
        IdMap.from_ids(["x", "y", "x"])
    with pytest.raises(ValueError, match=r"ids\[1\]: expected a string"):
        IdMap.from_ids(["x", 5])  # type: ignore[list-item]


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_save_load_round_trip_local(tmp_path: Path, kind: str) -> None:
    pool, queries = unit_rows(300, 16, seed=19), unit_rows(8, 16, seed=20)
    ids = [f"item-{i}" for i in range(300)]
    index = build_index(pool, kind, nlist=6 if kind == "ivf" else None, nprobe=2)
    uri = str(tmp_path / "idx" / "pool.faiss")
    meta = save_index(index, uri, ids)
    assert (tmp_path / "idx" / "pool.faiss.json").exists()
    assert (tmp_path / "idx" / "pool.faiss.ids.json").exists()
    on_disk = json.loads((tmp_path / "idx" / "pool.faiss.json").read_text())
    assert on_disk == meta == read_metadata(uri)
    assert meta["kind"] == kind and meta["dim"] == 16 and meta["count"] == 300
    assert meta["metric"] == "inner_product" and meta["ids"] == "pool.faiss.ids.json"
    assert meta["nprobe"] == (2 if kind == "ivf" else None)

    loaded, loaded_ids = load_index(uri)
    assert loaded_ids.ids == tuple(ids)
    for got, want in zip(search(loaded, queries, 5), search(index, queries, 5)):
        np.testing.assert_array_equal(got, want)


def test_save_load_errors(tmp_path: Path) -> None:
    index = build_index(unit_rows(10, 4, seed=21))
    uri = str(tmp_path / "i.faiss")
    with pytest.raises(ValueError, match="ids: 9 ids for an index of 10 rows"):
        save_index(index, uri, [str(i) for i in range(9)])
    save_index(index, uri, IdMap.from_ids(str(i) for i in range(10)))
    meta = json.loads(storage.read_text(uri + ".json"))
    meta["count"] = 11
    storage.write_text(uri + ".json", json.dumps(meta))
    with pytest.raises(ValueError, match="count=11 but the index has 10"):
        load_index(uri)
    storage.write_text(uri + ".json", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_index(uri)
    with pytest.raises(storage.StorageError, match="not found"):
        load_index(str(tmp_path / "missing.faiss"))
