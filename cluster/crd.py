"""Offline validation of KubeRay manifests against the CRDs' OpenAPI v3 schemas.

The API server prunes fields a structural schema does not declare, so a misspelt key in a
manifest is silently dropped there. Here every object schema that lists ``properties`` and
does not say ``x-kubernetes-preserve-unknown-fields`` is closed (``additionalProperties:
false``): a typo is an error. ``x-kubernetes-int-or-string`` is expressed as integer-or-
string. CEL rules (``x-kubernetes-validations``) are not evaluated.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

API_VERSION = "ray.io/v1"
KIND_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayService": "ray.io_rayservices.yaml",
}
_METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}


def _loader() -> type:
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _close(node: Any) -> Any:
    """Return the schema with Kubernetes extensions turned into plain JSON Schema."""
    if isinstance(node, list):
        return [_close(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _close(v) for k, v in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        if "anyOf" not in out:
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


@functools.cache
def load_schema(crd_dir: str, kind: str) -> dict[str, Any]:
    """The closed ``v1`` schema of ``kind`` from the CRD file in ``crd_dir`` (cached: the
    files are about 1 MB each)."""
    if kind not in KIND_FILES:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(KIND_FILES)}")
    path = Path(crd_dir) / KIND_FILES[kind]
    with open(path, encoding="utf-8") as f:
        crd = yaml.load(f, Loader=_loader())
    versions = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    if not versions:
        raise ValueError(f"{path}: no v1 version")
    schema = _close(copy.deepcopy(versions[0]["schema"]["openAPIV3Schema"]))
    schema["properties"]["metadata"] = _METADATA_SCHEMA
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "spec"})
    return schema


def validate_manifest(doc: Mapping[str, Any], crd_dir: str | Path) -> list[str]:
    """Errors of one manifest (empty when valid), each as ``<kind>/<name> at <path>: <msg>``."""
    from jsonschema import Draft7Validator

    kind = doc.get("kind")
    name = (doc.get("metadata") or {}).get("name", "?")
    if doc.get("apiVersion") != API_VERSION:
        return [f"{kind}/{name}: apiVersion must be {API_VERSION}, not {doc.get('apiVersion')!r}"]
    if kind not in KIND_FILES:
        return [f"{kind}/{name}: kind must be one of {sorted(KIND_FILES)}"]
    validator = Draft7Validator(load_schema(str(crd_dir), kind))
    errors = sorted(validator.iter_errors(dict(doc)), key=lambda e: list(e.absolute_path))
    return [
        f"{kind}/{name} at {'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in errors
    ]
