"""The SageMaker Pipeline: definition wiring, valid job requests, commands on a local endpoint."""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.validate import ParamValidator

from conf import compose, to_yaml
from conf.channel import CONFIG_FILE, digest, write_channel
from executor.service_rules import job_steps
from pipelines.sagemaker import aws, cli

ROLE = "arn:aws:iam::123456789012:role/claim-frequency-sagemaker"
BASE = [
    f"sagemaker.role_arn={ROLE}",
    "sagemaker.bucket=claim-frequency-data",
    "sagemaker.image_uri=123456789012.dkr.ecr.us-east-1.amazonaws.com/claim-frequency:1",
]
REGION = "us-east-1"
OPERATIONS = {
    "Processing": "CreateProcessingJob",
    "Training": "CreateTrainingJob",
    "Tuning": "CreateHyperParameterTuningJob",
    "RegisterModel": "CreateModelPackage",
}
EXPRESSIONS = ("Get", "Std:Join", "Std:JsonGet")
# Names the pipeline service gives each job at execution time.
JOB_NAMES = {
    "Processing": "ProcessingJobName",
    "Training": "TrainingJobName",
    "Tuning": "HyperParameterTuningJobName",
}


# Runtime parameters every training job gets (the container turns them into overrides).
RUNTIME_HYPERPARAMETERS = {
    "overrides": {"Get": "Parameters.HydraOverrides"},
    "input_data_uri": {"Get": "Parameters.InputDataUri"},
}


def build(overrides: list[str], tmp: Path) -> tuple[dict[str, Any], str]:
    cfg = compose(overrides)
    definition, uri = cli.build_definition(cfg, overrides, tmp, REGION)
    return json.loads(definition), uri


