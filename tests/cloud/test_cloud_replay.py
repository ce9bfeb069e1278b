"""``make replay``: a cloud training job's request, inputs and config channel, run here."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from pipelines.sagemaker import cloud, cloud_cli

ROLE = "arn:aws:iam::123456789012:role/sagemaker"
BUCKET = "claims-data"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/claim-frequency:abc"
ACCOUNT = [
    f"sagemaker.role_arn={ROLE}",
    f"sagemaker.bucket={BUCKET}",
    f"sagemaker.image_uri={IMAGE}",
]


def test_the_replayed_request_is_the_described_one() -> None:
    described = {
        "TrainingJobName": "a",
        "TrainingJobStatus": "Failed",
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {"mode": "run"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "KeepAlivePeriodInSeconds": 60},
        "FailureReason": "x",
    }
    request = cloud.replay_request(described, "replay-a")
    assert request["TrainingJobName"] == "replay-a"
    assert request["HyperParameters"] == {"mode": "run"}
    assert "TrainingJobStatus" not in request and "FailureReason" not in request
    assert "KeepAlivePeriodInSeconds" not in request["ResourceConfig"]


@pytest.mark.slow
def test_replay_runs_a_cloud_job_here(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    assert cloud_cli.main(["run", "--detach", *ACCOUNT, "data.n_rows=3000"]) == 0
    (sweep_dir,) = (tmp_path / "outputs" / "cloud").iterdir()
    (job,) = cloud.Sweep.load(sweep_dir.name).jobs
    capsys.readouterr()
    assert cloud_cli.main(["replay", job.name]) == 0
    out = capsys.readouterr().out
    assert f"replay-{job.name}"[:63] in out and "Completed" in out
    folder = tmp_path / "outputs" / "pipelines" / "jobs" / f"replay-{job.name}"[:63]
    request = json.loads((folder / "request.json").read_text())
    assert request["HyperParameters"] == {"mode": "run"}
