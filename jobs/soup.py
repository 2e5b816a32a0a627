"""Average (model soup) or fuse (delta-guided) several exports of one model.

    python jobs/soup.py --inputs outputs/train/a/export --inputs outputs/train/b/export \\
        --output outputs/soup
    python jobs/soup.py --inputs A --inputs B --method delta --base minilm --output outputs/fused

The inputs are train-job export folders of the same base model (local or s3://). The
output is an export folder itself: the evaluate, embed and serve jobs and
``SentenceTransformer(folder)`` load it like any other.
"""

from __future__ import annotations

import sys
from pathlib import Path

from uniembed.cli import run_job
from uniembed.config import parse_config
from uniembed.training.soup_job import SoupConfig, run_soup

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "soup.yaml"


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(
        SoupConfig,
        argv,
        prog="soup.py",
        description=__doc__,
        default_config=DEFAULT_CONFIG,
        flags={"inputs": "inputs", "output": "output", "method": "method", "base": "base"},
    )
    out = run_soup(cfg)
    print(f"{cfg.method} of {len(cfg.inputs)} exports written to {storage_uri(out)}")
    return 0


def storage_uri(uri: str) -> str:
    """The absolute form of ``uri`` (local paths resolved from the working folder)."""
    from uniembed import storage

    return storage.absolute(uri)


if __name__ == "__main__":
    sys.exit(run_job(main, "soup"))
