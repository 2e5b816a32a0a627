"""The KubeRay manifests: valid against the v1.7.0 CRDs, up to date with their values file,
consistent with the job configs, the image and pyproject, and free of credentials."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster import preflight
from cluster.crd import validate_manifest
from cluster.manifests import (
    STORAGE_ENV_KEYS,
    ClusterValues,
    load_values,
    ray_version_from_pyproject,
    render_all,
)

from uniembed.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO.parent / "shared" / "kuberay-crds"
MANIFESTS = REPO / "cluster" / "manifests"
VALUES = REPO / "cluster" / "cluster.yaml"

needs_crds = pytest.mark.skipif(not CRD_DIR.is_dir(), reason=f"KubeRay CRDs not found at {CRD_DIR}")


@pytest.fixture(scope="module")
def values() -> ClusterValues:
    return load_values(VALUES, REPO)


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(MANIFESTS.glob("*.yaml"))}


def _cluster_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]
    return [
        s
        for s in (spec, spec.get("rayClusterSpec"), spec.get("rayClusterConfig"))
        if isinstance(s, dict) and "headGroupSpec" in s
    ]


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for spec in _cluster_specs(doc):
        out += spec["headGroupSpec"]["template"]["spec"]["containers"]
        for group in spec.get("workerGroupSpecs", []):
            out += group["template"]["spec"]["containers"]
    return out


def test_manifests_are_rendered_from_the_values_file(values: ClusterValues) -> None:
    rendered = render_all(values, REPO)
    on_disk = {p.name: p.read_text() for p in MANIFESTS.glob("*.yaml")}
    assert on_disk == rendered, "stale manifests: run python cluster/render.py"


def test_every_kind_is_there(docs: dict[str, dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in docs.values())
    assert kinds.count("RayCluster") == 1 and kinds.count("RayService") == 1
    jobs = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]
        for d in docs.values()
        if d["kind"] == "RayJob"
    }
    assert jobs == {"mine", "distill", "tune", "train_reranker"}


@needs_crds
def test_manifests_validate_against_the_crds(docs: dict[str, dict[str, Any]]) -> None:
    errors = [e for d in docs.values() for e in validate_manifest(d, CRD_DIR)]
    assert errors == []


@needs_crds
@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda d: d["spec"]["workerGroupSpecs"][0].pop("maxReplicas"), "'maxReplicas' is a"),
        (lambda d: d["spec"]["headGroupSpec"].update(rayStartParam={}), "'rayStartParam' was"),
        (lambda d: d["spec"]["workerGroupSpecs"][0].update(minReplicas="1"), "is not of type"),
        (lambda d: d["spec"]["autoscalerOptions"].update(upscalingMode="Fast"), "'Fast' is not"),
        (lambda d: d.update(apiVersion="ray.io/v1alpha1"), "apiVersion must be ray.io/v1"),
    ],
)
def test_the_validator_catches_broken_manifests(
    docs: dict[str, dict[str, Any]], break_it: Any, message: str
) -> None:
    doc = copy.deepcopy(docs["raycluster.yaml"])
    break_it(doc)
    errors = validate_manifest(doc, CRD_DIR)
    assert any(message in e for e in errors), errors


def test_all_clusters_share_image_resources_and_gpus(
    docs: dict[str, dict[str, Any]], values: ClusterValues
) -> None:
    specs = [s for d in docs.values() for s in _cluster_specs(d)]
    assert len(specs) == len(docs)
    pyproject_ray = ray_version_from_pyproject(REPO)
    for spec in specs:
        assert spec["rayVersion"] == pyproject_ray
        assert spec["enableInTreeAutoscaling"] is True
        assert spec["authOptions"] == {"mode": "token"}
        (group,) = spec["workerGroupSpecs"]
        assert group["minReplicas"] >= 1, "the GPU pre-flight checks need one GPU pod up"
        assert group["minReplicas"] <= group["maxReplicas"] == values.gpu_workers.max_replicas
        (worker,) = group["template"]["spec"]["containers"]
        limits = worker["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == values.gpu_workers.gpus
        assert worker["resources"]["requests"] == limits
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert "nvidia.com/gpu" not in head["resources"]["limits"]
    images = {c["image"] for d in docs.values() for c in _containers(d)}
    assert images == {values.image}


def test_credentials_come_only_from_the_secret(docs: dict[str, dict[str, Any]]) -> None:
    for name, doc in docs.items():
        for c in _containers(doc):
            env = {e["name"]: e for e in c["env"]}
            for var, key in STORAGE_ENV_KEYS.items():
                ref = env[var]["valueFrom"]["secretKeyRef"]
                assert "value" not in env[var] and ref["key"] == key, (name, var)
        text = (MANIFESTS / name).read_text()
        # No access-key-like or secret-like literal anywhere in the file.
        assert not re.search(r"AKIA[0-9A-Z]{12,}|aws_secret_access_key\s*[:=]", text, re.I)
        assert "secret_access_key:" not in text.replace("key: secret_access_key", "")


def test_every_ray_container_has_the_storage_root_and_train_state_tracking(
    docs: dict[str, dict[str, Any]], values: ClusterValues
) -> None:
    """Relative outputs land under the storage root, not in the pod's temporary working
    dir; the dashboard's Train page shows the runs."""
    for name, doc in docs.items():
        for c in _containers(doc):
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env["UNIEMBED_STORAGE_ROOT"] == values.storage_root, name
            assert env["RAY_TRAIN_ENABLE_STATE_TRACKING"] == "1", name


