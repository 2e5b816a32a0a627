"""Watching a job as a user does: Prometheus gets our metrics, the dashboard shows the job.

A Ray head on 127.0.0.1 with its own token (``tests/fixtures/local_ray.py``) and
``RAY_PROMETHEUS_HOST`` pointing at a Prometheus started by ``scripts/prometheus.sh``
(Debian's package) on Ray's service-discovery file. A short distill job is submitted with
``ray job submit``; while it runs:

- Prometheus' HTTP API returns the job's own metrics (``ray_uniembed_train_loss`` ...);
After it ends, its record carries its figures (``uniembed.loss`` ...) and its driver log the
dashboard's address; then headless Chromium (Debian's ``chromium``, DevTools protocol) opens
the dashboard, logs in with the cluster's token through the dashboard's own dialog, and
finds in the page text the job with its status and figures, its named dataset
(``train-rows``) and the Train run's actors; the run itself is in the dashboard's Train API
(Ray 2.60's bundled dashboard has no Train page).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fixtures.browser import Browser, chromium_binary
from fixtures.local_ray import LocalRayCluster, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

REPO = Path(__file__).resolve().parents[2]
RUN = "watch-run"
OUR_METRICS = ("ray_uniembed_train_loss", "ray_uniembed_train_samples_per_s")


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRayCluster, str]]:
    """A head whose dashboard reads a Prometheus that scrapes it; yields (head, prom URL).
    Installs Prometheus and Chromium (Debian packages, once) if they are missing."""
    if not (chromium_binary() and shutil.which("prometheus")):
        print("[test_watch_job] installing prometheus and chromium: bash scripts/watch_tools.sh")
        subprocess.run(["bash", str(REPO / "scripts" / "watch_tools.sh")], check=True, timeout=1800)
    assert chromium_binary(), "chromium missing: bash scripts/watch_tools.sh installs it (root)"
    assert shutil.which("prometheus"), "prometheus missing: bash scripts/watch_tools.sh (root)"
    state = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    prom_env = dict(os.environ, UNIEMBED_PROMETHEUS_DIR=str(state))
    prom_env["UNIEMBED_PROMETHEUS_PORT"] = str(port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_"))}
    env.pop("PYTHONPATH", None)
    env["RAY_PROMETHEUS_HOST"] = f"http://127.0.0.1:{port}"
    head = LocalRayCluster(num_cpus=2, env=env).start()
    try:
        out = subprocess.run(
            ["bash", str(REPO / "scripts" / "prometheus.sh"), "start", head.temp_dir],
            env=prom_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert f"PROMETHEUS_URL=http://127.0.0.1:{port}" in out.stdout
        yield head, f"http://127.0.0.1:{port}"
    finally:
        subprocess.run(
            ["bash", str(REPO / "scripts" / "prometheus.sh"), "stop"], env=prom_env, timeout=60
        )
        head.stop()


def _runtime_env() -> dict[str, object]:
    env = yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())
    env["env_vars"].update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def _status(head: LocalRayCluster, job: str) -> str:
    """The job's status; "" while the loaded head does not answer."""
    try:
        return str(head.job_info(job)["status"])
    except OSError:
        return ""


def _prometheus_has(url: str, metric: str) -> bool:
    q = urllib.parse.urlencode({"query": metric})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as resp:
            data = json.loads(resp.read())
    except OSError:
        return False
    return data["status"] == "success" and bool(data["data"]["result"])


def _login(browser: Browser, head: LocalRayCluster) -> None:
    """The dashboard's own token dialog: type the cluster's token, press SUBMIT."""
    browser.goto(head.dashboard_url)
    browser.wait_for_text(["Authentication Token Required"], timeout_s=120)
    browser.evaluate("document.querySelector('[role=dialog] input').focus()")
    browser.call("Input.insertText", text=head.token)
    try:
        browser.evaluate(
            "[...document.querySelectorAll('[role=dialog] button')]"
            ".find(b => b.innerText.trim().toUpperCase() === 'SUBMIT').click()"
        )
    except RuntimeError as e:  # the dashboard reloads itself once the token is accepted
        assert "navigated or closed" in str(e), e
    deadline = time.monotonic() + 60
    while "Authentication Token Required" in browser.text():
        assert time.monotonic() < deadline, browser.text()[:2000]
        time.sleep(1)


