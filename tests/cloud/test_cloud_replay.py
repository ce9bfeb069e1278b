"""``make replay``: a cloud training or processing job (or a pipeline step's) run here.

S3 and DescribeTrainingJob are the local endpoint's; where it lacks a call
(ListPipelineExecutionSteps) or the full DescribeProcessingJob, botocore's
``Stubber`` answers the SageMaker client with scripted responses, checked against
the service model, while the job's inputs live in the endpoint's real S3.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from conf.channel import digest, write_channel
from conf.contract import ENTRYPOINT, PREPARE, SPLITS
from conf.errors import UserError
from pipelines.sagemaker import cloud, cloud_cli, replay
from pipelines.sagemaker.s3 import upload_folder
from tests.cloud.support import ACCOUNT, BUCKET, IMAGE, REGION, ROLE

pytestmark = pytest.mark.usefixtures("in_tmp")
EXECUTION = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/claim-frequency/execution/x1y2"
JOB_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:{{}}/{{}}"
PREPARE_JOB = "pipelines-x1y2-prepare-a1b2c3"
TRAIN_JOB = "pipelines-x1y2-train-d4e5f6"
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def step(name: str, status: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"StepName": name, "StepStatus": status, "StartTime": WHEN}
    if metadata is not None:
        item["Metadata"] = metadata
    return item


# Two pages, as ListPipelineExecutionSteps pages them (latest first).
PAGES = [
    [
        step("Evaluate", "Failed", {}),
        step("Gate", "Succeeded", {"Condition": {"Outcome": "True"}}),
    ],
    [
        step(
            "Train", "Failed", {"TrainingJob": {"Arn": JOB_ARN.format("training-job", TRAIN_JOB)}}
        ),
        step(
            "Prepare",
            "Succeeded",
            {"ProcessingJob": {"Arn": JOB_ARN.format("processing-job", PREPARE_JOB)}},
        ),
    ],
]


def stub_steps(stubber: Stubber) -> None:
    stubber.add_response(
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": PAGES[0], "NextToken": "page-2"},
        {"PipelineExecutionArn": EXECUTION},
    )
    stubber.add_response(
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": PAGES[1]},
        {"PipelineExecutionArn": EXECUTION, "NextToken": "page-2"},
    )


def sagemaker() -> Any:
    return boto3.client("sagemaker", region_name=REGION)


# ------------------------------------------------------------------------- the request


def test_the_replayed_request_is_the_describe_less_what_create_does_not_accept() -> None:
    described = {
        "TrainingJobName": "a",
        "TrainingJobArn": JOB_ARN.format("training-job", "a"),
        "TrainingJobStatus": "Failed",
        "FailureReason": "AlgorithmError: x",
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m"},
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {"mode": "run"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "KeepAlivePeriodInSeconds": 60},
        "EnableNetworkIsolation": False,
        "CreationTime": WHEN,
        "ResponseMetadata": {},
    }
    request = replay.replay_request(replay.TRAINING, described, "replay-a")
    assert request == {
        "TrainingJobName": "replay-a",
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {"mode": "run"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge"},
        "EnableNetworkIsolation": False,
    }
    assert described["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 60  # a copy was cut
    left = replay.dropped(replay.TRAINING)
    assert {"TrainingJobStatus", "FailureReason", "ModelArtifacts", "CreationTime"} <= set(left)
    assert "HyperParameters" not in left
    processing = replay.dropped(replay.PROCESSING)
    assert {"ProcessingJobStatus", "ExitMessage", "ProcessingJobArn"} <= set(processing)
    assert "ProcessingInputs" not in processing and "AppSpecification" not in processing


def test_the_docs_name_every_field_left_out() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "cloud.md").read_text()
    section = " ".join(docs.split("## Replay: make replay")[1].split("\n## ")[0].split())
    for kind in replay.KINDS:
        missing = [f for f in replay.dropped(kind) if f not in section]
        assert missing == [], f"docs/cloud.md does not name {missing} ({kind.describe})"


def test_replay_names_fit_the_service_limit() -> None:
    assert replay.replay_name("a" * 63) == "replay-" + "a" * 56
    assert replay.replay_name("ab-" + "c" * 60) == "replay-ab-" + "c" * 53
    assert replay.job_name(JOB_ARN.format("training-job", "my-job")) == "my-job"
    assert replay.region_of(EXECUTION) == REGION and replay.region_of("my-job") is None


def test_inputs_that_are_not_s3_prefixes_are_refused() -> None:
    efs = {"ChannelName": "data", "DataSource": {"FileSystemDataSource": {"FileSystemId": "x"}}}
    with pytest.raises(UserError, match="'data' does not read S3"):
        replay.inputs(replay.TRAINING, {"InputDataConfig": [efs]})
    manifest = {
        "InputName": "data",
        "S3Input": {"S3Uri": "s3://b/m", "LocalPath": "/opt/ml/processing/input/data"},
    }
    manifest["S3Input"]["S3DataType"] = "ManifestFile"
    with pytest.raises(UserError, match="S3DataType ManifestFile: replay downloads S3Prefix"):
        replay.inputs(replay.PROCESSING, {"ProcessingInputs": [manifest]})


# -------------------------------------------------------------------------- pipeline steps


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Gate", "Step 'Gate' ran a Condition step, not a training or processing job"),
        ("Evaluate", "Step 'Evaluate' started no job (status Failed)"),
        ("Register", "Step 'Register' is not in the execution"),
    ],
)
def test_a_step_without_a_job_is_one_line_naming_the_replayable_steps(
    name: str, expected: str
) -> None:
    sm = sagemaker()
    with Stubber(sm) as stubber:
        stub_steps(stubber)
        with pytest.raises(UserError) as info:
            replay.step_job(sm, EXECUTION, name)
        stubber.assert_no_pending_responses()  # both pages were read
    message = str(info.value)
    assert message.startswith(expected) and "\n" not in message
    assert message.endswith("replayable steps: Prepare, Train.")


def test_a_steps_job_is_the_last_part_of_its_arn() -> None:
    sm = sagemaker()
    with Stubber(sm) as stubber:
        stub_steps(stubber)
        assert replay.step_job(sm, EXECUTION, "Prepare") == PREPARE_JOB


def test_a_bad_replay_command_is_one_line_and_exit_2(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cloud_cli.main(["replay", EXECUTION]) == 2
    assert "name the step to replay too" in capsys.readouterr().err
    assert cloud_cli.main(["replay", "a-job", "Train"]) == 2
    assert "is not a pipeline execution ARN" in capsys.readouterr().err
    assert cloud_cli.main(["replay", "no-such-job"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No training or processing job is named 'no-such-job'")
    assert err.count("\n") == 1


def test_a_request_the_executor_refuses_is_one_line(tmp_path: Path) -> None:
    described = {
        "TrainingJobName": "a",
        "TrainingJobArn": JOB_ARN.format("training-job", "a"),
        "TrainingJobStatus": "Failed",
        "SecondaryStatus": "Failed",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/none"},
        "CreationTime": WHEN,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {"x": "y" * 300},  # the service's prose says 256 at most
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    sm = sagemaker()
    with Stubber(sm) as stubber:
        stubber.add_response("describe_training_job", described)
        with pytest.raises(UserError, match="CreateTrainingJob request of a does not run here"):
            replay.replay(sm, boto3.client("s3", region_name=REGION), "a", tmp_path)
    assert not Path("outputs/pipelines/jobs/replay-a").exists()


# ------------------------------------------------------------------------ jobs run here


@pytest.mark.slow
def test_replay_runs_a_cloud_job_here(aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    assert cloud_cli.main(["run", "--detach", *ACCOUNT, "data.n_rows=3000"]) == 0
    (sweep_dir,) = Path("outputs/cloud").iterdir()
    (job,) = cloud.Sweep.load(sweep_dir.name).jobs
    capsys.readouterr()
    assert cloud_cli.main(["replay", job.name]) == 0
    out = capsys.readouterr().out
    name = replay.replay_name(job.name)
    assert f"{name}  Completed" in out and "config (/opt/ml/input/data/config): " in out
    folder = Path("outputs/pipelines/jobs") / name
    request = json.loads((folder / "request.json").read_text())
    assert request["HyperParameters"] == {"mode": "run"}


def cloud_training_job(tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    """A cloud run's CreateTrainingJob request (without tags), its channel in the endpoint's S3."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    planned = cloud.plan([[*ACCOUNT, "data.n_rows=3000"]], tmp_path / "plan", local=False)
    upload_folder(s3, planned.channels[0], planned.sweep.jobs[0].channel_uri)
    return s3, {k: v for k, v in planned.requests[0].items() if k != "Tags"}