@pytest.fixture(scope="module")
def train_def(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """The default pipeline, written by the ``definition`` command.

    No local endpoint is running here: any AWS call would fail on the closed port.
    """
    out = tmp_path_factory.mktemp("train") / "definition.json"
    assert cli.main(["definition", "--out", str(out), *BASE]) == 0
    definition = json.loads(out.read_text())
    return definition, inputs(steps(definition)["Prepare"])["config"]["S3Uri"]


@pytest.fixture(scope="module")
def tune_def(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    return build([*BASE, "pipeline=tune"], tmp_path_factory.mktemp("tune"))


def steps(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """All steps by name, those nested in the condition step included."""
    return {step["Name"]: step for step in job_steps(definition)}


def inputs(step: dict[str, Any]) -> dict[str, Any]:
    return {i["InputName"]: i["S3Input"] for i in step["Arguments"]["ProcessingInputs"]}


def channel_uris(channels: list[dict[str, Any]]) -> dict[str, Any]:
    return {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in channels}


def prepare_output(split: str) -> dict[str, str]:
    return {"Get": f"Steps.Prepare.ProcessingOutputConfig.Outputs['{split}'].S3Output.S3Uri"}


# ---------------------------------------------------------------- request validity


def placeholders(value: Any, shape: Any) -> Any:
    """Replace pipeline expressions by placeholder values of the shape's type."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in EXPRESSIONS:
        return {
            "string": "s3://placeholder/key" if "s3" in shape.name.lower() else "placeholder",
            "integer": 1,
            "long": 1,
            "float": 1.0,
            "double": 1.0,
            "boolean": True,
        }[shape.type_name]
    if shape.type_name == "structure" and isinstance(value, dict):
        return {
            k: placeholders(v, shape.members[k]) if k in shape.members else v
            for k, v in value.items()
        }
    if shape.type_name == "list" and isinstance(value, list):
        return [placeholders(v, shape.member) for v in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: placeholders(v, shape.value) for k, v in value.items()}
    return value


def request_errors(step: dict[str, Any]) -> str:
    """botocore's validation report for a step's Arguments ('' when valid)."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model(OPERATIONS[step["Type"]]).input_shape
    request = placeholders(step["Arguments"], shape)
    if step["Type"] in JOB_NAMES:
        request[JOB_NAMES[step["Type"]]] = "job-name"
    report = ParamValidator().validate(request, shape)
    return report.generate_report() if report.has_errors() else ""


@pytest.mark.parametrize("mode", ["train", "tune"])
def test_job_arguments_are_valid_requests(mode: str, train_def, tune_def) -> None:
    definition, _ = train_def if mode == "train" else tune_def
    checked = [s for s in steps(definition).values() if s["Type"] in OPERATIONS]
    assert {s["Type"] for s in checked} >= {"Processing", "RegisterModel"}
    for step in checked:
        assert request_errors(step) == "", step["Name"]


def test_validation_catches_a_malformed_request(train_def) -> None:
    step = copy.deepcopy(steps(train_def[0])["Train"])
    step["Arguments"]["ResourceConfig"]["InstanceCount"] = "one"
    del step["Arguments"]["RoleArn"]
    report = request_errors(step)
    assert "RoleArn" in report and "InstanceCount" in report


# ----------------------------------------------------------------------- wiring


def test_train_pipeline_wiring(train_def) -> None:
    definition, uri = train_def
    by_name = steps(definition)
    names = [s["Name"] for s in definition["Steps"]]
    assert names == ["Prepare", "Train", "Evaluate", "QualityGate"]

    prepare = by_name["Prepare"]["Arguments"]
    assert prepare["AppSpecification"]["ContainerEntrypoint"] == [
        "python", "-m", "container.entrypoint", "prepare",
    ]  # fmt: skip
    assert prepare["AppSpecification"]["ContainerArguments"] == [
        {"Std:Join": {"On": "", "Values": [f"--{flag}=", {"Get": f"Parameters.{name}"}]}}
        for flag, name in (("overrides", "HydraOverrides"), ("input-data-uri", "InputDataUri"))
    ]
    outputs = {o["OutputName"]: o["S3Output"] for o in prepare["ProcessingOutputConfig"]["Outputs"]}
    assert {k: v["LocalPath"] for k, v in outputs.items()} == {
        s: f"/opt/ml/processing/output/{s}" for s in ("train", "validation", "test")
    }
    assert by_name["Prepare"]["CacheConfig"] == {"Enabled": False, "ExpireAfter": "P30D"}

    train = by_name["Train"]["Arguments"]
    channels = channel_uris(train["InputDataConfig"])
    assert channels == {
        "train": prepare_output("train"),
        "validation": prepare_output("validation"),
        "config": uri,
    }
    assert train["HyperParameters"] == RUNTIME_HYPERPARAMETERS
    assert [m["Name"] for m in train["AlgorithmSpecification"]["MetricDefinitions"]] == [
        "train:poisson_deviance", "validation:poisson_deviance", "validation:d2", "validation:gini",
    ]  # fmt: skip
    assert train["ResourceConfig"]["InstanceType"] == {"Get": "Parameters.TrainingInstanceType"}
    assert {"Key": "project", "Value": "claim-frequency"} in train["Tags"]
    retries = {e for p in by_name["Train"]["RetryPolicies"] for e in p["ExceptionType"]}
    assert {"Step.THROTTLING", "SageMaker.CAPACITY_ERROR"} <= retries

    evaluate = by_name["Evaluate"]
    ev_inputs = inputs(evaluate)
    assert ev_inputs["model"]["S3Uri"] == {"Get": "Steps.Train.ModelArtifacts.S3ModelArtifacts"}
    assert ev_inputs["test"]["S3Uri"] == prepare_output("test")
    assert ev_inputs["config"]["S3Uri"] == uri
    assert ev_inputs["model"]["LocalPath"] == "/opt/ml/processing/input/model"
    # Every job composes the same data config: the input data URI reaches all of them.
    assert (
        evaluate["Arguments"]["AppSpecification"]["ContainerArguments"]
        == (prepare["AppSpecification"]["ContainerArguments"])
    )
    assert evaluate["PropertyFiles"] == [
        {
            "PropertyFileName": "EvaluationMetrics",
            "OutputName": "evaluation",
            "FilePath": "metrics.json",
        }
    ]
    gate = by_name["QualityGate"]["Arguments"]
    lefts = [c["LeftValue"]["Std:JsonGet"] for c in gate["Conditions"]]
    assert {(c["Path"], c["PropertyFile"]["Get"]) for c in lefts} == {
        ("test.poisson_deviance", "Steps.Evaluate.PropertyFiles.EvaluationMetrics")
    }
    rights = [c["RightValue"] for c in gate["Conditions"]]
    assert {"Get": "Parameters.QualityThreshold"} in rights
    assert rights[1]["Std:JsonGet"]["Path"] == "test.baseline_poisson_deviance"
    register = by_name["Register"]["Arguments"]
    assert register["ModelPackageGroupName"] == "claim-frequency"
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ModelApprovalStatus"}
    stats = register["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]["Std:Join"]["Values"]
    assert stats[-1] == "model_quality.json"
    # Only sections with content: the SDK writes empty Bias and Explainability sections.
    assert list(register["ModelMetrics"]) == ["ModelQuality"]
    message = json.dumps(by_name["QualityGateFailed"]["Arguments"]["ErrorMessage"])
    assert "test.poisson_deviance" in message and "test.baseline_poisson_deviance" in message


def test_parameters_have_configured_defaults(train_def) -> None:
    params = {p["Name"]: p.get("DefaultValue") for p in train_def[0]["Parameters"]}
    assert params == {
        "InputDataUri": "none",
        "ProcessingInstanceType": "ml.m5.xlarge",
        "TrainingInstanceType": "ml.m5.xlarge",
        "ModelApprovalStatus": "PendingManualApproval",
        "QualityThreshold": 1.0,
        "HydraOverrides": "none",
    }


def test_tune_pipeline_reads_search_space_and_feeds_best_model(tune_def) -> None:
    definition, uri = tune_def
    cfg = compose([*BASE, "pipeline=tune"])
    by_name = steps(definition)
    assert "Train" not in by_name
    tune = by_name["Tune"]["Arguments"]
    config = tune["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == cfg.tuning.strategy
    assert config["HyperParameterTuningJobObjective"] == {
        "MetricName": cfg.tuning.objective_metric,
        "Type": cfg.tuning.objective_type,
    }
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == cfg.tuning.max_jobs
    ranges = {
        r["Name"]: (kind, r.get("MinValue"), r.get("MaxValue"), r.get("ScalingType"))
        for kind, items in config["ParameterRanges"].items()
        for r in items
    }
    kinds = {"integer": "IntegerParameterRanges", "continuous": "ContinuousParameterRanges"}
    assert ranges == {
        f"model.{k}": (kinds[p.type], str(p.min if p.type == "continuous" else int(p.min)),
                       str(p.max if p.type == "continuous" else int(p.max)), p.scaling)
        for k, p in cfg.tuning.parameters.items()
    }  # fmt: skip
    job = tune["TrainingJobDefinition"]
    assert job["StaticHyperParameters"] == RUNTIME_HYPERPARAMETERS
    channels = channel_uris(job["InputDataConfig"])
    assert channels["train"] == prepare_output("train") and channels["config"] == uri
    model = json.dumps(inputs(by_name["Evaluate"])["model"]["S3Uri"])
    assert "Steps.Tune.TrainingJobSummaries[0].TrainingJobName" in model


def test_every_model_override_changes_the_config_channel(tmp_path: Path) -> None:
    variants = [
        [],
        ["model=glm_poisson"],
        ["model.max_leaf_nodes=64"],
        ["model=glm_poisson", "model.alpha=0.01"],
    ]
    digests = set()
    for i, extra in enumerate(variants):
        folder = tmp_path / str(i)
        write_channel(folder, [*BASE, *extra])
        digests.add(digest(folder))
    assert len(digests) == len(variants)
    again = tmp_path / "again"
    write_channel(again, BASE)
    assert digest(again) == digest(tmp_path / "0")  # content-addressed: same config, same key


# ----------------------------------------------------------------------- commands


def test_definition_command_never_overwrites(train_def, tmp_path: Path, capsys) -> None:
    out = tmp_path / "definition.json"
    out.write_text("earlier")
    assert cli.main(["definition", "--out", str(out), *BASE, "model=glm_poisson"]) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == "earlier"
    cfg = compose(BASE)
    with aws.temporary_folder() as tmp:
        write_channel(Path(tmp), BASE)
        assert train_def[1] == aws.channel_uri(cfg, Path(tmp))  # the content address
    assert train_def[1].startswith(
        "s3://claim-frequency-data/claim-frequency/pipelines/claim-frequency/config/"
    )


@pytest.mark.parametrize(
    ("drop", "named"),
    [("sagemaker.role_arn", "sagemaker.role_arn"), ("sagemaker.bucket", "sagemaker.bucket")],
)
def test_missing_setting_is_named(drop: str, named: str, tmp_path: Path, capsys) -> None:
    overrides = [o for o in BASE if not o.startswith(drop)]
    assert cli.main(["definition", "--out", str(tmp_path / "d.json"), *overrides]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not (tmp_path / "d.json").exists()


def test_missing_region_and_credentials_are_named(monkeypatch, capsys) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["upsert", *BASE]) == 2
    assert "AWS_REGION" in capsys.readouterr().err
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["upsert", *BASE, f"sagemaker.region={REGION}"]) == 2
    assert "AWS_PROFILE" in capsys.readouterr().err


MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"digest": "sha256:" + "1" * 64},
    }
)


@pytest.fixture
def deployed(aws: str, capsys: pytest.CaptureFixture) -> dict[str, str]:
    """The default pipeline upserted into a fresh local endpoint; its ARN and upsert output."""
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="claim-frequency-data")
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="claim-frequency")
    ecr.put_image(repositoryName="claim-frequency", imageManifest=MANIFEST, imageTag="1")
    assert cli.main(["upsert", *BASE]) == 0
    sm = boto3.client("sagemaker", region_name=REGION)
    arn = sm.describe_pipeline(PipelineName="claim-frequency")["PipelineArn"]
    return {"arn": arn, "out": capsys.readouterr().out}


