"""The MLLM snippet of docs/export.md, run as written on an export of the tiny Qwen2-VL,
gives uniembed's vectors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from uniembed.models import EmbedInput, load_embedder
from uniembed.models.pooling_config import PoolingConfig
from uniembed.models.processors import load_image_processor
from uniembed.models.registry import resolve_model
from uniembed.training.export import export_model

DOC = Path(__file__).resolve().parents[2] / "docs" / "export.md"


class _ImageOnlyAutoProcessor:
    @staticmethod
    def from_pretrained(folder: str) -> object:
        return load_image_processor(folder, "Qwen2VLProcessor")


def _snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    (code,) = [b for b in blocks if "AutoModel" in b]
    assert len([line for line in code.splitlines() if line.strip()]) <= 11
    return code


def test_mllm_export_loads_with_automodel_and_the_documented_snippet(tmp_path: Path) -> None:
    embedder = load_embedder("tiny-qwen2-vl")
    out = str(tmp_path / "export")
    export_model(embedder.model, resolve_model("tiny-qwen2-vl"), out, PoolingConfig())
    assert not (tmp_path / "export" / "modules.json").exists()  # no ST pipeline for MLLMs
    ours = load_embedder(out)
    # transformers' AutoProcessor builds Qwen2-VL's video processor too, which needs
    # torchvision (not a dependency here; docs/export.md says to install it). Every other
    # line runs as written; the processor comes from the same folder without its video half.
    code = _snippet()
    line = "from transformers import AutoModel, AutoProcessor"
    assert line in code
    scope = {"export_dir": out, "AutoProcessor": _ImageOnlyAutoProcessor}
    exec(code.replace(line, "from transformers import AutoModel"), scope)
    image = Image.new("RGB", (28, 28), (200, 30, 30))
    cases = [
        (EmbedInput(text="a red square"), {"text": "a red square"}),
        (EmbedInput(image=image), {"image": image}),
        (
            EmbedInput(text="a red square", image=image, instruction="Find the caption."),
            {"text": "Find the caption. a red square", "image": image},
        ),
    ]
    for inp, kwargs in cases:
        want = ours.embed([inp])[0]
        got = scope["embed"](**kwargs).numpy()
        assert np.abs(want - got).max() < 1e-5, inp
