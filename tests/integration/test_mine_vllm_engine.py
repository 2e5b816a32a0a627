"""The mine job with ``judge.engine=vllm`` against ``judge.engine=transformers`` on the demo
(WordNet, all-MiniLM-L6-v2 + the shipped judge), on a real local Ray cluster: the vLLM
actors run in ``.venv-vllm`` through Ray's runtime_env; the rows, their negatives and their
soft labels (to 1e-4) must be the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.judge_engines import compare_mined

from uniembed.reranker.engine_config import VllmSection
from uniembed.reranker.vllm_engine import SETUP_COMMAND, EngineMissingError, vllm_python

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
QUERIES = 16


def _have_vllm() -> bool:
    try:
        vllm_python(VllmSection())
    except EngineMissingError:
        return False
    return True


@pytest.mark.skipif(not _have_vllm(), reason=f"no .venv-vllm: build it with `{SETUP_COMMAND}`")
def test_mine_vllm_engine_equals_transformers(
    ray_start_2_cpus: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs.mine import main

    monkeypatch.chdir(ROOT)
    common = [f"max_queries={QUERIES}", f"sanity.calibration_queries={QUERIES}", "shard_size=8"]
    for engine in ("transformers", "vllm"):
        assert main([f"output={tmp_path / engine}", f"judge.engine={engine}", *common]) == 0
    reports = {
        e: json.loads((tmp_path / e / "report.json").read_text()) for e in ("transformers", "vllm")
    }
    assert reports["vllm"]["judged_pairs"] == reports["transformers"]["judged_pairs"] > 0
    assert reports["vllm"]["score_source"] == "judge"
    cmp = compare_mined(str(tmp_path / "transformers"), str(tmp_path / "vllm"))
    assert cmp["equal"], cmp
    assert cmp["rows"][0] > 0
