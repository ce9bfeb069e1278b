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
