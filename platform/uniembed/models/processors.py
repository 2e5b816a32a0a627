"""Loading a multimodal processor without its video half.

Why: ``Qwen2VLProcessor`` (and ``LlavaOnevisionProcessor``) take a video processor, and
transformers' video processors need torchvision, which the project does not install (a
plain torchvision requirement can pull a CUDA torch onto CPU machines).
``AutoProcessor.from_pretrained`` on a Qwen2-VL folder therefore fails with "Can't load
video processor". We embed images and text only, so we build the family's processor
class explicitly from ``AutoImageProcessor`` (the PIL backend when torchvision is
absent), ``AutoTokenizer`` and the folder's processor settings and chat template, through
a subclass whose constructor signature has no ``video_processor``: transformers derives a
processor's sub-processors from that signature, so the instance neither wants nor runs a
video processor. The folder stays a normal processor folder (``processor_class`` is the
real class) that ``AutoProcessor`` loads where torchvision is installed.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from pathlib import Path
from typing import Any

import transformers


@functools.cache
def image_only_processor_class(class_name: str) -> type:
    """A subclass of ``transformers.<class_name>`` that loads and runs without video."""
    base = getattr(transformers, class_name)
    signature = inspect.signature(base.__init__)
    takes_video = "video_processor" in signature.parameters

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        if takes_video:
            kwargs["video_processor"] = None
        base.__init__(self, *args, **kwargs)

    # transformers reads the constructor's signature both to decide which sub-processors
    # to load and to filter the saved processor kwargs (patch_size, ...): keep the base
    # signature, minus the video processor.
    __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for name, p in signature.parameters.items() if name != "video_processor"]
    )
    return type(f"{class_name}ImageOnly", (base,), {"__init__": __init__})


def load_image_processor(folder: str | os.PathLike[str], class_name: str) -> Any:
    """Load the processor of a model folder: image processor, tokenizer, chat template and
    the processor's own settings (patch size, image token, ...), built explicitly so that
    no video processor is looked for."""
    from transformers import AutoImageProcessor, AutoTokenizer

    cls = image_only_processor_class(class_name)
    settings, _ = cls.get_processor_dict(str(folder))
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
    accepted -= {"image_processor", "tokenizer"}
    return cls(
        image_processor=AutoImageProcessor.from_pretrained(str(folder)),
        tokenizer=AutoTokenizer.from_pretrained(str(folder)),
        **{k: v for k, v in settings.items() if k in accepted},
    )


def save_processor(processor: Any, folder: str | os.PathLike[str], class_name: str) -> None:
    """``save_pretrained`` a processor, recording ``class_name`` (not our subclass) as its
    class so that ``AutoProcessor`` resolves the real transformers processor."""
    processor.save_pretrained(str(folder))
    path = Path(folder) / "processor_config.json"
    if path.is_file():
        data = json.loads(path.read_text())
        data["processor_class"] = class_name
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
