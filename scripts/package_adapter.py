"""Commit a trained run's LoRA adapter as a model of the repository (``models/<name>/``).

    python scripts/package_adapter.py outputs/train/judge-smollm2-wordnet/export \\
        --name smollm2-135m-judge --base smollm2-135m

Copies ``<export>/adapter`` with its weights in float16 and the base model named by its
registry name (``uniembed.models.adapters.package_adapter``). The registry entry of that
name then loads the base model with the adapter merged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "platform"))

from uniembed.models.adapters import ADAPTERS_ROOT, package_adapter  # noqa: E402
from uniembed.training.export import ADAPTER_DIR  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("export", help="a train run's export folder (holds adapter/)")
    p.add_argument("--name", required=True, help="folder name under models/")
    p.add_argument("--base", required=True, help="the base model's registry name")
    args = p.parse_args(argv)
    dest = ADAPTERS_ROOT / args.name
    package_adapter(Path(args.export) / ADAPTER_DIR, dest, args.base)
    size = sum(f.stat().st_size for f in dest.iterdir() if f.is_file())
    print(f"{dest}: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