@pytest.mark.slow
def test_a_failed_pipeline_training_step_replays_here(aws: str, tmp_path: Path) -> None:
    """The step failed in the cloud: its job's request, channel and all, runs here."""
    s3, sent = cloud_training_job(tmp_path)
    described = {
        **sent,
        "TrainingJobName": TRAIN_JOB,
        "TrainingJobArn": JOB_ARN.format("training-job", TRAIN_JOB),
        "TrainingJobStatus": "Failed",
        "SecondaryStatus": "Failed",
        "FailureReason": "AlgorithmError: the instance ran out of memory",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/none"},
        "CreationTime": WHEN,
    }
    sm = sagemaker()
    with Stubber(sm) as stubber:
        stub_steps(stubber)
        stubber.add_response("describe_training_job", described, {"TrainingJobName": TRAIN_JOB})
        name = replay.step_job(sm, EXECUTION, "Train")
        done = replay.replay(sm, s3, name, tmp_path / "scratch")
        stubber.assert_no_pending_responses()
    assert done.kind is replay.TRAINING and done.cloud["TrainingJobStatus"] == "Failed"
    assert done.run.status == "Completed", done.run.describe.get("FailureReason")
    request = json.loads((done.run.folder / "request.json").read_text())
    assert request == {**sent, "TrainingJobName": replay.replay_name(TRAIN_JOB)}


