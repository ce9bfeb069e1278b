"""``--s3 aws``: real S3 and CreateModelPackage through boto3 (here a local AWS endpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from executor.engine import Execution, Registry
from executor.jobs import Runner
from executor.storage import BotoStore

from . import support


def test_a_definition_runs_against_s3_and_registers_through_the_api(
    aws: str, tmp_path: Path
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=support.BUCKET)
    s3.put_object(Bucket=support.BUCKET, Key="input/numbers/n.txt", Body=b"1 2 3\n")
    sm = boto3.client("sagemaker", region_name="us-east-1")
    sm.create_model_package_group(ModelPackageGroupName="tiny")
    store = BotoStore(s3)
    folder = tmp_path / "exec"
    runner = Runner(store=store, images=support.tiny_images(), jobs_dir=folder / "jobs")
    e = Execution(
        support.definition(),
        {"X": "4"},
        runner,
        folder,
        pipeline_name="tiny",
        execution_id="awsmode00001",
        store=store,
        registry=Registry(folder / "registry", sm),
    )
    assert e.run() == "Succeeded", json.dumps(e.record.data["PipelineExecutionSteps"], indent=1)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=support.BUCKET)["Contents"]]
    fit = e.record.data["Local"]["Steps"]["Fit"]["Properties"]
    assert f"runs/awsmode00001/model/{fit['TrainingJobName']}/output/model.tar.gz" in keys
    assert "runs/awsmode00001/score/evaluation/metrics.json" in keys
    packages = sm.list_model_packages(ModelPackageGroupName="tiny")["ModelPackageSummaryList"]
    assert len(packages) == 1
    register = next(s for s in e.record.steps() if s["StepName"] == "Register")
    assert register["Metadata"]["RegisterModel"]["Arn"] == packages[0]["ModelPackageArn"]
    assert not (folder / "registry").exists()
