"""Embed a corpus with an (M)LLM embedder on a Ray Data actor pool.

python jobs/embed.py --input data/demo/embed_corpus.jsonl --output outputs/embed --model minilm
ray job submit --working-dir . -- python jobs/embed.py --config jobs/configs/embed.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

from uniembed.cli import run_job
from uniembed.config import parse_config
from uniembed.data.locations import place
from uniembed.embed.config import EmbedConfig
from uniembed.embed.pipeline import run_embed
from uniembed.observe.figures import publish

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "embed.yaml"


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(
        EmbedConfig,
        argv,
        prog="embed.py",
        description=__doc__,
        default_config=DEFAULT_CONFIG,
        flags={
            "input": "input",
            "output": "output",
            "model": "model.name",
            "format": "format",
            "overwrite": "overwrite",
            "allow_empty": "allow_empty",
        },
    )
    cfg = place(cfg, ("output",), ("input", "model.name"))
    summary = run_embed(cfg)
    figures = {"rows_read": summary.rows_in, "rows_written": summary.rows_out}
    figures.update(quarantined=summary.rows_quarantined, items_per_s=summary.items_per_s)
    publish("embed", figures, {"output": cfg.output})
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(run_job(main, "embed"))
