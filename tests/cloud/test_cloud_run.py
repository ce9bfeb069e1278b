"""``make cloud-run``: the CreateTrainingJob request, its checks, the AWS path on moto, stops."""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from conf.contract import MODE_KEY, RUN_MODE
from conf.errors import ConfigError, UserError
from pipelines.sagemaker import cloud, cloud_cli
from tests.cloud.support import ACCOUNT, BUCKET, IMAGE, ROLE, archive

pytestmark = pytest.mark.usefixtures("in_tmp")


def planned(*overrides: str, tmp: Path, local: bool = False) -> cloud.Planned:
    return cloud.plan([[*ACCOUNT, *overrides]], tmp, local=local, sweep_id="20260101-000000-abcd")


def test_the_request_is_one_whole_run_with_its_config_channel(tmp_path: Path) -> None:
    plan = planned("model=glm_poisson", tmp=tmp_path)
    request = plan.requests[0]
    assert request["TrainingJobName"] == "claim-frequency-20260101-000000-abcd-0"
    assert request["HyperParameters"] == {MODE_KEY: RUN_MODE}
    assert request["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert "ContainerEntrypoint" not in request["AlgorithmSpecification"]
    channel = request["InputDataConfig"][0]
    assert channel["ChannelName"] == "config"
    uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
    assert uri.startswith(f"s3://{BUCKET}/claim-frequency/config/") and uri.endswith("/")
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert "EnableManagedSpotTraining" not in request
    assert "KeepAlivePeriodInSeconds" not in request["ResourceConfig"]
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["project"] == "claim-frequency"
    assert tags["sweep-id"] == "20260101-000000-abcd"
    assert "model=glm_poisson" in tags["overrides"]


def test_spot_and_warm_pool_options(tmp_path: Path) -> None:
    spot = planned("sagemaker.spot=true", "sagemaker.max_runtime_seconds=600", tmp=tmp_path)
    request = spot.requests[0]
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 600,
        "MaxWaitTimeInSeconds": 1200,
    }
    warm = planned("sagemaker.keep_alive_seconds=900", tmp=tmp_path / "warm")
    assert warm.requests[0]["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 900


def test_spot_with_a_warm_pool_is_refused_naming_the_rule(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="warm pools are not available for managed spot"):
        planned("sagemaker.spot=true", "sagemaker.keep_alive_seconds=60", tmp=tmp_path)


def test_tags_keep_to_the_service_limits() -> None:
    from conf.errors import compose_checked

    cfg = compose_checked(ACCOUNT)
    long = ["model.alpha=[1,2]", "data.path='s3://x/y z'", *(f"k{i}=v" * 30 for i in range(10))]
    values = {t["Key"]: t["Value"] for t in cloud.tags(cfg, "sweep", long)}
    assert len(values["overrides"]) == 256
    assert "[" not in values["overrides"] and "'" not in values["overrides"]


def test_job_names_fit_the_service_limit() -> None:
    name = cloud.job_name("a-very-long-project-prefix" * 4, "20260101-000000-abcd", 123)
    assert len(name) <= 63 and name.endswith("-20260101-000000-abcd-123")


def test_missing_account_values_are_refused_before_anything(
    capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    assert cloud_cli.main(["run", "model=glm_poisson"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "sagemaker.role_arn" in err and "sagemaker.bucket" in err and "image_uri" in err
    assert not (in_tmp / "outputs").exists()


def test_a_bad_override_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    assert cloud_cli.main(["run", *ACCOUNT, "model.no_such_key=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no_such_key" in err
    assert not (in_tmp / "outputs").exists()


# ------------------------------------------------------------------- AWS on moto


def test_the_aws_path_creates_the_job_uploads_the_channel_and_tags(
    aws: str, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    assert cloud_cli.main(["run", "--detach", *ACCOUNT, "model=glm_poisson"]) == 0
    out = capsys.readouterr().out
    (sweep_dir,) = (in_tmp / "outputs" / "cloud").iterdir()
    sweep = cloud.Sweep.load(sweep_dir.name)
    assert sweep.sweep_id in out
    (job,) = sweep.jobs
    sm = boto3.client("sagemaker", region_name="us-east-1")
    described = sm.describe_training_job(TrainingJobName=job.name)
    assert described["HyperParameters"] == {MODE_KEY: RUN_MODE}
    assert described["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert described["RoleArn"] == ROLE
    uri = described["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert uri == job.channel_uri
    prefix = uri.removeprefix(f"s3://{BUCKET}/")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    assert f"{prefix}overrides.yaml" in keys and f"{prefix}config.yaml" in keys
    tags = sm.list_tags(ResourceArn=described["TrainingJobArn"])["Tags"]
    values = {t["Key"]: t["Value"] for t in tags}
    assert values["sweep-id"] == sweep.sweep_id and "model=glm_poisson" in values["overrides"]

    # The job's archives as the platform writes them; fetch unpacks them as a local run.
    base = f"claim-frequency/cloud/{sweep.sweep_id}/{job.name}/output"
    metrics = {"test": {"poisson_deviance": 0.5, "d2": 0.1}}
    model = archive({"model.skops": b"model", "config.yaml": b"model: {}\n"})
    output = archive({"metrics.json": json.dumps(metrics).encode(), "config.yaml": b"{}\n"})
    s3.put_object(Bucket=BUCKET, Key=f"{base}/model.tar.gz", Body=model)
    s3.put_object(Bucket=BUCKET, Key=f"{base}/output.tar.gz", Body=output)
    # moto describes every training job as Completed.
    capsys.readouterr()
    assert cloud_cli.main(["status", sweep.sweep_id]) == 0
    status_line = capsys.readouterr().out.strip()
    assert status_line.startswith(f"{job.name}  Completed  ") and "model=glm_poisson" in status_line
    assert cloud_cli.main(["fetch", sweep.sweep_id]) == 0
    folder = sweep_dir / job.name
    assert (folder / "model" / "model.skops").read_bytes() == b"model"
    assert json.loads((folder / "metrics.json").read_text()) == metrics
    assert (sweep_dir / "summary.csv").is_file()


class ScriptedBackend(cloud.Backend):
    """Jobs that stay InProgress; SIGINT arrives while they run."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.calls = 0

    def upload(self, folder: Path, uri: str) -> None:
        return None

    def start(self, request: dict[str, Any]) -> None:
        # The sweep's record names every job before the first one is created.
        (record,) = Path("outputs/cloud").glob("*/sweep.json")
        assert len(json.loads(record.read_text())["jobs"]) >= 2
        self.started.append(request["TrainingJobName"])

    def describe(self, name: str) -> dict[str, Any]:
        self.calls += 1
        if self.calls > 3:
            os.kill(os.getpid(), signal.SIGINT)
        return {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"}

    def stop(self, name: str) -> None:
        self.stopped.append(name)


def test_an_interrupt_stops_every_started_job_and_lists_them(tmp_path: Path) -> None:
    backend = ScriptedBackend()
    jobs = [[*ACCOUNT, f"model.max_leaf_nodes={n}"] for n in (16, 32, 64)]
    out = io.StringIO()
    with pytest.raises(cloud.Interrupted) as info:
        cloud.launch(
            jobs, max_parallel=2, poll_seconds=0.01, backend_factory=lambda p: backend, out=out
        )
    assert info.value.exit_code == 130
    assert len(backend.started) == 2  # at most max_parallel at a time
    assert backend.stopped == backend.started
    assert all(name in out.getvalue() for name in backend.started)


def test_stop_sends_stop_training_job() -> None:
    sm = boto3.client("sagemaker", region_name="us-east-1")
    s3 = boto3.client("s3", region_name="us-east-1")
    with Stubber(sm) as stub:
        stub.add_response("stop_training_job", {}, {"TrainingJobName": "job-1"})
        cloud.AwsBackend("us-east-1", sm, s3).stop("job-1")
        stub.assert_no_pending_responses()


@pytest.mark.slow
def test_local_cloud_run_end_to_end(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    assert cloud_cli.main(["run", "--local", "data.n_rows=20000"]) == 0
    out = capsys.readouterr().out
    assert "test metrics" in out and "Completed" in out
    (sweep_dir,) = (in_tmp / "outputs" / "cloud").iterdir()
    (job,) = cloud.Sweep.load(sweep_dir.name).jobs
    folder = sweep_dir / job.name
    for name in (
        "model/model.skops",
        "model/config.yaml",
        "metrics.json",
        "calibration.png",
        "lorenz.png",
        "config.yaml",
    ):
        assert (folder / name).is_file(), name
    assert (sweep_dir / "summary.csv").is_file()
    # The folder serves as a local run's does (make serve-local ARGS="--model <folder>").
    from pipelines.local.serve import model_tree, resolve

    with model_tree(resolve(str(folder))) as root:
        assert (root / "model" / "model.skops").is_file()
        assert (root / "model" / "config.yaml").is_file()


class RefusingBackend(ScriptedBackend):
    """The second CreateTrainingJob is refused (a quota, say)."""

    def start(self, request: dict[str, Any]) -> None:
        super().start(request)
        if len(self.started) == 2:
            raise UserError("SageMaker refused the training job: ResourceLimitExceeded")

    def describe(self, name: str) -> dict[str, Any]:
        return {"TrainingJobStatus": "InProgress"}


def test_a_refused_job_stops_the_jobs_already_started(tmp_path: Path) -> None:
    backend = RefusingBackend()
    jobs = [[*ACCOUNT, f"model.max_leaf_nodes={n}"] for n in (16, 32)]
    out = io.StringIO()
    with pytest.raises(UserError, match="ResourceLimitExceeded"):
        cloud.launch(jobs, poll_seconds=0.01, backend_factory=lambda p: backend, out=out)
    assert backend.stopped == backend.started
    assert "failed: stopping 2 job(s)" in out.getvalue()


# ------------------------------------------------------------------ --local in the image


def test_container_needs_local_and_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for command in ("run", "tune"):
        assert cloud_cli.main([command, "--container", "podman", *ACCOUNT]) == 2
        err = capsys.readouterr().err
        assert err == "error: --container podman runs the jobs on this machine: add --local.\n"


def test_local_jobs_run_in_the_image_the_config_names(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A podman stand-in: the image is checked first, then each job is one ``podman run``."""
    from tests.cloud.test_cloud_replay import LOCAL_IMAGE, standin_engine

    log = in_tmp / "runs.log"
    standin_engine(in_tmp / "bin", log)
    monkeypatch.setenv("PATH", f"{in_tmp / 'bin'}:{os.environ['PATH']}")
    flags = ["--container", "podman", "--container-flag=--ulimit", "--container-flag=nproc=9"]
    assert cloud_cli.main(["run", "--local", *flags, "data.n_rows=3000"]) == 2
    assert "the image claim-frequency:local is not built here" in capsys.readouterr().err
    assert not log.exists()  # refused before anything ran
    image = f"sagemaker.image_uri={LOCAL_IMAGE}"
    code = cloud_cli.main(["run", "--local", *flags, "-m", image, "data.n_rows=3000,4000"])
    # The stand-in writes nothing: each job completes without its outputs, which the
    # summary says instead of ending in a traceback.
    assert code == 2
    assert capsys.readouterr().out.count("the job completed without output.tar.gz") == 2
    runs = log.read_text().splitlines()
    assert len(runs) == 2
    assert all(r.startswith("run ") and r.endswith(f" {LOCAL_IMAGE} train") for r in runs)
    assert all(" --ulimit nproc=9 " in r for r in runs)
