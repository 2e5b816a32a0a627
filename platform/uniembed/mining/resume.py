"""What a resumed mine run must share with the run whose shards it keeps.

Judged shards hold the retrieval and the judge's scores of one set of settings; a rerun
into the same output with ``resume=true`` keeps them. If the settings that produced them
changed (another judge, embedder, K, filters or input), keeping them would mix two runs in
one output, so the rerun is refused and the differing keys named.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from uniembed import storage
from uniembed.config import ConfigError
from uniembed.mining.config import MineConfig
from uniembed.models.adapters import model_revision

RUN_FILE = "mine_run.json"


def fingerprint(cfg: MineConfig) -> dict[str, Any]:
    """The settings the judged shards depend on, as dotted keys."""
    judge = cfg.judge if cfg.selection.mode == "judge" else None
    return {
        "queries": cfg.queries,
        "queries_format": cfg.queries_format,
        "pool": cfg.pool,
        "max_queries": cfg.max_queries,
        "shard_size": cfg.shard_size,
        "group_field": cfg.group_field,
        "embedder.name": cfg.embedder.name,
        "embedder.revision": model_revision(cfg.embedder.name),
        **{f"retrieval.{k}": v for k, v in dataclasses.asdict(cfg.retrieval).items()},
        "selection.mode": cfg.selection.mode,
        "judge.model.name": judge.model.name if judge else None,
        # a committed adapter retrained under the same name scores differently
        "judge.model.revision": model_revision(judge.model.name) if judge else None,
        "judge.include_instruction": judge.include_instruction if judge else None,
        "sanity.auc_floor": cfg.sanity.auc_floor if judge else None,
        "sanity.calibration_queries": cfg.sanity.calibration_queries if judge else None,
        "sanity.on_fail": cfg.sanity.on_fail if judge else None,
    }


def check_resume(output: str, cfg: MineConfig) -> None:
    """Record this run's fingerprint in ``output``; with ``resume`` first check it against
    the recorded one and raise ConfigError (a ValueError, and a user error: one line, exit
    2) naming every key that differs."""
    uri = storage.join(output, RUN_FILE)
    current = fingerprint(cfg)
    if (
        cfg.resume
        and not storage.exists(uri)
        and storage.list_files(storage.join(output, "judged"))
    ):
        raise ConfigError(
            f"output {output} holds judged shards of a run whose settings were not recorded; "
            "pass resume=false (the output is replaced when the new run finishes) or choose "
            "another --output"
        )
    if cfg.resume and storage.exists(uri):
        before = json.loads(storage.read_text(uri))
        changed = [k for k in current if before.get(k) != current[k]]
        if changed:
            diffs = "; ".join(f"{k}: {before.get(k)!r} -> {current[k]!r}" for k in changed)
            raise ConfigError(
                f"output {output} holds shards of a run with other settings ({diffs}); "
                "resuming would mix the two: pass resume=false (the output is replaced when "
                "the new run finishes) or choose another --output"
            )
    storage.write_text(uri, json.dumps(current, indent=1, sort_keys=True) + "\n")
