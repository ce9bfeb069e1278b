"""End-to-end local runs through the real entrypoints, as a user runs them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from tests.local.support import run

SMALL = "data.n_rows=20000"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_dirs(cwd: Path) -> list[Path]:
    return sorted((cwd / "outputs" / "runs").glob("*"))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    cwd = tmp_path_factory.mktemp("user")
    result = run(cwd, SMALL)
    assert result.returncode == 0, result.stderr
    (out,) = run_dirs(cwd)
    return out, result


def test_local_run_writes_every_output(local_run) -> None:
    out, result = local_run
    for name in ("config.yaml", "metrics.json", "calibration.png", "lorenz.png", "run.log"):
        assert (out / name).is_file(), name
    assert (out / "model" / "model.skops").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["n_rows"] == 20000
    assert "test metrics" in result.stdout and f"Outputs: {out}" in result.stdout


def test_local_run_metrics_are_sane(local_run) -> None:
    out, _ = local_run
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert metrics["model"] == "hgb_poisson"
    assert test["poisson_deviance"] < test["baseline_poisson_deviance"]
    assert test["best_poisson_deviance"] <= test["poisson_deviance"]
    assert 0 < test["d2_ratio"] <= 1.05
    bins = metrics["calibration"]
    assert len(bins) == 20
    assert sum(b["n_rows"] for b in bins) == test["n_rows"] == 4000
    assert sum(b["exposure"] for b in bins) == pytest.approx(test["exposure"])


def test_local_run_plots_are_real_images(local_run) -> None:
    out, _ = local_run
    for name in ("calibration.png", "lorenz.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 300
        assert image.std() > 0.05


def test_local_run_prints_scrapable_metric_lines(local_run) -> None:
    import re

    _, result = local_run
    for line in ("validation:poisson_deviance", "test:poisson_deviance", "test:gini"):
        assert re.search(rf"^{line}=[0-9.]+$", result.stdout, re.M), line


def test_rerun_gets_its_own_folder(local_run) -> None:
    out, _ = local_run
    cwd = out.parent.parent.parent
    before = (out / "metrics.json").read_bytes()
    result = run(cwd, "data.n_rows=3000", "model=constant")
    assert result.returncode == 0, result.stderr
    assert len(run_dirs(cwd)) == 2
    assert (out / "metrics.json").read_bytes() == before


def test_multirun_uses_both_models_and_summarises(tmp_path: Path) -> None:
    result = run(tmp_path, "-m", "data.n_rows=5000", "model=constant,glm_poisson")
    assert result.returncode == 0, result.stderr
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*")
    assert {p.name for p in sweep.glob("*/metrics.json")} == {"metrics.json"}
    assert len(list(sweep.glob("*/metrics.json"))) == 2
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["run"].split()[-1] for r in rows] == ["model=constant", "model=glm_poisson"]
    assert float(rows[1]["poisson_deviance"]) < float(rows[0]["poisson_deviance"])
    assert "test metrics" in result.stdout


def test_local_tune_reports_the_best_configuration(tmp_path: Path) -> None:
    result = run(tmp_path, "data.n_rows=8000", "tuning.max_jobs=3", module="pipelines.local.tune")
    assert result.returncode == 0, result.stderr
    (out,) = run_dirs(tmp_path)
    trials = list(csv.DictReader((out / "trials.csv").open()))
    assert len(trials) == 3
    best = min(trials, key=lambda t: float(t["validation:poisson_deviance"]))
    best_cfg = yaml.safe_load((out / "best_config.yaml").read_text())
    assert best_cfg["model"]["max_leaf_nodes"] == int(best["max_leaf_nodes"])
    assert f"best trial {best['trial']}:" in result.stdout
    assert (out / "metrics.json").is_file() and (out / "calibration.png").is_file()


def test_local_run_never_imports_the_sagemaker_sdk(tmp_path: Path) -> None:
    trap = tmp_path / "trap" / "sagemaker"
    trap.mkdir(parents=True)
    (trap / "__init__.py").write_text("raise ImportError('the SageMaker SDK was imported')\n")
    env = {"PYTHONPATH": str(trap.parent)}
    result = run(tmp_path, "data.n_rows=3000", "model=constant", env=env)
    assert result.returncode == 0, result.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import sagemaker"], env={**os.environ, **env}, capture_output=True
    )
    assert b"the SageMaker SDK was imported" in probe.stderr  # the trap works
