"""A self-started Ray head on this machine (``ray start --head``) and ``ray job submit``.

Ray 2.60 turns token authentication on by default. The token normally lives in
``~/.ray/auth_token``, which every cluster of the same user shares; each ``LocalRayCluster``
gets its own token instead, passed as ``RAY_AUTH_TOKEN`` to the head and to every client
command. Stopping ends only the processes this head started (its own session), never other
Ray clusters on the machine, which ``ray stop`` would kill.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Ray's own variables that would point a client or the head at another cluster.
_RAY_CLIENT_VARS = ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class JobResult:
    """What ``ray job submit`` returned: exit code, combined output, seconds taken."""

    returncode: int
    output: str
    seconds: float
    submission_id: str = ""

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0


@dataclass
class LocalRayCluster:
    """A Ray head bound to 127.0.0.1 with its own ports, temp dir and auth token.

    ``env`` is the head's environment (what the cluster's workers inherit, like a container
    image's); ``bin_dir`` holds the ``ray`` and ``python`` executables of that environment.
    """

    num_cpus: int = 2
    bin_dir: Path = field(default_factory=lambda: Path(sys.executable).parent)
    env: Mapping[str, str] | None = None
    temp_root: Path | None = None  # default: the system temp dir (short paths)
    keep_temp: bool = False  # keep the session's logs after stop()
    start_timeout_s: float = 180.0
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _temp_dir: str | None = field(default=None, init=False, repr=False)

    @property
    def dashboard_url(self) -> str:
        """The address that ``ray job submit --address`` and the dashboard use."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def temp_dir(self) -> str:
        """Ray's session root for this head (logs: ``<temp_dir>/session_latest/logs``)."""
        if self._temp_dir is None:
            raise RuntimeError("the cluster has not been started")
        return self._temp_dir

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for Ray CLI clients of this cluster: token mode and this token."""
        env = dict(os.environ if base is None else base)
        for name in _RAY_CLIENT_VARS:
            env.pop(name, None)
        env["RAY_AUTH_MODE"] = "token"
        env["RAY_AUTH_TOKEN"] = self.token
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def start(self) -> LocalRayCluster:
        """Start the head and wait until its job API answers; raise with its log if not."""
        # Short on purpose: Ray's Unix socket paths under it must stay within 107 bytes.
        self._temp_dir = tempfile.mkdtemp(prefix="ray-", dir=self.temp_root)
        env = self.client_env(self.env)
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        cmd = [
            str(self.bin_dir / "ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={self.gcs_port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            # Fixed defaults (10001, 52365) would collide with other heads on the machine.
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--num-cpus={self.num_cpus}",
            "--num-gpus=0",
            "--disable-usage-stats",
            f"--temp-dir={self._temp_dir}",
        ]
        log = open(Path(self._temp_dir) / "ray-start.log", "wb")  # noqa: SIM115 - kept open
        # A new session: every process of this head (raylet, GCS, workers) carries its id,
        # which is how stop() finds exactly these processes.
        self._proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if self._api_answers():
                return self
            time.sleep(1)
        tail = (Path(self._temp_dir) / "ray-start.log").read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(
            f"ray start --head did not come up in {self.start_timeout_s:g}s:\n{tail}"
        )

    def _api_answers(self) -> bool:
        req = urllib.request.Request(
            f"{self.dashboard_url}/api/jobs/", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=3) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _ray(self, *args: str, env: Mapping[str, str] | None, timeout_s: float) -> tuple[int, str]:
        proc = subprocess.run(
            [str(self.bin_dir / "ray"), *args],
            env=self.client_env(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        return proc.returncode, proc.stdout + proc.stderr

    def job_status(self, submission_id: str, client_env: Mapping[str, str] | None = None) -> str:
        """``PENDING``/``RUNNING``/``SUCCEEDED``/``FAILED``/``STOPPED``, or ``""`` if the
        cluster does not know the job."""
        rc, out = self._ray(
            "job",
            "status",
            f"--address={self.dashboard_url}",
            submission_id,
            env=client_env,
            timeout_s=60,
        )
        match = re.search(r"Status for job '[^']+': (\w+)", out)
        return match.group(1) if rc == 0 and match else ""

    def submit(
        self,
        entrypoint: Sequence[str],
        *,
        working_dir: str | Path,
        runtime_env: Mapping[str, Any] | None = None,
        timeout_s: float = 600,
        client_env: Mapping[str, str] | None = None,
    ) -> JobResult:
        """``ray job submit --working-dir DIR [--runtime-env-json ...] -- ENTRYPOINT``;
        waits for the job to end and returns its exit code (0: SUCCEEDED) and log.

        A heavily loaded head can drop the submit request or the log stream; the job then
        keeps its submission id, so the outcome is read back instead of guessed, and a
        submission the cluster never received is sent once more.
        """
        start = time.monotonic()
        deadline = start + timeout_s
        output = ""
        for attempt in range(2):
            submission_id = f"uniembed-{secrets.token_hex(6)}"
            args = ["job", "submit", f"--address={self.dashboard_url}"]
            args += [f"--submission-id={submission_id}", f"--working-dir={working_dir}"]
            if runtime_env:
                args.append(f"--runtime-env-json={json.dumps(dict(runtime_env))}")
            args += ["--", *entrypoint]
            rc, out = self._ray(*args, env=client_env, timeout_s=deadline - time.monotonic())
            output += out
            if rc == 0:
                return JobResult(0, output, time.monotonic() - start, submission_id)
            status = self.job_status(submission_id, client_env)
            if status == "" and attempt == 0:
                continue  # never reached the cluster: submit again
            while status in ("PENDING", "RUNNING") and time.monotonic() < deadline:
                rc_logs, logs = self._ray(
                    "job",
                    "logs",
                    "--follow",
                    f"--address={self.dashboard_url}",
                    submission_id,
                    env=client_env,
                    timeout_s=max(1.0, deadline - time.monotonic()),
                )
                output += logs
                status = self.job_status(submission_id, client_env)
            if status in ("PENDING", "RUNNING"):
                raise subprocess.TimeoutExpired(args, timeout_s, output=output)
            code = 0 if status == "SUCCEEDED" else 1
            return JobResult(code, output, time.monotonic() - start, submission_id)
        return JobResult(1, output, time.monotonic() - start)

    def job_info(self, submission_id: str) -> dict[str, Any]:
        """The job's record from the dashboard's job API (status, start_time and end_time in
        ms since the epoch, message, entrypoint, runtime_env)."""
        req = urllib.request.Request(
            f"{self.dashboard_url}/api/jobs/{submission_id}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def _session_pids(self) -> list[int]:
        if self._proc is None:
            return []
        sid = self._proc.pid
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Fields after the ")" that closes the command name: state ppid pgrp session ...
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(entry.name))
        return pids

    def stop(self, grace_s: float = 15) -> None:
        """End this head and everything it started (TERM, then KILL after ``grace_s``)."""
        if self._proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self._session_pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace_s
            while self._session_pids() and time.monotonic() < deadline:
                time.sleep(0.5)
            if not self._session_pids():
                break
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._proc = None
        if self._temp_dir and not self.keep_temp:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
