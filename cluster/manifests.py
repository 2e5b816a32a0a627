"""KubeRay manifests (RayCluster, RayJobs, RayService) built from one values file.

``cluster/cluster.yaml`` holds the image, the head and GPU worker pods, the jobs and the
serve overrides; every manifest takes its cluster spec from :func:`cluster_spec`, so image,
resources and GPU counts cannot drift apart. ``python cluster/render.py`` writes them.

Credentials never appear in a manifest: every Ray container reads the S3 endpoint and keys
from a Secret (``secretKeyRef``), and Ray processes, job drivers included, inherit them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from uniembed.config import apply_overrides, from_dict, require

API_VERSION = "ray.io/v1"
APP_LABEL = "uniembed"
# The S3 settings as the storage module reads them (S3Options.from_env), from Secret keys.
STORAGE_ENV_KEYS = {
    "AWS_ENDPOINT_URL": "endpoint_url",
    "AWS_REGION": "region",
    "AWS_ACCESS_KEY_ID": "access_key_id",
    "AWS_SECRET_ACCESS_KEY": "secret_access_key",
}
# Plain settings every Ray container gets (no secrets here).
PLAIN_ENV = {
    # S3-compatible stores refuse the SDK's default upload checksums (see uniembed.storage).
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    "PYTHONUNBUFFERED": "1",
    # The dashboard's Train page: runs, attempts and workers.
    "RAY_TRAIN_ENABLE_STATE_TRACKING": "1",
}
# What the job driver gets through the runtime env on top of the image.
JOB_RUNTIME_ENV_VARS = {"TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
SERVE_PORT = 8000


@dataclass
class PodValues:
    """CPU and memory of the head pod (requests = limits)."""

    cpu: str = "8"
    memory: str = "32Gi"


@dataclass
class GpuWorkerValues:
    """The autoscaling GPU worker group."""

    group: str = "gpu"
    cpu: str = "16"
    memory: str = "96Gi"
    gpus: int = 1
    min_replicas: int = 1
    max_replicas: int = 8
    idle_timeout_s: int = 600
    node_selector: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(self.gpus >= 1, "gpu_workers.gpus must be >= 1")
        require(self.min_replicas >= 0, "gpu_workers.min_replicas must be >= 0")
        require(
            self.max_replicas >= max(1, self.min_replicas),
            "gpu_workers.max_replicas must be >= max(1, min_replicas)",
        )


@dataclass
class JobValues:
    """One RayJob: the job's script, its config and the GPUs it asks for in total."""

    script: str
    config: str
    gpus: float = 0

    def __post_init__(self) -> None:
        require(self.script.startswith("jobs/"), f"job script {self.script!r} must be in jobs/")
        require(self.config.startswith("jobs/configs/"), f"{self.config!r}: not in jobs/configs/")


@dataclass
class ModelsVolume:
    """A read-only volume with model weights, for configs that name ``/models/...``."""

    claim: str | None = field(default=None, metadata={"help": "PVC name; null: no volume"})
    mount_path: str = "/models"


@dataclass
class JobDefaults:
    """Limits shared by the RayJobs."""

    active_deadline_s: int = 172800
    backoff_limit: int = 2
    ttl_after_finished_s: int = 3600


@dataclass
class ServeValues:
    """The RayService: the Serve config file and the cluster's overrides of its args."""

    config: str = "jobs/configs/serve.yaml"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClusterValues:
    """``cluster/cluster.yaml``."""

    image: str
    ray_version: str = ""
    namespace: str | None = None
    image_pull_policy: str = "IfNotPresent"
    app_dir: str = "/app"
    storage_secret: str = "uniembed-s3"
    api_key_secret: str = "uniembed-api"
    # Relative output paths of every job resolve under it (UNIEMBED_STORAGE_ROOT): a job's
    # working dir is a temporary copy that goes with the pod.
    storage_root: str = "s3://uniembed"
    head: PodValues = field(default_factory=PodValues)
    gpu_workers: GpuWorkerValues = field(default_factory=GpuWorkerValues)
    models_volume: ModelsVolume = field(default_factory=ModelsVolume)
    jobs: dict[str, Any] = field(default_factory=dict)
    job_defaults: JobDefaults = field(default_factory=JobDefaults)
    serve: ServeValues = field(default_factory=ServeValues)

    def __post_init__(self) -> None:
        require(bool(self.image), "image is required")
        require(self.app_dir.startswith("/"), "app_dir must be an absolute path")
        require(
            self.storage_root.startswith(("s3://", "/")),
            "storage_root must be s3://bucket/prefix or an absolute shared path",
        )
        self.jobs = {
            name: v if isinstance(v, JobValues) else from_dict(JobValues, v, prefix=f"jobs.{name}")
            for name, v in self.jobs.items()
        }
        capacity = self.gpu_workers.gpus * self.gpu_workers.max_replicas
        for name, job in self.jobs.items():
            require(
                job.gpus <= capacity,
                f"jobs.{name}.gpus = {job.gpus:g} exceeds the GPU worker group's capacity "
                f"{capacity} (gpu_workers.gpus x gpu_workers.max_replicas)",
            )


