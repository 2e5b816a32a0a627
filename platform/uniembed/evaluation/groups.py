"""Task groups (MMEB's four meta-tasks) and the per-group / overall averages.

The default table is MMEB-eval's 36 tasks in its four categories. A YAML file of the form
``{group: [task, ...]}`` replaces it for other suites (``load_groups``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

# Task names as MMEB-eval spells its subsets.
MMEB_GROUPS: dict[str, tuple[str, ...]] = {
    "CLS": (
        "ImageNet-1K",
        "N24News",
        "HatefulMemes",
        "VOC2007",
        "SUN397",
        "Place365",
        "ImageNet-A",
        "ImageNet-R",
        "ObjectNet",
        "Country211",
    ),
    "VQA": (
        "OK-VQA",
        "A-OKVQA",
        "DocVQA",
        "InfographicsVQA",
        "ChartQA",
        "Visual7W",
        "ScienceQA",
        "VizWiz",
        "GQA",
        "TextVQA",
    ),
    "RET": (
        "VisDial",
        "CIRR",
        "VisualNews_t2i",
        "VisualNews_i2t",
        "MSCOCO_t2i",
        "MSCOCO_i2t",
        "NIGHTS",
        "WebQA",
        "FashionIQ",
        "Wiki-SS-NQ",
        "OVEN",
        "EDIS",
    ),
    "VG": ("MSCOCO", "RefCOCO", "RefCOCO-Matching", "Visual7W-Pointing"),
}

OTHER = "Other"  # group of tasks that no group lists
OVERALL = "overall"  # key of the mean over all tasks in ``aggregate``'s result


def groups_from_mapping(
    data: Mapping[str, object], source: str = "groups"
) -> dict[str, tuple[str, ...]]:
    """Validate ``{group: [task, ...]}``: string names, no task in two groups, no reserved name.

    ``source`` names where the mapping came from, for error messages.
    """
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{source}: expected a non-empty mapping of group -> [task, ...]")
    seen: dict[str, str] = {}
    out: dict[str, tuple[str, ...]] = {}
    for group, tasks in data.items():
        if not isinstance(group, str) or not group:
            raise ValueError(f"{source}: group name {group!r} must be a non-empty string")
        if group == OVERALL:
            raise ValueError(f"{source}: group name {OVERALL!r} is reserved for the overall mean")
        if isinstance(tasks, str) or not isinstance(tasks, Sequence) or not tasks:
            raise ValueError(f"{source}.{group}: expected a non-empty list of task names")
        for task in tasks:
            if not isinstance(task, str) or not task:
                raise ValueError(f"{source}.{group}: task {task!r} must be a non-empty string")
            if task in seen:
                raise ValueError(
                    f"{source}.{group}: task {task!r} is already in group {seen[task]}"
                )
            seen[task] = group
        out[group] = tuple(tasks)
    return out


def load_groups(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Read a ``{group: [task, ...]}`` YAML file (local path or storage URI)."""
    from uniembed.config import load_yaml

    return groups_from_mapping(load_yaml(path), source=str(path))


def group_of(task: str, groups: Mapping[str, Sequence[str]] | None = None) -> str:
    """The group listing ``task``, or ``"Other"``."""
    for group, tasks in (MMEB_GROUPS if groups is None else groups).items():
        if task in tasks:
            return group
    return OTHER


def aggregate(
    per_task: Mapping[str, float], groups: Mapping[str, Sequence[str]] | None = None
) -> dict[str, float]:
    """Mean score per group, and ``"overall"``: the mean over all tasks (as MMEB tables do).

    Args:
        per_task: task name -> score (e.g. precision@1 as a fraction).
        groups: ``{group: [task, ...]}``; default ``MMEB_GROUPS``. Tasks that no group lists
            are averaged under ``"Other"``.

    Returns ``{group: mean}`` for each group with at least one scored task, in the groups'
    order (``"Other"`` last), then ``"overall"``. Groups with no scored task are left out
    rather than reported as 0.
    """
    if not per_task:
        raise ValueError("per_task: no task scores to aggregate")
    for task, score in per_task.items():
        if isinstance(score, bool) or not isinstance(score, (int, float, np.floating, np.integer)):
            raise ValueError(f"per_task[{task!r}]: expected a number, got {score!r}")
        if not np.isfinite(score):
            raise ValueError(f"per_task[{task!r}]: score must be finite, got {score}")
    table = MMEB_GROUPS if groups is None else groups_from_mapping(groups)
    members: dict[str, list[float]] = {g: [] for g in table}
    members[OTHER] = []
    for task, score in per_task.items():
        members[group_of(task, table)].append(float(score))
    out = {g: float(np.mean(v)) for g, v in members.items() if v}
    out[OVERALL] = float(np.mean([float(s) for s in per_task.values()]))
    return out
