"""Helpers of the serving tests: the trained-model layout and a server subprocess."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL = ["data.n_rows=3000", "model.max_iter=20"]
PAYLOAD_MB = 1  # small, so the 413 test sends little
STARTUP_SECONDS = 180  # imports are slow on a busy machine


@dataclass(frozen=True)
class Trained:
    """A model as SageMaker unpacks it into /opt/ml/model, and data to score."""

    root: Path  # the /opt/ml root
    run: Path  # the same model laid out as a local run folder
    test: pd.DataFrame

    @property
    def model_dir(self) -> Path:
        return self.root / "model"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(command: list[str], env: dict[str, str], log: Path, port: int) -> Server:
    """Start a server subprocess on 127.0.0.1 and wait (bounded) until /ping answers 200."""
    handle = log.open("wb")
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT
    )
    handle.close()
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log=log)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"The server exited with {process.returncode}:\n{server.log_text()}")
        try:
            with urllib.request.urlopen(f"{server.url}/ping", timeout=5) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    stop(server)
    pytest.fail(f"The server did not answer /ping in {STARTUP_SECONDS} s:\n{server.log_text()}")


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


def raw_exchange(
    server: Server, data: bytes, half_close: bool = True, timeout: float = 30.0
) -> tuple[int | None, str]:
    """Send ``data`` as is on a new connection; the status and body of the answer.

    With ``half_close`` the client shuts its sending side, as a client whose body
    ended does. The status is None when the server closed without answering.
    """
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/"):
        return None, answer.decode(errors="replace")
    return int(head.split()[1]), body.decode(errors="replace")


def post_head(content_type: str, **headers: str | int) -> bytes:
    """The request line and headers of ``POST /invocations`` (``Connection: close``)."""
    lines = ["POST /invocations HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(body: bytes, size: int = 8192, last: bool = True) -> bytes:
    """``body`` in chunked transfer coding (without its last chunk unless ``last``)."""
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    ]
    return b"".join(parts) + (b"0\r\n\r\n" if last else b"")
