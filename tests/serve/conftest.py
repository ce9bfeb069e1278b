"""A small trained model in an /opt/ml-shaped tree, and the real server on it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pandas as pd
import pytest

from conf import compose, to_yaml
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
    for name in ("model.joblib", "config.yaml"):
        source = run / "model" / name if name != "config.yaml" else run / name
        (root / "model" / name).write_bytes(source.read_bytes())
    test = pd.read_parquet(splits["test"] / "data.parquet")
    return Trained(root=root, run=run, test=test)


@pytest.fixture(scope="session")
def scorer(trained: Trained) -> Scorer:
    return load_scorer(trained.model_dir)


@pytest.fixture(scope="session")
def server(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``python -m container.entrypoint serve`` as the image runs it, on the /opt/ml tree."""
    port = free_port()
    env = {
        **os.environ,
        "OPT_ML_ROOT": str(trained.root),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60",
        "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(PAYLOAD_MB),
    }
    command = [sys.executable, "-m", "container.entrypoint", "serve", "--host", "127.0.0.1"]
    log = tmp_path_factory.mktemp("server") / "server.log"
    server = start_server(command, env, log, port)
    yield server
    stop(server)