def ray_version_from_pyproject(repo: Path) -> str:
    """The Ray version pinned in ``pyproject.toml`` (``"ray[...]==X"``)."""
    text = (repo / "pyproject.toml").read_text()
    match = re.search(r'^\s*"ray(?:\[[^\]]*\])?==([\w.]+)"', text, re.MULTILINE)
    if not match:
        raise ValueError("pyproject.toml pins no ray version (ray[...]==X)")
    return match.group(1)


def load_values(path: Path, repo: Path) -> ClusterValues:
    """Read the values file; the Ray version always comes from pyproject's pin."""
    data = yaml.safe_load(path.read_text()) or {}
    data["ray_version"] = ray_version_from_pyproject(repo)
    return from_dict(ClusterValues, data)


def _metadata(v: ClusterValues, name: str, component: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/name": APP_LABEL, "app.kubernetes.io/component": component},
    }
    if v.namespace:
        meta["namespace"] = v.namespace
    return meta


def container_env(v: ClusterValues, api_key: bool = False) -> list[dict[str, Any]]:
    """Environment of every Ray container: storage settings from the Secret, plain flags."""
    env: list[dict[str, Any]] = []
    for name, key in STORAGE_ENV_KEYS.items():
        # Endpoint and region may be absent (AWS S3 with its default region).
        ref = {"name": v.storage_secret, "key": key}
        if key in ("endpoint_url", "region"):
            ref["optional"] = True
        env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    if api_key:
        ref = {"name": v.api_key_secret, "key": "api_key", "optional": True}
        env.append({"name": "UNIEMBED_API_KEY", "valueFrom": {"secretKeyRef": ref}})
    env += [{"name": k, "value": val} for k, val in PLAIN_ENV.items()]
    env.append({"name": "UNIEMBED_STORAGE_ROOT", "value": v.storage_root})
    return env


def _resources(cpu: str, memory: str, gpus: int = 0) -> dict[str, Any]:
    res: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        res["nvidia.com/gpu"] = gpus
    return {"requests": dict(res), "limits": dict(res)}


def _volumes(v: ClusterValues) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container mounts) shared by every Ray pod."""
    # The default 64 MiB /dev/shm is too small for Ray's object store and torch loaders.
    volumes: list[dict[str, Any]] = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    mv = v.models_volume
    if mv.claim:
        claim = {"claimName": mv.claim, "readOnly": True}
        volumes.append({"name": "models", "persistentVolumeClaim": claim})
        mounts.append({"name": "models", "mountPath": mv.mount_path, "readOnly": True})
    return volumes, mounts


def _container(v: ClusterValues, name: str, resources: dict, api_key: bool, ports: list) -> dict:
    _, mounts = _volumes(v)
    c: dict[str, Any] = {
        "name": name,
        "image": v.image,
        "imagePullPolicy": v.image_pull_policy,
        "env": container_env(v, api_key=api_key),
        "resources": resources,
        "volumeMounts": mounts,
    }
    if ports:
        c["ports"] = ports
    return c


def cluster_spec(v: ClusterValues, *, serve: bool = False) -> dict[str, Any]:
    """The RayClusterSpec shared by the RayCluster, every RayJob and the RayService."""
    volumes, _ = _volumes(v)
    ports = [
        {"containerPort": 6379, "name": "gcs-server"},
        {"containerPort": 8265, "name": "dashboard"},
        {"containerPort": 10001, "name": "client"},
    ]
    if serve:
        ports.append({"containerPort": SERVE_PORT, "name": "serve"})
    head = _container(v, "ray-head", _resources(v.head.cpu, v.head.memory), serve, ports)
    w = v.gpu_workers
    worker = _container(v, "ray-worker", _resources(w.cpu, w.memory, w.gpus), serve, [])
    worker_pod: dict[str, Any] = {
        "containers": [worker],
        "volumes": volumes,
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    if w.node_selector:
        worker_pod["nodeSelector"] = dict(w.node_selector)
    return {
        "rayVersion": v.ray_version,
        # Ray 2.60 expects token authentication; KubeRay creates the token Secret and hands
        # it to every pod and to the job submitter.
        "authOptions": {"mode": "token"},
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"upscalingMode": "Default", "idleTimeoutSeconds": w.idle_timeout_s},
        "headGroupSpec": {
            # The head schedules no tasks: job drivers run there, the work on GPU pods.
            "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
            "template": {"spec": {"containers": [head], "volumes": volumes}},
        },
        "workerGroupSpecs": [
            {
                "groupName": w.group,
                "replicas": w.min_replicas,
                "minReplicas": w.min_replicas,
                "maxReplicas": w.max_replicas,
                # num-gpus comes from the container's nvidia.com/gpu limit.
                "rayStartParams": {},
                "template": {"spec": worker_pod},
            }
        ],
    }


def raycluster(v: ClusterValues) -> dict[str, Any]:
    """A long-lived cluster for ``ray job submit`` and the dashboard."""
    return {
        "apiVersion": API_VERSION,
        "kind": "RayCluster",
        "metadata": _metadata(v, "uniembed", "cluster"),
        "spec": cluster_spec(v),
    }


def job_entrypoint(v: ClusterValues, job: JobValues) -> str:
    """The job's own command, with paths inside the image."""
    return f"python {v.app_dir}/{job.script} --config {v.app_dir}/{job.config}"


