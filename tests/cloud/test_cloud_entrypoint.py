"""The image's whole-run mode: one training job that loads, splits, trains and evaluates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conf.channel import write_channel
from conf.contract import (
    CALIBRATION_FILE,
    CONFIG_FILE,
    LORENZ_FILE,
    METRICS_FILE,
    MODE_KEY,
    MODEL_FILE,
    RUN_MODE,
    OptMl,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_train(root: Path, hyperparameters: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m container.entrypoint train`` as the platform starts it, with a channel."""
    paths = OptMl(root)
    write_channel(paths.channel("config"), ["model=glm_poisson"])
    paths.hyperparameters.parent.mkdir(parents=True, exist_ok=True)
    paths.hyperparameters.write_text(json.dumps(hyperparameters))
    return subprocess.run(
        [sys.executable, "-m", "container.entrypoint", "train"],
        cwd=REPO_ROOT,
        env={**os.environ, "OPT_ML_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_run_mode_writes_the_model_and_the_evaluation(tmp_path: Path) -> None:
    result = run_train(tmp_path, {MODE_KEY: RUN_MODE, "overrides": "data.n_rows=3000"})
    assert result.returncode == 0, result.stdout + result.stderr
    paths = OptMl(tmp_path)
    assert (paths.model / MODEL_FILE).is_file()
    assert (paths.model / CONFIG_FILE).is_file()
    for name in (METRICS_FILE, CALIBRATION_FILE, LORENZ_FILE, CONFIG_FILE):
        assert (paths.output_data / name).is_file(), name
    config = yaml.safe_load((paths.output_data / CONFIG_FILE).read_text())
    assert config["model"]["name"] == "glm_poisson"
    assert config["data"]["n_rows"] == 3000
    metrics = json.loads((paths.output_data / METRICS_FILE).read_text())
    assert "poisson_deviance" in metrics["test"]
    assert "validation:poisson_deviance=" in result.stdout


def test_unknown_mode_is_refused_in_one_line(tmp_path: Path) -> None:
    result = run_train(tmp_path, {MODE_KEY: "everything"})
    assert result.returncode == 2
    failure = OptMl(tmp_path).failure.read_text()
    assert "mode='everything'" in failure and "mode=run" in failure
