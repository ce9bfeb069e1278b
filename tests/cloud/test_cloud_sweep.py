"""``make cloud-run ARGS="-m ..."``: the Hydra launcher ``hydra/launcher=sagemaker``."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from hydra.core.config_store import ConfigStore

from pipelines.sagemaker import cloud, cloud_cli
from tests.cloud.support import ACCOUNT, BUCKET

pytestmark = pytest.mark.usefixtures("in_tmp")


def test_the_launcher_is_registered_as_hydra_launcher_sagemaker() -> None:
    import hydra_plugins.hydra_sagemaker_launcher.config  # noqa: F401

    node = ConfigStore.instance().load("hydra/launcher/sagemaker.yaml").node
    assert node.max_parallel_jobs == 4
    assert node._target_.endswith("sagemaker_launcher.SageMakerLauncher")


def test_the_local_multirun_keeps_joblib_with_two_jobs() -> None:
    from hydra import compose, initialize_config_dir

    from conf import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    assert cfg.hydra.launcher.n_jobs == 2
    assert "joblib" in cfg.hydra.launcher._target_


def test_a_detached_sweep_creates_one_job_per_sweep_job(
    aws: str, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    args = ["run", "-m", "--detach", *ACCOUNT, "model.max_leaf_nodes=16,32,64"]
    assert cloud_cli.main(args) == 0
    (sweep_dir,) = (in_tmp / "outputs" / "cloud").iterdir()
    assert sweep_dir.name in capsys.readouterr().out
    record = json.loads((sweep_dir / "sweep.json").read_text())
    names = [job["name"] for job in record["jobs"]]
    assert len(set(names)) == 3 and all(len(n) <= 63 for n in names)
    assert [job["overrides"][-1] for job in record["jobs"]] == [
        f"model.max_leaf_nodes={n}" for n in (16, 32, 64)
    ]
    sm = boto3.client("sagemaker", region_name="us-east-1")
    created = {j["TrainingJobName"] for j in sm.list_training_jobs()["TrainingJobSummaries"]}
    assert created == set(names)
    assert (sweep_dir / "multirun.yaml").is_file()  # Hydra's record of the sweep, beside it


def test_one_bad_job_refuses_the_sweep_before_anything_is_created(
    aws: str, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    args = ["run", "-m", "--detach", *ACCOUNT, "model.max_leaf_nodes=16,-1"]
    assert cloud_cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Job 1" in err
    sm = boto3.client("sagemaker", region_name="us-east-1")
    assert sm.list_training_jobs()["TrainingJobSummaries"] == []
    assert not list((in_tmp / "outputs" / "cloud").glob("*/sweep.json"))


def test_detach_refuses_more_jobs_than_may_run_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [
        "run",
        "-m",
        "--detach",
        "--max-parallel",
        "2",
        *ACCOUNT,
        "model.max_leaf_nodes=8,16,32",
    ]
    assert cloud_cli.main(args) == 2
    assert "max_parallel_jobs=2" in capsys.readouterr().err


@pytest.mark.slow
def test_a_local_sweep_ends_with_the_table_and_summary(
    capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    args = ["run", "--local", "-m", "data.n_rows=3000", "model.max_leaf_nodes=16,32"]
    assert cloud_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "test metrics" in out and "model.max_leaf_nodes=32" in out
    (sweep_dir,) = (in_tmp / "outputs" / "cloud").iterdir()
    rows = (sweep_dir / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("run,job,status,error,poisson_deviance") and len(rows) == 3
    sweep = cloud.Sweep.load(sweep_dir.name)
    assert [job.status for job in sweep.jobs] == ["Completed", "Completed"]
    for job in sweep.jobs:
        assert (sweep_dir / job.name / "model" / "model.skops").is_file()
