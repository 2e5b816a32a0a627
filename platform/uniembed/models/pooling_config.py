"""``uniembed.json``: the pooling config a model folder may carry.

The train job writes it next to the exported weights so that the embedder is prompted and
pooled the way it was trained. Every field is optional; a missing field takes the family's
default. Precedence when loading: ``load_embedder(pooling=...)`` > ``uniembed.json`` >
family default.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from uniembed.config import ConfigError, require
from uniembed.models.families import Family, family_by_name
from uniembed.models.pooling import POOLERS

POOLING_CONFIG_FILE = "uniembed.json"


@dataclass(frozen=True)
class PoolingConfig:
    """Overrides of a family's defaults; ``None`` keeps the default.

    Templates use ``{text}`` (the input text, instruction in front) and ``{image}`` (the
    family's image token), e.g. ``"{image}\\nSummary above image in one word:"``.
    ``max_length`` truncates text-only inputs (tokens); MLLM inputs are never truncated
    because a cut could split an image's tokens.
    """

    family: str | None = None
    pooling: str | None = None
    image_token: str | None = None
    text_template: str | None = None
    image_template: str | None = None
    image_text_template: str | None = None
    use_chat_template: bool | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        require(
            self.pooling is None or self.pooling in POOLERS,
            f"pooling: {self.pooling!r} is not one of {sorted(POOLERS)}",
        )
        require(self.max_length is None or self.max_length > 0, "max_length: must be > 0")
        for field, needs in (
            ("text_template", ("{text}",)),
            ("image_template", ("{image}",)),
            ("image_text_template", ("{image}", "{text}")),
        ):
            value = getattr(self, field)
            if value is None:
                continue
            require(all(n in value for n in needs), f"{field}: must contain {' and '.join(needs)}")
            try:
                value.format(text="t", image="i")
            except (KeyError, IndexError, ValueError) as e:
                raise ConfigError(f"{field}: {value!r} is not a valid template ({e})") from e


@dataclass(frozen=True)
class ResolvedPooling:
    """A family's defaults with every override applied; what the embedder runs with."""

    family: Family
    pooling: str
    image_token: str | None
    text_template: str
    image_template: str | None
    image_text_template: str | None
    use_chat_template: bool
    max_length: int | None


def resolve_pooling(family: Family, override: PoolingConfig | None) -> ResolvedPooling:
    """Apply ``override`` (may be None) to ``family``'s defaults."""
    o = override or PoolingConfig()

    def pick(value: object, default: object) -> object:
        return default if value is None else value

    return ResolvedPooling(
        family=family,
        pooling=pick(o.pooling, family.pooling),
        image_token=pick(o.image_token, family.image_token),
        text_template=pick(o.text_template, family.text_template),
        image_template=pick(o.image_template, family.image_template),
        image_text_template=pick(o.image_text_template, family.image_text_template),
        use_chat_template=pick(o.use_chat_template, family.kind != "encoder"),
        max_length=o.max_length,
    )


def save_pooling_config(folder: str | os.PathLike[str], config: PoolingConfig) -> Path:
    """Write ``config`` as ``uniembed.json`` in ``folder`` (only the fields that are set).

    The file is written to a temporary name and renamed, so readers never see half of it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in dataclasses.asdict(config).items() if v is not None}
    if config.family is not None:
        family_by_name(config.family, str(folder))  # fail at export, not at the first load
    fd, tmp = tempfile.mkstemp(prefix=".uniembed.", suffix=".json", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    path = folder / POOLING_CONFIG_FILE
    os.replace(tmp, path)
    return path


def load_pooling_config(folder: str | os.PathLike[str]) -> PoolingConfig | None:
    """Read ``uniembed.json`` from ``folder``; None when the folder has none.

    Raises ValueError naming the file for unknown keys or invalid values.
    """
    path = Path(folder) / POOLING_CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be an object")
    known = {f.name for f in dataclasses.fields(PoolingConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {sorted(known)}")
    try:
        return PoolingConfig(**data)
    except ValueError as e:  # ConfigError is a ValueError
        raise ValueError(f"{path}: {e}") from e
