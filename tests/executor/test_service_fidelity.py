"""Where the service is stricter than botocore's model, on definitions the SageMaker SDK built.

The definitions come from ``sdk/`` (``sdk_definitions.py`` builds them with the SDK);
where the SDK cannot express a shape the service refuses, a test mutates one.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest

from executor import (
    DefinitionError,
    Options,
    RequestRefused,
    cache,
    check_request,
    retry,
    run_definition,
    run_job,
    service_rules,
    table,
)
from executor.engine import Registry, runs_as
from executor.errors import JobInternalError, ServiceFault, Throttled
from executor.record import Record

from . import support

NUMBERS = f"s3://{support.BUCKET}/input/numbers"


@pytest.fixture
def numbers(tmp_path: Path) -> Path:
    folder = tmp_path / "numbers"
    folder.mkdir()
    (folder / "numbers.txt").write_text("1 2 3\n")
    return folder


def options(tmp_path: Path, numbers: Path, **extra: Any) -> Options:
    return Options(outputs=tmp_path / "out", mounts="plain", uploads={NUMBERS: numbers}, **extra)


def run(
    tmp_path: Path,
    numbers: Path,
    spec: dict[str, Any],
    params: dict[str, str] | None = None,
    **extra: Any,
) -> Any:
    return run_definition(
        spec, params or {}, support.tiny_images(), options(tmp_path, numbers, **extra), name="tiny"
    )


def steps(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["StepName"]: s for s in record["PipelineExecutionSteps"]}


def step(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """A step of ``spec`` by name, those in condition branches included."""
    return next(s for s in service_rules.job_steps(spec) if s["Name"] == name)


# ------------------------------------------------------------------------------ 1. Not


def test_not_negates_the_condition_the_sdk_writes(tmp_path: Path, numbers: Path) -> None:
    spec = support.sdk_definition("gate_not")
    assert spec["Steps"][0]["Arguments"]["Conditions"][0]["Type"] == "Not"
    plain = run(tmp_path, numbers, spec)
    assert plain.status == "Succeeded"
    assert steps(plain.record)["Gate"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    salty = run(tmp_path, numbers, spec, {"Flavour": "salty"})
    assert salty.status == "Failed" and steps(salty.record)["Salty"]["FailureReason"] == "salty"


def test_not_with_expression_and_and_are_refused_naming_the_step(
    tmp_path: Path, numbers: Path
) -> None:
    """The service refuses ``Expression`` (sagemaker-python-sdk #2746) and has no ``And``."""
    spec = support.sdk_definition("gate_not")
    negated = spec["Steps"][0]["Arguments"]["Conditions"][0]
    old = copy.deepcopy(spec)
    old["Steps"][0]["Arguments"]["Conditions"][0] = {
        "Type": "Not",
        "Expression": negated["Condition"],
    }
    with pytest.raises(DefinitionError, match=r"Step 'Gate'.*refuses 'Expression'"):
        run(tmp_path, numbers, old)
    both = copy.deepcopy(spec)
    both["Steps"][0]["Arguments"]["Conditions"] = [
        {"Type": "And", "Conditions": [negated, negated]}
    ]
    with pytest.raises(DefinitionError, match=r"Step 'Gate': condition type 'And' is not one"):
        run(tmp_path, numbers, both)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------- 2. comparisons


def test_a_number_against_text_fails_the_step(tmp_path: Path, numbers: Path) -> None:
    spec = support.sdk_definition("gate_text")
    result = run(tmp_path, numbers, spec)
    assert result.status == "Failed"
    reason = steps(result.record)["Gate"]["FailureReason"]
    assert "Condition of type [LessThanOrEqualTo] not supported between [0.54]" in reason
    assert "[abc] of type [str]" in reason
    # A string that reads as a number compares as one.
    number = run(tmp_path, numbers, spec, {"Label": "0.6"})
    assert steps(number.record)["Gate"]["Metadata"] == {"Condition": {"Outcome": "True"}}


# ------------------------------------------------------------------------ 3. properties


def test_get_reads_the_describe_responses(tmp_path: Path, numbers: Path) -> None:
    result = run(tmp_path, numbers, support.sdk_definition("pipeline"))
    assert result.status == "Succeeded", result.record.get("FailureReason")
    local = result.record["Local"]["Steps"]
    env = local["Report"]["Request"]["Environment"]
    assert env["MODEL_VERSION"] == "1" and env["MODEL_STATUS"] == "Completed"
    assert env["TRAINING_CREATED"] == local["Fit"]["Properties"]["CreationTime"]
    assert int(env["TRAINING_SECONDS"]) >= 1 and int(env["BILLABLE_SECONDS"]) >= 1
    # The properties are the Describe* responses' fields: no request-only field.
    assert "Tags" not in local["Fit"]["Properties"]
    assert local["Register"]["Properties"]["ModelPackageVersion"] == 1


@pytest.mark.parametrize(
    ("path", "field"),
    [("Steps.Fit.Tags", "Tags"), ("Steps.Register.ClientToken", "ClientToken")],
)
def test_get_of_a_request_only_field_is_refused(
    tmp_path: Path, numbers: Path, path: str, field: str
) -> None:
    spec = support.sdk_definition("pipeline")
    step(spec, "Report")["Arguments"]["Environment"]["MODEL_STATUS"] = {"Get": path}
    with pytest.raises(
        DefinitionError, match=rf"Step 'Report' reads .*'{field}' is not a property"
    ):
        run(tmp_path, numbers, spec)
    assert not (tmp_path / "out").exists()


def test_get_of_a_nested_field_follows_the_shape(tmp_path: Path, numbers: Path) -> None:
    spec = support.sdk_definition("pipeline")
    env = step(spec, "Report")["Arguments"]["Environment"]
    env["MODEL_STATUS"] = {"Get": "Steps.Fit.ModelArtifacts.S3ModelArtifact"}
    with pytest.raises(DefinitionError, match=r"'S3ModelArtifact' is not a field of ModelArtif"):
        run(tmp_path, numbers, spec)


def test_run_job_describes_with_the_response_fields(tmp_path: Path, numbers: Path) -> None:
    request = support.training_request("tiny-train-tags", x="4")
    request["Tags"] = [{"Key": "team", "Value": "pricing"}]
    job = run_job("CreateTrainingJob", request, support.tiny_images(), options(tmp_path, numbers))
    assert job.status == "Completed"
    assert "Tags" not in job.describe
    assert job.describe["TrainingTimeInSeconds"] >= 1 and job.describe["CreationTime"]


# ---------------------------------------------------------------------- 4. empty inputs


def test_an_empty_processing_input_fails_the_job_before_it_starts(
    tmp_path: Path, numbers: Path
) -> None:
    empty = f"s3://{support.BUCKET}/input/empty/"
    result = run(tmp_path, numbers, support.sdk_definition("pipeline"), {"InputDataUri": empty})
    assert result.status == "Failed"
    copy_step = steps(result.record)["Copy"]
    assert copy_step["FailureReason"].startswith(
        f'ClientError: No S3 objects found under S3 URL "{empty}" given in input data source.'
    )
    assert result.record["Local"]["Steps"]["Copy"]["Log"] is None  # no job ran
    assert set(steps(result.record)) == {"Copy"}


def test_an_empty_training_channel_is_refused(tmp_path: Path, numbers: Path) -> None:
    request = support.training_request("tiny-train-empty")
    channel = request["InputDataConfig"][0]["DataSource"]["S3DataSource"]
    channel["S3Uri"] = f"s3://{support.BUCKET}/input/nothing/"
    with pytest.raises(RequestRefused, match="No S3 objects found under S3 URL"):
        run_job("CreateTrainingJob", request, support.tiny_images(), options(tmp_path, numbers))
    assert not (tmp_path / "out" / "jobs" / "tiny-train-empty").exists()


# -------------------------------------------------------------------------- 5. caching


def test_a_second_tuning_execution_hits_the_cache(tmp_path: Path, numbers: Path) -> None:
    """The key counts the documented children of TrainingJobDefinition only: its
    OutputDataConfig holds the execution id and would never match."""
    spec = support.sdk_definition("tuning")
    first = run(tmp_path, numbers, spec)
    assert first.status == "Succeeded", first.record.get("FailureReason")
    second = run(tmp_path, numbers, spec)
    hit = steps(second.record)["Tune"].get("CacheHitResult")
    assert hit == {"SourcePipelineExecutionArn": first.record["PipelineExecutionArn"]}

    undocumented = copy.deepcopy(spec)
    definition = step(undocumented, "Tune")["Arguments"]["TrainingJobDefinition"]
    definition["StoppingCondition"]["MaxRuntimeInSeconds"] = 900
    definition["ResourceConfig"]["VolumeSizeInGB"] = 2
    third = run(tmp_path, numbers, undocumented)
    assert steps(third.record)["Tune"].get("CacheHitResult") is not None

    # StaticHyperParameters is documented: another value runs the tuning job again.
    fourth = run(tmp_path, numbers, spec, {"Flavour": "salty"})
    assert steps(fourth.record)["Tune"]["StepStatus"] == "Succeeded"
    assert steps(fourth.record)["Tune"].get("CacheHitResult") is None


def test_the_tuning_key_counts_the_documented_fields() -> None:
    request = {
        "HyperParameterTuningJobConfig": {"Strategy": "Random"},
        "TrainingJobDefinition": {
            "AlgorithmSpecification": {"TrainingImage": "i"},
            "OutputDataConfig": {"S3OutputPath": "s3://b/runs/abc/model"},
            "StaticHyperParameters": {"a": "1"},
        },
    }
    other = copy.deepcopy(request)
    other["TrainingJobDefinition"]["OutputDataConfig"]["S3OutputPath"] = "s3://b/runs/def/model"
    assert cache.key("p", "T", "Tuning", request) == cache.key("p", "T", "Tuning", other)
    other["TrainingJobDefinition"]["StaticHyperParameters"]["a"] = "2"
    assert cache.key("p", "T", "Tuning", request) != cache.key("p", "T", "Tuning", other)
    other["TrainingJobDefinition"]["StaticHyperParameters"]["a"] = "1"
    other["HyperParameterTuningJobConfig"]["Strategy"] = "Bayesian"
    assert cache.key("p", "T", "Tuning", request) != cache.key("p", "T", "Tuning", other)


# ------------------------------------------------------------------------ 6. retries


def retry_policies(spec: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return step(spec, name)["RetryPolicies"]


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("Copy", {"ExpireAfterMin": 10}, "gives both MaxAttempts and ExpireAfterMin"),
        ("Copy", {"MaxAttempts": 21}, "MaxAttempts=21 is over its maximum of 20"),
        ("Copy", {"IntervalSeconds": 43201}, "IntervalSeconds=43201 is over its maximum"),
        ("Copy", {"BackoffRate": -1}, "BackoffRate=-1 must be a non-negative number"),
        ("Copy", {"ExceptionType": ["Step.TIMEOUT"]}, "'Step.TIMEOUT' is not one of"),
        ("Copy", {"ExceptionType": []}, "ExceptionType must be a non-empty list"),
        (
            "Register",
            {"ExceptionType": ["SageMaker.CAPACITY_ERROR"]},
            "SageMaker.CAPACITY_ERROR applies to job steps",
        ),
    ],
)
def test_retry_policies_the_service_refuses(
    tmp_path: Path, numbers: Path, name: str, change: dict[str, Any], message: str
) -> None:
    spec = support.sdk_definition("pipeline")
    retry_policies(spec, name)[0].update(change)
    with pytest.raises(DefinitionError, match=rf"Step '{name}'.*{message}"):
        run(tmp_path, numbers, spec)
    assert not (tmp_path / "out").exists()