def rayjob(v: ClusterValues, name: str) -> dict[str, Any]:
    """A RayJob that starts its own cluster, runs the job and tears the cluster down."""
    job = v.jobs[name]
    runtime_env = {"env_vars": dict(JOB_RUNTIME_ENV_VARS)}
    d = v.job_defaults
    return {
        "apiVersion": API_VERSION,
        "kind": "RayJob",
        "metadata": _metadata(v, f"uniembed-{name.replace('_', '-')}", name),
        "spec": {
            "entrypoint": job_entrypoint(v, job),
            "runtimeEnvYAML": yaml.safe_dump(runtime_env, sort_keys=True),
            "submissionMode": "K8sJobMode",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": d.ttl_after_finished_s,
            "activeDeadlineSeconds": d.active_deadline_s,
            "backoffLimit": d.backoff_limit,
            "rayClusterSpec": cluster_spec(v),
        },
    }


HAPROXY_BINARY = "RAY_SERVE_HAPROXY_BINARY_PATH"


def serve_config(v: ClusterValues, repo: Path) -> dict[str, Any]:
    """The Serve config file with the cluster's overrides applied to its one application."""
    data = yaml.safe_load((repo / v.serve.config).read_text())
    apps = data.get("applications") or []
    require(len(apps) == 1, f"{v.serve.config}: expected one application, found {len(apps)}")
    # JSON is YAML: each value keeps its type through apply_overrides' parsing.
    overrides = [f"{k}={json.dumps(val)}" for k, val in v.serve.overrides.items()]
    apps[0]["args"] = apply_overrides(dict(apps[0].get("args") or {}), overrides)
    # A relative HAProxy binary (the repository's wrapper) is anchored at the image's app
    # folder, so that it does not depend on the folder Ray was started in.
    env = ((data.get("controller_options") or {}).get("runtime_env") or {}).get("env_vars") or {}
    binary = env.get(HAPROXY_BINARY)
    if binary and not str(binary).startswith("/"):
        env[HAPROXY_BINARY] = f"{v.app_dir.rstrip('/')}/{binary}"
    return data


def rayservice(v: ClusterValues, repo: Path) -> dict[str, Any]:
    """The HTTP service: the Serve app on a cluster with the same pods as the jobs."""
    return {
        "apiVersion": API_VERSION,
        "kind": "RayService",
        "metadata": _metadata(v, "uniembed-serve", "serve"),
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config(v, repo), sort_keys=False, width=100),
            "rayClusterConfig": cluster_spec(v, serve=True),
        },
    }


class _Dumper(yaml.SafeDumper):
    """Plain YAML for humans: no anchors/aliases, multi-line strings as ``|`` blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(doc: dict[str, Any]) -> str:
    """A manifest as YAML text."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100)


def render_all(v: ClusterValues, repo: Path) -> dict[str, str]:
    """File name -> YAML text of every manifest."""
    header = "# Generated by cluster/render.py from cluster/cluster.yaml; do not edit.\n"
    docs = {"raycluster.yaml": raycluster(v), "rayservice.yaml": rayservice(v, repo)}
    for name in v.jobs:
        docs[f"rayjob-{name.replace('_', '-')}.yaml"] = rayjob(v, name)
    return {f: header + to_yaml(d) for f, d in docs.items()}