def test_upsert_uploads_the_config_then_updates_in_place(
    deployed: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    assert "new pipeline" in deployed["out"] and deployed["arn"] in deployed["out"]
    s3 = boto3.client("s3", region_name=REGION)
    sm = boto3.client("sagemaker", region_name=REGION)
    # The uploaded config is the composed config of the same overrides.
    described = sm.describe_pipeline(PipelineName="claim-frequency")
    definition = json.loads(described["PipelineDefinition"])
    config_uri = inputs(steps(definition)["Prepare"])["config"]["S3Uri"]
    bucket, _, prefix = config_uri.removeprefix("s3://").partition("/")
    body = s3.get_object(Bucket=bucket, Key=prefix + CONFIG_FILE)["Body"].read().decode()
    assert body == to_yaml(compose(BASE))

    # A second upsert with another model updates the same pipeline in place.
    assert cli.main(["upsert", *BASE, "model=glm_poisson"]) == 0
    second = capsys.readouterr().out
    assert deployed["arn"] in second and "-" in second and "+" in second
    assert "no changes" not in second
    assert len(sm.list_pipelines()["PipelineSummaries"]) == 1
    updated = json.loads(sm.describe_pipeline(PipelineName="claim-frequency")["PipelineDefinition"])
    assert inputs(steps(updated)["Prepare"])["config"]["S3Uri"] != config_uri


def _executions() -> list[list[dict[str, str]]]:
    """The parameters of every execution started so far, oldest first."""
    sm = boto3.client("sagemaker", region_name=REGION)
    summaries = sm.list_pipeline_executions(PipelineName="claim-frequency")[
        "PipelineExecutionSummaries"
    ]
    return [
        sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=s["PipelineExecutionArn"])[
            "PipelineParameters"
        ]
        for s in sorted(summaries, key=lambda s: s["StartTime"])
    ]