def _open_section(browser: Browser, title: str, expect: str, timeout_s: float = 300) -> None:
    """Click the collapsed section ``title`` open until the page shows ``expect``."""
    click = (
        "(() => { const h = [...document.querySelectorAll('h4')].find(e =>"
        f" e.innerText.trim().toLowerCase() === {title.lower()!r}); if (h) h.click();"
        " return !!h; })()"
    )
    deadline = time.monotonic() + timeout_s
    while expect not in browser.text():
        assert time.monotonic() < deadline, f"{title} shows no {expect}: {browser.text()[:3000]}"
        browser.evaluate(click)
        for _ in range(10):
            time.sleep(1)
            if expect in browser.text():
                return


def test_prometheus_and_the_dashboard_show_a_running_job(
    watched: tuple[LocalRayCluster, str], tmp_path: Path
) -> None:
    head, prom = watched
    texts = tmp_path / "texts.jsonl"
    rows = [{"id": f"t{i}", "text": f"sentence {i}, colour {i * 13 % 7}"} for i in range(32)]
    texts.write_text("\n".join(json.dumps(r) for r in rows))
    argv = ["python", "jobs/distill.py", "--input", str(texts), "--model", "tiny-text-lm"]
    argv += ["--teacher", "minilm", "--storage-path", str(tmp_path / "runs"), "--name", RUN]
    argv += ["train.max_steps=40", "train.batch_size=8", "checkpoint.every_steps=40"]
    job = head.start_job(argv, working_dir=REPO, runtime_env=_runtime_env())
    browser = Browser()
    try:
        # Our metrics reach Prometheus while the job runs.
        seen: set[str] = set()
        deadline = time.monotonic() + 900
        while seen != set(OUR_METRICS) and time.monotonic() < deadline:
            seen |= {m for m in OUR_METRICS if _prometheus_has(prom, m)}
            if seen != set(OUR_METRICS) and _status(head, job) in TERMINAL:
                break
            time.sleep(3)
        assert seen == set(OUR_METRICS), f"Prometheus has only {seen}: {head.job_logs(job)[-3000:]}"

        deadline = time.monotonic() + 1200
        while _status(head, job) not in TERMINAL and time.monotonic() < deadline:
            time.sleep(5)
        info = head.job_info(job)
        log = head.job_logs(job)
        assert info["status"] == "SUCCEEDED", log[-4000:]
        assert f"Ray dashboard: {head.dashboard_url}" in log
        assert float(info["metadata"]["uniembed.steps"]) == 40
        assert "uniembed.loss" in info["metadata"], info["metadata"]

        _login(browser, head)
        browser.goto(f"{head.dashboard_url}/#/jobs")
        browser.wait_for_text([job], timeout_s=120)
        browser.goto(f"{head.dashboard_url}/#/jobs/{job}")
        # The job page: status, the job's figures (metadata), the driver log's first line.
        browser.wait_for_text(
            ["SUCCEEDED", "uniembed.loss", "uniembed.output", "Ray dashboard:"], timeout_s=300
        )
        # Its Ray Data section lists the run's rows under their name. The dashboard reads
        # them from its Ray Data API, and the section starts collapsed: its title (an h4)
        # opens it; clicked again while the page re-renders, it would close.
        assert b"train-rows" in head.api(f"api/data/datasets/{info['job_id']}", timeout_s=120)
        browser.wait_for_text(["Ray Data Overview"], timeout_s=300)
        _open_section(browser, "Ray Data Overview", "train-rows")
        # Ray 2.60's bundled dashboard has no Train page: the run's workers are on the
        # Actors page, and the run itself in the dashboard's Train API (state tracking).
        browser.goto(f"{head.dashboard_url}/#/actors")
        browser.wait_for_text(["RayTrainWorker", "TrainController"], timeout_s=300)
    finally:
        browser.close()
    runs = head.api("api/train/v2/runs/v1").decode()
    assert RUN in runs, runs[:2000]
