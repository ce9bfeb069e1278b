"""A small trained model in an /opt/ml-shaped tree, and the real server on it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from conf import compose, to_yaml
from conf.contract import MODEL_FILE
from steps.prepare import prepare
from steps.score import Scorer, load_scorer
from steps.train import train
from tests.serve.support import PAYLOAD_MB, SMALL, Server, Trained, free_port, start_server, stop


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    cfg = compose(SMALL)
    run = tmp_path_factory.mktemp("run")
    splits = prepare(cfg, run / "data")
    train(cfg, splits["train"], splits["validation"], run / "model")
    (run / "config.yaml").write_text(to_yaml(cfg))
    (run / "metrics.json").write_text("{}\n")
    root = tmp_path_factory.mktemp("opt-ml")
    (root / "model").mkdir()
    for name in (MODEL_FILE, "config.yaml"):
        source = run / "model" / name if name != "config.yaml" else run / name
        (root / "model" / name).write_bytes(source.read_bytes())
    test = pd.read_parquet(splits["test"] / "data.parquet")
    return Trained(root=root, run=run, test=test)


@pytest.fixture(scope="session")
def scorer(trained: Trained) -> Scorer:
    return load_scorer(trained.model_dir)


def serve_on(trained: Trained, folder: Path, workers: int, timeout: int, payload_mb: int) -> Server:
    """``python -m container.entrypoint serve`` as the image runs it, on the /opt/ml tree."""
    port = free_port()
    env = {
        **os.environ,
        "OPT_ML_ROOT": str(trained.root),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": str(timeout),
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(payload_mb),
    }
    command = [sys.executable, "-m", "container.entrypoint", "serve", "--host", "127.0.0.1"]
    image = os.environ.get("IMAGE_UNDER_TEST")
    if image:  # the same tests against the built image, started as SageMaker hosting starts it
        command = image_serve_command(image, trained, env)
    return start_server(command, env, folder / "server.log", port)


@pytest.fixture(scope="session")
def server(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two workers, a 60 s timeout and a payload limit of ``PAYLOAD_MB``."""
    server = serve_on(trained, tmp_path_factory.mktemp("server"), 2, 60, PAYLOAD_MB)
    yield server
    stop(server)


@pytest.fixture(scope="module")
def tight_server(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two workers, a 1 s timeout and a 16 MB payload limit: slow requests time out."""
    server = serve_on(trained, tmp_path_factory.mktemp("tight"), 2, 1, 16)
    yield server
    stop(server)


def image_serve_command(image: str, trained: Trained, env: dict[str, str]) -> list[str]:
    """``<engine> run <image> serve`` with the model at /opt/ml/model, as hosting runs it.

    The host's network is used so the port is reachable at 127.0.0.1 (the
    server's port comes from ``SAGEMAKER_BIND_TO_PORT``, as on the service).
    """
    from conf.contract import JOB
    from infra import image as tool

    try:
        engine = tool.detect_engine()
    except tool.ImageError as err:
        pytest.skip(f"no container engine can run here: {err}")
    cmd = engine.cmd("run", "--rm", "--network", "host", *engine.limit_flags)
    cmd += ["-v", f"{trained.model_dir.resolve()}:{JOB.model}:ro"]
    for name, value in env.items():
        if name.startswith("SAGEMAKER_"):
            cmd += ["-e", f"{name}={value}"]
    return [*cmd, image, "serve"]