def test_start_sends_only_checked_values(
    deployed: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    assert cli.main(["start", "--param", "HydraOverrides=model.max_leaf_nodes=64", *BASE]) == 0
    assert {"Name": "HydraOverrides", "Value": "model.max_leaf_nodes=64"} in _executions()[0]
    # An empty value clears the parameter: the service would refuse "", so "none" is sent.
    assert cli.main(["start", "--param", "HydraOverrides=", *BASE]) == 0
    assert {"Name": "HydraOverrides", "Value": "none"} in _executions()[-1]
    capsys.readouterr()

    refused = {
        "HydraOverrides=model.max_leaf_nodez=3": "max_leaf_nodez",
        "InputDataUri=s3://elsewhere/claims.csv": "s3://claim-frequency-data/claim-frequency/",
        "HydraOverrides=sagemaker.bucket=x": "read only when the pipeline is built",
        "Nope=1": "Nope",
    }
    for param, named in refused.items():
        assert cli.main(["start", "--param", param, *BASE]) == 2, param
        err = capsys.readouterr().err
        assert named in err and "Traceback" not in err, err
    assert len(_executions()) == 2  # nothing refused was started


def test_start_without_a_deployed_pipeline_says_upsert(aws: str, capsys) -> None:
    assert cli.main(["start", *BASE]) == 2
    assert "make upsert-pipeline" in capsys.readouterr().err


def test_schedule_create_update_remove(deployed: dict[str, str], capsys) -> None:
    sched_role = "arn:aws:iam::123456789012:role/claim-frequency-scheduler"
    assert cli.main(["schedule", *BASE, f"schedule.role_arn={sched_role}"]) == 0
    scheduler = boto3.client("scheduler", region_name=REGION)
    schedule = scheduler.get_schedule(Name="claim-frequency-retrain")
    assert schedule["ScheduleExpression"] == compose(BASE).schedule.expression
    assert schedule["Target"]["Arn"] == deployed["arn"]
    assert schedule["Target"]["RoleArn"] == sched_role
    assert schedule["Target"]["SageMakerPipelineParameters"]["PipelineParameterList"] == [
        {"Name": str(k), "Value": str(v)} for k, v in compose(BASE).schedule.parameters.items()
    ]
    assert cli.main(["schedule", *BASE, f"schedule.role_arn={sched_role}"]) == 0
    assert "updated" in capsys.readouterr().out
    # Values the service would refuse never reach the schedule.
    bad = [*BASE, f"schedule.role_arn={sched_role}", "+schedule.parameters.HydraOverrides=x=1"]
    assert cli.main(["schedule", *bad]) == 2
    assert "HydraOverrides" in capsys.readouterr().err
    assert cli.main(["schedule", "--remove", *BASE]) == 0
    assert "removed" in capsys.readouterr().out
    assert scheduler.list_schedules()["Schedules"] == []


def test_definition_diff() -> None:
    a = json.dumps({"Version": "2020-12-01", "Steps": [{"Name": "Prepare"}]})
    b = json.dumps({"Steps": [{"Name": "Prepare"}], "Version": "2020-12-01"})
    assert aws.definition_diff(a, b) == "no changes"
    diff = aws.definition_diff(a, json.dumps({"Version": "2020-12-01", "Steps": []}))
    assert '-      "Name": "Prepare"' in diff


def _image_tags() -> set[str]:
    ecr = boto3.client("ecr", region_name=REGION)
    images = ecr.describe_images(repositoryName="claim-frequency")["imageDetails"]
    return {tag for image in images for tag in image.get("imageTags", [])}


def test_upsert_keeps_the_pipeline_image_and_its_channel(deployed: dict[str, str]) -> None:
    """Neither ECR's lifecycle policy nor the config bucket's expiry removes what it runs."""
    # The image gets a tag that the repository's lifecycle policy never expires.
    assert _image_tags() == {"1", "deployed-1"}
    assert "tagged deployed-1" in deployed["out"]
    # The channel lies under the pipeline's own prefix, outside the expiring one.
    sm = boto3.client("sagemaker", region_name=REGION)
    definition = json.loads(
        sm.describe_pipeline(PipelineName="claim-frequency")["PipelineDefinition"]
    )
    uri = inputs(steps(definition)["Prepare"])["config"]["S3Uri"]
    assert uri.startswith(
        "s3://claim-frequency-data/claim-frequency/pipelines/claim-frequency/config/"
    )
    # A second upsert with the same image adds nothing.
    assert cli.main(["upsert", *BASE]) == 0
    assert _image_tags() == {"1", "deployed-1"}


def test_start_and_schedule_refuse_a_pipeline_whose_image_or_channel_is_gone(
    deployed: dict[str, str], capsys: pytest.CaptureFixture
) -> None:
    sched = [*BASE, "schedule.role_arn=arn:aws:iam::123456789012:role/scheduler"]
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.batch_delete_image(
        repositoryName="claim-frequency", imageIds=[{"imageTag": "1"}, {"imageTag": "deployed-1"}]
    )
    for command in (["start", *BASE], ["schedule", *sched]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert "claim-frequency:1 is no longer in ECR" in err and "make push-image" in err
    ecr.put_image(repositoryName="claim-frequency", imageManifest=MANIFEST, imageTag="1")
    s3 = boto3.client("s3", region_name=REGION)
    for item in s3.list_objects_v2(Bucket="claim-frequency-data")["Contents"]:
        s3.delete_object(Bucket="claim-frequency-data", Key=item["Key"])
    for command in (["start", *BASE], ["schedule", *sched]):
        assert cli.main(command) == 2
        assert "config channel" in capsys.readouterr().err
    assert _executions() == []
    scheduler = boto3.client("scheduler", region_name=REGION)
    assert scheduler.list_schedules()["Schedules"] == []


needs_mounts = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare for a small or read-only filesystem",
)


def _definition_on(mount_options: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, str]:
    """``definition --out`` into a fresh tmpfs mounted with ``mount_options``; what it left."""
    folder = tmp_path / "mnt"
    folder.mkdir()
    command = shlex.join(
        [sys.executable, "-m", "pipelines.sagemaker.cli", "definition",
         "--out", str(folder / "definition.json"), *BASE]
    )  # fmt: skip
    script = (
        f"mount -t tmpfs -o {mount_options} tmpfs {folder} && "
        f"{{ {command}; echo $? > {tmp_path}/rc; ls -A {folder} > {tmp_path}/left; }}"
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert (tmp_path / "rc").read_text().strip() == "2", result.stderr
    return result, (tmp_path / "left").read_text()


@needs_mounts
def test_definition_on_a_full_disk_names_it_and_leaves_no_truncated_file(tmp_path: Path) -> None:
    result, left = _definition_on("size=8k", tmp_path)
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "disk is full" in err[0]
    assert left == ""


@needs_mounts
def test_definition_into_a_read_only_folder_is_one_line(tmp_path: Path) -> None:
    result, left = _definition_on("ro", tmp_path)
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and "Read-only file system" in err[0], result.stderr
    assert left == ""


def test_definition_into_a_path_under_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "a-file" / "definition.json"
    assert cli.main(["definition", "--out", str(out), *BASE]) == 2
    err = capsys.readouterr().err
    assert "Cannot write the outputs to" in err and "Traceback" not in err