def test_rayjob_entrypoints_are_the_jobs_own_commands(
    docs: dict[str, dict[str, Any]], values: ClusterValues
) -> None:
    dockerfile = (REPO / "cluster" / "Dockerfile").read_text()
    assert f"WORKDIR {values.app_dir}" in dockerfile
    for doc in docs.values():
        if doc["kind"] != "RayJob":
            continue
        job = values.jobs[doc["metadata"]["labels"]["app.kubernetes.io/component"]]
        assert doc["spec"]["entrypoint"] == (
            f"python {values.app_dir}/{job.script} --config {values.app_dir}/{job.config}"
        )
        assert f"COPY {job.script.split('/')[0]}/" in dockerfile
        env = yaml.safe_load(doc["spec"]["runtimeEnvYAML"])
        assert set(env) == {"env_vars"}, "code and dependencies come from the image"


@pytest.mark.parametrize("job", ["mine", "distill", "tune", "train_reranker"])
def test_job_configs_fit_the_cluster(values: ClusterValues, job: str) -> None:
    spec = values.jobs[job]
    for path in (spec.script, spec.config):
        if not (REPO / path).is_file():
            pytest.skip(f"{path} is absent: the {job} job is not written yet")
    config = yaml.safe_load((REPO / spec.config).read_text())
    assert preflight.gpu_demand(config) == spec.gpus, "cluster.yaml's gpus must match the config"
    assert preflight.local_data_paths(config) == [], "cluster configs must use storage URIs"
    for model_path in preflight.local_model_paths(config):
        assert values.models_volume.claim and model_path.startswith(
            values.models_volume.mount_path + "/"
        ), f"{model_path} is not on the mounted models volume"
    scaling = config.get("scaling") or {}
    worker_cpus = float(values.gpu_workers.cpu)
    assert float(scaling.get("cpus_per_worker", 1)) <= worker_cpus
    assert float(scaling.get("gpus_per_worker", 1)) <= values.gpu_workers.gpus


def test_rayservice_runs_the_serve_config(docs: dict[str, dict[str, Any]]) -> None:
    from uniembed.serving.config import load_serve_config

    doc = docs["rayservice.yaml"]
    serve = yaml.safe_load(doc["spec"]["serveConfigV2"])
    source = yaml.safe_load((REPO / "jobs" / "configs" / "serve.yaml").read_text())
    assert [a["import_path"] for a in serve["applications"]] == [
        a["import_path"] for a in source["applications"]
    ]
    (app,) = serve["applications"]
    cfg = load_serve_config(app["args"])  # the cluster's overrides are valid config keys
    gpu_pod = doc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    total = cfg.embedder.deployment.num_gpus * cfg.embedder.deployment.max_replicas
    if cfg.reranker.enabled:
        total += cfg.reranker.deployment.num_gpus * cfg.reranker.deployment.max_replicas
    assert (
        total
        <= gpu_pod["maxReplicas"]
        * gpu_pod["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    )
    head = doc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"name": "serve", "containerPort": 8000} in [
        {"name": p["name"], "containerPort": p["containerPort"]} for p in head["ports"]
    ]
    env = {e["name"]: e for e in head["env"]}
    assert env["UNIEMBED_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_values_reject_a_job_larger_than_the_gpu_group() -> None:
    data = yaml.safe_load(VALUES.read_text())
    data["jobs"]["tune"]["gpus"] = 64
    from uniembed.config import from_dict

    with pytest.raises(ConfigError, match=r"jobs.tune.gpus = 64 exceeds .* capacity 8"):
        from_dict(ClusterValues, data)