@pytest.mark.slow
def test_a_pipeline_processing_step_replays_with_its_inputs(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No training job has the name: the processing job is described, its S3Input fetched."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    channel = tmp_path / "channel"
    write_channel(channel, [*ACCOUNT, "data.n_rows=3000"])
    config_uri = (
        f"s3://{BUCKET}/claim-frequency/pipelines/claim-frequency/config/{digest(channel)}/"
    )
    upload_folder(s3, channel, config_uri)
    runs = f"s3://{BUCKET}/claim-frequency/runs/x1y2/data"
    described = {
        "ProcessingJobName": PREPARE_JOB,
        "ProcessingJobArn": JOB_ARN.format("processing-job", PREPARE_JOB),
        "ProcessingJobStatus": "Completed",
        "CreationTime": WHEN,
        "RoleArn": ROLE,
        "AppSpecification": {
            "ImageUri": IMAGE,
            "ContainerEntrypoint": [*ENTRYPOINT, PREPARE],
            "ContainerArguments": ["--overrides=none", "--input-data-uri=none"],
        },
        "ProcessingInputs": [
            {
                "InputName": "config",
                "S3Input": {
                    "S3Uri": config_uri,
                    "LocalPath": "/opt/ml/processing/input/config",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": split,
                    "S3Output": {
                        "S3Uri": f"{runs}/{split}",
                        "LocalPath": f"/opt/ml/processing/output/{split}",
                        "S3UploadMode": "EndOfJob",
                    },
                }
                for split in SPLITS
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "VolumeSizeInGB": 30,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    sm = sagemaker()
    with Stubber(sm) as stubber:
        stub_steps(stubber)
        stubber.add_client_error(
            "describe_training_job",
            service_error_code="ValidationException",
            service_message="Requested resource not found.",
            expected_params={"TrainingJobName": PREPARE_JOB},
        )
        stubber.add_response(
            "describe_processing_job", described, {"ProcessingJobName": PREPARE_JOB}
        )
        name = replay.step_job(sm, EXECUTION, "Prepare")
        done = replay.replay(sm, s3, name, tmp_path / "scratch")
        stubber.assert_no_pending_responses()
    out = capsys.readouterr().out
    assert done.kind is replay.PROCESSING
    assert done.run.status == "Completed", done.run.describe.get("FailureReason")
    files = len([p for p in channel.rglob("*") if p.is_file()])
    assert f"config (/opt/ml/processing/input/config): {files} file(s) from {config_uri}" in out
    assert "Left out of CreateProcessingJob: ProcessingJobArn, ProcessingJobStatus" in out
    store = Path("outputs/pipelines/s3") / BUCKET / "claim-frequency/runs/x1y2/data"
    assert all((store / split / "data.parquet").is_file() for split in SPLITS)


# ------------------------------------------------------------------- in a container engine

LOCAL_IMAGE = "claim-frequency:abc"


def standin_engine(bin_dir: Path, log: Path) -> None:
    """A podman stand-in that answers, has only LOCAL_IMAGE and logs each ``run``."""
    bin_dir.mkdir()
    tool = bin_dir / "podman"
    tool.write_text(
        '#!/bin/sh\ncase "$1" in\n  info) exit 0 ;;\n'
        f'  image) [ "$3" = "{LOCAL_IMAGE}" ] && exit 0; echo "no such image" >&2; exit 1 ;;\n'
        f'  run) echo "$@" >> {log}; exit 0 ;;\n  *) exit 99 ;;\nesac\n'
    )
    tool.chmod(0o755)


def test_a_container_replay_runs_the_local_image_named(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from executor import ContainerEngine

    log = tmp_path / "runs.log"
    standin_engine(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    s3, sent = cloud_training_job(tmp_path)
    described = {
        **sent,
        "TrainingJobArn": JOB_ARN.format("training-job", sent["TrainingJobName"]),
        "TrainingJobStatus": "Failed",
        "SecondaryStatus": "Failed",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/none"},
        "CreationTime": WHEN,
    }
    name, engine = sent["TrainingJobName"], ContainerEngine("podman")
    sm = sagemaker()
    with Stubber(sm) as stubber:
        with pytest.raises(UserError, match=r"--image names the image .* add --container"):
            replay.replay(sm, s3, name, tmp_path / "s0", image=LOCAL_IMAGE)
        stubber.add_response("describe_training_job", described)
        with pytest.raises(UserError, match=f"{IMAGE} is not built here.*--image {LOCAL_IMAGE}"):
            replay.replay(sm, s3, name, tmp_path / "s1", engine=engine)
        assert not log.exists()  # refused before anything ran
        stubber.add_response("describe_training_job", described)
        done = replay.replay(sm, s3, name, tmp_path / "s2", engine=engine, image=LOCAL_IMAGE)
    (run,) = log.read_text().splitlines()
    assert run.startswith("run ") and run.endswith(f" {LOCAL_IMAGE} train")
    request = json.loads((done.run.folder / "request.json").read_text())
    assert request["AlgorithmSpecification"]["TrainingImage"] == LOCAL_IMAGE
