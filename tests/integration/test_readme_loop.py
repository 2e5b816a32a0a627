"""The README's loop, run as the README writes it.

The README shows the demo loop (mine -> tune -> train_reranker -> evaluate -> serve) and the
same commands with a smoke config each (``--config jobs/configs/<job>_smoke.yaml``, tiny
models). The test reads both blocks from README.md, checks that the smoke lines are the loop's
lines plus their smoke config and nothing else, and runs the smoke lines verbatim in a fresh
folder holding the checkout's ``jobs/``, ``data/``, ``models/`` and ``.venv``. Then it sends
the README's embeddings request to the served app.

The commands join one Ray head started in that folder (``RAY_ADDRESS``, as the README's
cluster docs describe), rather than each starting a private Ray: ``ray.init`` gives a new
local node 30 s to register, which a loaded CI machine does not always meet, and one head
also serves the Serve app. Its workers start in the same folder, so relative paths mean
what they mean on a laptop. The one change to a file: the copy of ``serve_smoke.yaml``
listens on a free port, as other users' servers may hold 8000.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fixtures.local_ray import LocalRayCluster, end_session, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
LOOP_HEADING = "A loop on the demo data"
SMOKE_CONFIG = re.compile(r"jobs/configs/(\w+)_smoke\.yaml")
JOB_TIMEOUT_S = 1500
SERVE_TIMEOUT_S = 900


def bash_blocks(text: str) -> list[str]:
    """The fenced ```bash blocks of ``text``, in order."""
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def loop_blocks(text: str = README.read_text()) -> tuple[list[list[str]], list[list[str]]]:
    """The README's demo loop and its smoke version (the two blocks after the heading)."""
    after = text[text.index(LOOP_HEADING) :]
    loop, smoke = bash_blocks(after)[:2]
    return commands(loop), commands(smoke)


def without_smoke(cmd: list[str]) -> list[str]:
    """``cmd`` with its ``--config ..._smoke.yaml`` removed, a smoke serve file named back."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(cmd):
        if skip:
            skip = False
            continue
        if arg == "--config" and i + 1 < len(cmd) and SMOKE_CONFIG.fullmatch(cmd[i + 1]):
            skip = True
            continue
        out.append(SMOKE_CONFIG.sub(r"jobs/configs/\1.yaml", arg))
    return out


def readme_request() -> tuple[str, dict]:
    """The path and JSON body of the README's embeddings ``curl`` (section Serve)."""
    for block in bash_blocks(README.read_text()):
        for cmd in commands(block):
            if cmd and cmd[0] == "curl" and any("/v1/embeddings" in a for a in cmd):
                url = next(a for a in cmd if "/v1/embeddings" in a)
                body = cmd[cmd.index("-d") + 1]
                return "/" + url.split("/", 1)[1], json.loads(body)
    raise AssertionError("README.md has no curl ... /v1/embeddings request")


def test_smoke_lines_are_the_loop_lines_plus_a_smoke_config() -> None:
    loop, smoke = loop_blocks()
    assert [c[1] for c in loop] == [
        "jobs/mine.py",
        "jobs/tune.py",
        "jobs/train_reranker.py",
        "jobs/evaluate.py",
        "run",
    ]
    assert [without_smoke(c) for c in smoke] == loop
    assert all(any(SMOKE_CONFIG.fullmatch(a) for a in c) for c in smoke)
    for cmd in smoke:
        for arg in cmd:
            if SMOKE_CONFIG.fullmatch(arg):
                assert (ROOT / arg).is_file(), arg


def _workspace(tmp: Path, port: int) -> Path:
    """A fresh folder with the checkout's jobs/ (serve_smoke.yaml on ``port``), data/,
    models/ and .venv: what a user's clone holds."""
    for name in ("data", "models", ".venv"):
        (tmp / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "jobs", tmp / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    serve = tmp / "jobs" / "configs" / "serve_smoke.yaml"
    text, n = re.subn(r"(?m)^(\s+port:) 8000$", rf"\1 {port}", serve.read_text())
    assert n == 1, "serve_smoke.yaml: expected one `port: 8000`"
    serve.write_text(text)
    return tmp


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_JOB_ID"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(ROOT / "platform")  # this checkout's code, also in Ray's workers
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _env(head: LocalRayCluster) -> dict[str, str]:
    """The commands' environment: the head's address and token."""
    env = head.client_env(_base_env())
    env["RAY_ADDRESS"] = f"127.0.0.1:{head.gcs_port}"
    return env


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, {"error": e.read().decode(errors="replace")}


def _serve_and_request(cmd: list[str], cwd: Path, port: int, env: dict[str, str]) -> dict:
    """Run ``serve run`` (in its own session), send the README's request once the app
    answers, then end everything the command started."""
    path, body = readme_request()
    log = open(cwd / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while time.monotonic() < deadline:
            assert proc.poll() is None, (cwd / "serve.log").read_text()[-4000:]
            try:
                status, data = _post(f"http://127.0.0.1:{port}{path}", body)
            except (urllib.error.URLError, OSError):
                time.sleep(3)
                continue
            if status == 200:
                return data
            time.sleep(3)
        raise AssertionError(
            f"no answer in {SERVE_TIMEOUT_S}s:\n{(cwd / 'serve.log').read_text()[-4000:]}"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        end_session(proc.pid)
        log.close()


def test_the_readme_loop_runs_as_written(tmp_path: Path) -> None:
    port = free_port()
    cwd = _workspace(tmp_path, port)
    _, smoke = loop_blocks()
    *jobs, serve = smoke
    with LocalRayCluster(num_cpus=2, env=_base_env(), cwd=cwd) as head:
        _run_loop(head, cwd, jobs, serve, port)


def _run_loop(
    head: LocalRayCluster, cwd: Path, jobs: list[list[str]], serve: list[str], port: int
) -> None:
    lines: list[str] = []
    logs: list[str] = []
    for cmd in jobs:
        proc = subprocess.run(
            cmd, cwd=cwd, env=_env(head), capture_output=True, text=True, timeout=JOB_TIMEOUT_S
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{shlex.join(cmd)} failed:\n{out[-6000:]}"
        lines.append(proc.stdout.strip().splitlines()[-1])
        logs.append(out)

    # Each job names the absolute URI it wrote on its last line.
    assert f"into {cwd / 'outputs/mine'} " in lines[0], lines[0]
    assert f"run {cwd / 'outputs/train/tune-demo'};" in lines[1], lines[1]
    assert f"run {cwd / 'outputs/train/reranker-demo'};" in lines[2], lines[2]
    assert f"report: {cwd / 'outputs/eval/report.md'}" in lines[3], lines[3]
    # The driver says where the dashboard is, and its progress is one line per stage, named
    # after the stage, not Ray Data's multi-line dumps.
    assert all(f"Ray dashboard: {head.dashboard_url}" in log for log in logs)
    assert re.search(r"^\[mine-queries\] mine/\S+: \d+ rows in", logs[0], re.M), logs[0][-3000:]
    assert not any("Running Dataset:" in log for log in logs)

    # Each job took the folder the one before printed, not a subfolder of it.
    assert (cwd / "outputs/mine/_SUCCESS.json").is_file()
    for run in ("tune-demo", "reranker-demo"):
        manifest = json.loads((cwd / "outputs/train" / run / "_SUCCESS.json").read_text())
        assert manifest["export"] == "export"
        assert (cwd / "outputs/train" / run / "export" / "config.json").is_file()
    metrics = json.loads((cwd / "outputs/eval/metrics.json").read_text())
    assert metrics, "evaluate wrote no metrics"
    assert (cwd / "outputs/eval/report.md").is_file()

    data = _serve_and_request(serve, cwd, port, _env(head))
    export = json.loads((cwd / "outputs/train/tune-demo/export/config.json").read_text())
    hidden = export.get("hidden_size") or export.get("text_config", {}).get("hidden_size")
    _, body = readme_request()
    assert len(data["data"]) == len(body["input"])
    # The tuned tiny model answers, not the packaged default embedder (384 dims).
    assert len(data["data"][0]["embedding"]) == hidden != 384
