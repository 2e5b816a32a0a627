"""Write the KubeRay manifests in cluster/manifests/ from cluster/cluster.yaml.

python cluster/render.py            # (re)write the manifests
python cluster/render.py --check    # exit 1, naming the files, if they are stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "platform")]

from cluster.manifests import load_values, render_all  # noqa: E402

VALUES = REPO / "cluster" / "cluster.yaml"
OUT_DIR = REPO / "cluster" / "manifests"


def stale_files(out_dir: Path = OUT_DIR) -> list[str]:
    """Manifest files whose content differs from a fresh render (or that are missing/extra)."""
    rendered = render_all(load_values(VALUES, REPO), REPO)
    stale = [
        f
        for f, text in rendered.items()
        if not (out_dir / f).is_file() or (out_dir / f).read_text() != text
    ]
    extra = [p.name for p in out_dir.glob("*.yaml") if p.name not in rendered]
    return sorted(stale + extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale manifests")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"stale manifests (run python cluster/render.py): {', '.join(stale)}")
            return 1
        print("manifests are up to date")
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    rendered = render_all(load_values(VALUES, REPO), REPO)
    for path in OUT_DIR.glob("*.yaml"):
        if path.name not in rendered:
            path.unlink()
    for name, text in rendered.items():
        (OUT_DIR / name).write_text(text)
        print(f"wrote cluster/manifests/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
