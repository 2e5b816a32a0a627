"""The evaluate job's command line and configs, and the report for mixed task kinds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from uniembed.config import ConfigError, parse_config
from uniembed.evaluation.config import EvalConfig
from uniembed.evaluation.report import DedupeStats, EvalResults, TaskResult, write_report

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "jobs"))
import evaluate  # noqa: E402  (jobs/ is a folder of scripts, not a package)

FLAGS = {"model": "model.name", "data": "data", "output": "output", "baseline": "baseline"}


@pytest.mark.parametrize("path", sorted((REPO / "jobs" / "configs").glob("evaluate*.yaml")))
def test_every_evaluate_config_loads(path: Path) -> None:
    cfg = parse_config(EvalConfig, ["--config", str(path)], prog="t", description="")
    assert cfg.data and cfg.output and cfg.model.name
    first = path.read_text().splitlines()[0]
    assert first.startswith("#") and "evaluate.py" in path.read_text().split("\n\n")[0]


def test_command_line_flags_and_validation(tmp_path: Path) -> None:
    cfg = parse_config(
        EvalConfig,
        ["--model", "m", "--data", "a.jsonl", "--data", "dir/", "--output", "o", "--baseline", "b"],
        prog="t",
        description="",
        flags=FLAGS,
    )
    assert (cfg.model.name, cfg.data, cfg.output, cfg.baseline) == (
        "m",
        ["a.jsonl", "dir/"],
        "o",
        "b",
    )
    with pytest.raises(ConfigError, match="data is required"):
        parse_config(EvalConfig, ["--output", "o"], prog="t", description="", flags=FLAGS)
    with pytest.raises(ConfigError, match="ks: every cutoff must be >= 1"):
        EvalConfig(data=["a"], output="o", ks=[0])


def test_rerank_option_parses_and_validates(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        evaluate.main(["--help"])
    assert "--rerank RERANK" in capsys.readouterr().out  # the job's own flag
    flags = {**FLAGS, "rerank": "rerank"}
    argv = ["--data", "a.jsonl", "--output", "o", "--rerank", "runs/r/export"]
    cfg = parse_config(EvalConfig, [*argv, "rerank_top_k=5"], prog="t", description="", flags=flags)
    assert (cfg.rerank, cfg.rerank_top_k) == ("runs/r/export", 5)
    assert parse_config(EvalConfig, argv[:4], prog="t", description="", flags=flags).rerank is None
    with pytest.raises(ConfigError, match="rerank_top_k must be >= 1"):
        EvalConfig(data=["a"], output="o", rerank="r", rerank_top_k=0)
    with pytest.raises(ConfigError, match="rerank must not be empty"):
        EvalConfig(data=["a"], output="o", rerank="")


def test_report_for_mixed_kinds_lists_categories_and_exclusions(tmp_path: Path) -> None:
    mmeb = TaskResult.from_candidate_scores(np.array([[0.9, 0.1], [0.2, 0.5]]))
    mmeb.n_excluded, mmeb.excluded = 2, ["t.jsonl:3: cannot read image x.png"]
    caps = TaskResult(
        {"image_to_text_R@1": 1.0, "text_to_image_R@1": 0.5},
        [0.9, 0.2],
        [0.1, 0.4],
        [1, 2],
        2,
        primary_metric="text_to_image_R@1",
        kind="captions",
    )
    comp = TaskResult(
        {"accuracy": 0.5},
        [0.9, 0.2],
        [0.1, 0.4],
        [1, 2],
        2,
        primary_metric="accuracy",
        kind="compositional",
        categories={
            "replace_att": {"accuracy": 1.0, "n": 1},
            "swap_obj": {"accuracy": 0.0, "n": 1},
        },
    )
    res = EvalResults("m", "d", {"MMEB": mmeb, "flickr": caps, "sugar": comp}, DedupeStats(10, 7))
    write_report(str(tmp_path), res, None)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "### Candidate lists" in md and "### Caption retrieval" in md
    assert "| sugar | swap_obj    |     1 |          0.0 |" in md
    assert "- **MMEB**: 2 of 4 excluded" in md and "`t.jsonl:3: cannot read image x.png`" in md
    mmeb_table = md.split("### Candidate lists")[1].split("###")[0]
    assert "| MMEB | Other |       2 |        2 |" in mmeb_table
    summary = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert summary["tasks"]["sugar"]["categories"]["replace_att"] == {"accuracy": 1.0, "n": 1}
    assert summary["tasks"]["MMEB"]["n_excluded"] == 2
    (line,) = (tmp_path / "excluded.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line) == {"task": "MMEB", "source": "t.jsonl:3", "reason": mmeb.excluded[0]}
    assert summary["aggregate"]["overall"] == pytest.approx((0.5 + 0.5 + 0.5) / 3)
    # The dict form round-trips the new fields.
    again = EvalResults.from_dict(json.loads(json.dumps(res.to_dict())))
    assert again.tasks["sugar"].categories == comp.categories
    assert again.tasks["MMEB"].excluded == mmeb.excluded