def test_retry_policies_only_on_steps_that_take_them(tmp_path: Path, numbers: Path) -> None:
    spec = support.sdk_definition("pipeline")
    step(spec, "Gate")["RetryPolicies"] = copy.deepcopy(retry_policies(spec, "Register"))
    with pytest.raises(DefinitionError, match=r"Step 'Gate' \(Condition\) has RetryPolicies"):
        run(tmp_path, numbers, spec)


def test_retry_policy_defaults_and_limits() -> None:
    (policy,) = retry.policies("S", "Training", [{"ExceptionType": ["Step.THROTTLING"]}])
    assert (policy.interval, policy.backoff, policy.max_attempts) == (1.0, 2.0, 5)
    assert [policy.delay(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert policy.allows(5, 0) and not policy.allows(6, 0)
    (never,) = retry.policies(
        "S", "Training", [{"ExceptionType": ["Step.THROTTLING"], "MaxAttempts": 0}]
    )
    assert not never.allows(1, 0)
    (timed,) = retry.policies(
        "S", "Training", [{"ExceptionType": ["Step.THROTTLING"], "ExpireAfterMin": 1}]
    )
    assert timed.allows(50, 59.0) and not timed.allows(1, 60.0)
    # A tuning job retries its own jobs: the step does not retry JOB_INTERNAL_ERROR.
    assert "SageMaker.JOB_INTERNAL_ERROR" not in retry.retried_types("Tuning")
    assert "SageMaker.JOB_INTERNAL_ERROR" in retry.retried_types("Processing")


def flaky_processing(e: Any, monkeypatch: pytest.MonkeyPatch, failures: int) -> list[str]:
    calls: list[str] = []
    original = e.runner.processing

    def flaky(name: str, request: dict) -> dict:
        calls.append(name)
        if len(calls) <= failures:
            raise JobInternalError("staging failed")
        return original(name, request)

    monkeypatch.setattr(e.runner, "processing", flaky)
    return calls


def test_a_job_internal_error_is_retried_by_its_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = support.execution(tmp_path, support.sdk_definition("pipeline"))
    e.retry_wait = lambda seconds: None
    calls = flaky_processing(e, monkeypatch, failures=2)
    assert e.run() == "Succeeded"
    copy_local = e.record.data["Local"]["Steps"]["Copy"]
    assert len(calls) >= 3
    assert [r["WaitSeconds"] for r in copy_local["Retries"]] == [1.0, 2.0]
    assert {r["ExceptionType"] for r in copy_local["Retries"]} == {"SageMaker.JOB_INTERNAL_ERROR"}
    assert copy_local["RetryTypesWithoutLocalEquivalent"] == [
        "SageMaker.CAPACITY_ERROR",
        "Step.SERVICE_FAULT",
        "Step.THROTTLING",
    ]
    emulated = e.record.data["Local"]["RetryExceptionTypes"]
    assert list(emulated["Emulated"]) == ["SageMaker.JOB_INTERNAL_ERROR"]
    assert "SageMaker.RESOURCE_LIMIT" in emulated["WithoutLocalEquivalent"]


def test_max_attempts_counts_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = support.sdk_definition("pipeline")
    retry_policies(spec, "Copy")[1]["MaxAttempts"] = 1
    e = support.execution(tmp_path, spec)
    e.retry_wait = lambda seconds: None
    calls = flaky_processing(e, monkeypatch, failures=5)
    assert e.run() == "Failed"
    assert len(calls) == 2  # the first attempt and one retry
    copy_step = next(s for s in e.record.steps() if s["StepName"] == "Copy")
    assert copy_step["AttemptCount"] == 2 and "staging failed" in copy_step["FailureReason"]


class _Client:
    """A SageMaker client whose CreateModelPackage fails first with ``error``."""

    def __init__(self, code: str, status: int) -> None:
        self.code, self.status, self.calls = code, status, 0

    def create_model_package(self, **request: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        self.calls += 1
        response = {
            "Error": {"Code": self.code},
            "ResponseMetadata": {"HTTPStatusCode": self.status},
        }
        raise ClientError(response, "CreateModelPackage")


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [("InternalFailure", 500, ServiceFault), ("ThrottlingException", 400, Throttled)],
)
def test_service_calls_fail_as_their_exception_types(
    tmp_path: Path, code: str, status: int, error: type
) -> None:
    registry = Registry(tmp_path, _Client(code, status))
    with pytest.raises(error):
        registry.register({"ModelPackageGroupName": "tiny"}, "us-east-1")


# -------------------------------------------------------------------------- 7. names


def test_a_step_name_the_service_refuses(tmp_path: Path, numbers: Path) -> None:
    with pytest.raises(DefinitionError, match=r"Step name 'Too high!' is not valid"):
        run(tmp_path, numbers, support.sdk_definition("step_name"))
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 8. instance storage


def resolved(spec: dict[str, Any], name: str, values: dict[str, str]) -> dict[str, Any]:
    """A step's request resolved with start values, as a pre-flight would resolve it."""
    defaults = {p["Name"]: p.get("DefaultValue") for p in spec["Parameters"]}
    return service_rules.resolve(step(spec, name)["Arguments"], {**defaults, **values})


@pytest.mark.parametrize("kind", ["ml.m5d.xlarge", "ml.r5d.large", "ml.g4dn.xlarge"])
def test_a_volume_key_on_instance_storage_is_refused(kind: str) -> None:
    spec = support.sdk_definition("pipeline")
    copy_request = resolved(spec, "Copy", {"ProcessingInstanceType": kind})
    copy_request["ProcessingJobName"] = "copy"
    fit_request = resolved(spec, "Fit", {"TrainingInstanceType": kind})
    fit_request["TrainingJobName"] = "fit"
    for operation, request, field in (
        ("CreateProcessingJob", copy_request, "ProcessingResources.ClusterConfig"),
        ("Training", fit_request, "ResourceConfig"),
    ):
        expected = f"{field}.InstanceType={kind!r} has local NVMe instance storage"
        assert any(p.startswith(expected) for p in check_request(operation, request))
        # The service rules alone, as a start-time pre-flight asks them.
        (problem,) = service_rules.request_problems(operation, request)
        assert problem.startswith(expected) and f"refuses {field}.VolumeKmsKeyId" in problem
    # Without the key, or on a type without instance storage, nothing is refused.
    del copy_request["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"]
    assert not service_rules.request_problems("Processing", copy_request)
    assert not check_request("Training", resolved(spec, "Fit", {}) | {"TrainingJobName": "f"})


def test_a_volume_key_on_instance_storage_in_a_tuning_job() -> None:
    spec = support.sdk_definition("tuning")
    request = resolved(spec, "Tune", {})
    request["HyperParameterTuningJobName"] = "tune"
    resources = request["TrainingJobDefinition"]["ResourceConfig"]
    resources.update(InstanceType="ml.m5d.xlarge", VolumeKmsKeyId="alias/jobs")
    problems = check_request("CreateHyperParameterTuningJob", request)
    assert any(
        "TrainingJobDefinition.ResourceConfig.InstanceType='ml.m5d.xlarge' has local NVMe" in p
        for p in problems
    )


def test_a_step_with_a_volume_key_on_instance_storage_fails_before_its_job(
    tmp_path: Path, numbers: Path
) -> None:
    spec = support.sdk_definition("pipeline")
    result = run(tmp_path, numbers, spec, {"ProcessingInstanceType": "ml.r5d.large"})
    assert result.status == "Failed"
    reason = steps(result.record)["Copy"]["FailureReason"]
    assert "InstanceType='ml.r5d.large' has local NVMe instance storage" in reason
    assert not list((result.folder / "jobs").glob("*"))


# ------------------------------------------------------------- 9. what a success proves


def test_the_step_table_says_what_ran_each_job(tmp_path: Path, numbers: Path) -> None:
    progress = io.StringIO()
    result = run(tmp_path, numbers, support.sdk_definition("pipeline"), progress=progress)
    assert result.status == "Succeeded"
    text = progress.getvalue()
    assert "  Fit (Training, process): Succeeded" in text
    assert "  Register (RegisterModel): Succeeded" in text
    final = text[text.rindex("Step ") :]
    assert "Copy (process)" in final and "Report (process)" in final
    assert table.PROCESS_NOTE in final
    assert result.record["Local"]["Steps"]["Fit"]["RunsAs"] == "process"


def test_a_job_in_a_container_engine_names_its_image(tmp_path: Path) -> None:
    image = "000000000000.dkr.ecr.us-east-1.amazonaws.com/claim-frequency:abc"
    assert runs_as("podman", image) == "image claim-frequency:abc"
    assert runs_as(None, image) == "process"
    record = Record(tmp_path, {})
    record.start("Train", "Training")
    record.update("Train", {"RunsAs": runs_as("docker", image)}, StepStatus="Succeeded")
    lines = table.render(record)
    assert lines[1].startswith("Train (image claim-frequency:abc)  Training  Succeeded")
    assert table.PROCESS_NOTE not in lines
