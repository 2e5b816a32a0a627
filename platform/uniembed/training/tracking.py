"""What a train run shows while it runs and after: Ray metrics and an MLflow run (rank 0).

Ray metrics: ``uniembed_train_loss``, ``uniembed_train_samples_per_s``, ``uniembed_train_lr``
and ``uniembed_train_step`` Gauges tagged with the run name, for the dashboard's metrics
(Prometheus/Grafana) while the Train page shows the run, its attempts and workers.

MLflow: the run's params (the flattened config), every step's metrics row (loss, lr,
samples/s, the similarity or answer-token figures) at its step, and at the end the export's
small files (configs, tokenizer, ``uniembed.json``, the LoRA adapter) as artifacts, with the
export's URI as the tag ``export``. The tracking URI is ``MLFLOW_TRACKING_URI`` when set,
else a file store in the run folder (``<storage_path>/<name>/mlruns``; for an ``s3://`` run a
local store, copied there at the end). A resumed run (same ``checkpoint.name``) continues
the same MLflow run. ``mlflow ui --backend-store-uri <run>/mlruns`` shows it.
Only rank 0 reports; the other ranks' calls are free.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

from uniembed import storage

FIGURES = ("step", "loss", "lr", "samples_per_s")
MLRUNS_DIR = "mlruns"
EXPERIMENT = "uniembed"
_ARTIFACT_MAX_BYTES = 8 << 20  # export files above this (the weights) stay out of MLflow


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """A dataclass config as ``{"train.lr": "0.0001", ...}`` (MLflow params are strings)."""
    out: dict[str, str] = {}
    items = dataclasses.asdict(obj).items() if dataclasses.is_dataclass(obj) else obj.items()
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif "secret" in key or "token" in key or "access_key" in key:
            continue  # never credentials
        else:
            out[name] = str(value)[:500]
    return out


class RunTracker:
    """Rank 0's reporter of one run: Ray Gauges and MLflow."""

    def __init__(self, cfg: Any, run_uri: str, rank: int) -> None:
        self.run_name = cfg.checkpoint.name
        self.run_uri = run_uri
        self.active = rank == 0
        self._gauges: dict[str, Any] = {}
        self._mlflow: Any = None
        self._local_store: str | None = None
        if self.active:
            self._start_mlflow(cfg)

    def _tracking_uri(self) -> str:
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        local = storage.local_path(self.run_uri)
        # MLflow 3 keeps its file store (no database server or SQLAlchemy needed) behind
        # this opt-in; `mlflow ui --backend-store-uri <folder>` reads it.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        if local is None:  # s3:// run: a local store, copied into the run at the end
            self._local_store = tempfile.mkdtemp(prefix="uniembed-mlruns-")
            return Path(self._local_store).as_uri()
        return Path(local, MLRUNS_DIR).as_uri()

    def _start_mlflow(self, cfg: Any) -> None:
        import mlflow

        client_uri = self._tracking_uri()
        mlflow.set_tracking_uri(client_uri)
        experiment = mlflow.set_experiment(EXPERIMENT)
        found = mlflow.search_runs(
            experiment_ids=[experiment.experiment_id],
            filter_string=f"tags.`mlflow.runName` = '{self.run_name}'",
            max_results=1,
            output_format="list",
        )
        if found:  # a resumed run continues its MLflow run
            mlflow.start_run(run_id=found[0].info.run_id)
        else:
            mlflow.start_run(run_name=self.run_name)
            mlflow.log_params(flatten(cfg))
            mlflow.set_tag("run_uri", self.run_uri)
        self._mlflow = mlflow

    def _gauge(self, figure: str) -> Any:
        from ray.util.metrics import Gauge

        if figure not in self._gauges:
            self._gauges[figure] = Gauge(
                f"uniembed_train_{figure}", description=f"train: {figure}", tag_keys=("run",)
            )
        return self._gauges[figure]

    def step(self, row: dict[str, Any]) -> None:
        """One step's metrics row (``training.metrics.COLUMNS`` keys and the task's stats)."""
        if not self.active:
            return
        for figure in FIGURES:
            value = row.get(figure)
            if isinstance(value, int | float):
                self._gauge(figure).set(float(value), tags={"run": self.run_name})
        if self._mlflow is not None:
            numeric = {
                k: float(v)
                for k, v in row.items()
                if k not in ("step", "time") and isinstance(v, int | float) and v == v
            }
            self._mlflow.log_metrics(numeric, step=int(row["step"]))

    def finish(self, export_uri: str | None) -> None:
        """Attach the export (its small files) and end the MLflow run."""
        if not self.active or self._mlflow is None:
            return
        mlflow = self._mlflow
        if export_uri is not None:
            mlflow.set_tag("export", export_uri)
            with tempfile.TemporaryDirectory(prefix="uniembed-export-art-") as tmp:
                prefix = export_uri.rstrip("/") + "/"
                fs, _ = storage.filesystem_for(export_uri)
                files = storage.list_files(export_uri)
                infos = fs.get_file_info([storage.filesystem_for(f)[1] for f in files])
                for f, info in zip(files, infos, strict=True):
                    if (info.size or 0) > _ARTIFACT_MAX_BYTES:
                        continue
                    dest = Path(tmp, f[len(prefix) :])
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(storage.read_bytes(f))
                mlflow.log_artifacts(tmp, artifact_path="export")
        mlflow.end_run()
        if self._local_store is not None:
            root = Path(self._local_store)
            for f in sorted(p for p in root.rglob("*") if p.is_file()):
                target = storage.join(self.run_uri, MLRUNS_DIR, f.relative_to(root).as_posix())
                storage.write_bytes(target, f.read_bytes())
