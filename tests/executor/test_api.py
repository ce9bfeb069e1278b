"""The public API: a definition, or one job's Create* request, run through ``executor``."""

from __future__ import annotations

import copy
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

import executor
from executor import (
    ExecutorError,
    JobRun,
    LocalImage,
    LocalImages,
    Options,
    ParameterError,
    RequestRefused,
    run_definition,
    run_job,
    warm_image,
)

from . import support

HERE = Path(__file__).resolve().parent


@pytest.fixture
def numbers(tmp_path: Path) -> Path:
    """A local folder holding the input numbers, to upload into the store."""
    folder = tmp_path / "numbers"
    folder.mkdir()
    (folder / "numbers.txt").write_text("1 2 3\n")
    return folder


def options(tmp_path: Path, numbers: Path, **extra: object) -> Options:
    uploads = {f"s3://{support.BUCKET}/input/numbers": numbers}
    return Options(outputs=tmp_path / "out", mounts="plain", uploads=uploads, **extra)


def store_file(tmp_path: Path, uri: str) -> Path:
    return tmp_path / "out" / "s3" / uri.removeprefix("s3://")


def test_run_definition_returns_the_status_and_the_record(tmp_path: Path, numbers: Path) -> None:
    progress = io.StringIO()
    result = run_definition(
        json.dumps(support.definition()),
        {"X": "3"},
        support.tiny_images(),
        options(tmp_path, numbers, progress=progress),
        name="tiny",
    )
    assert result.status == "Succeeded"
    assert result.record["PipelineExecutionStatus"] == "Succeeded"
    assert result.record["PipelineArn"].endswith(":pipeline/tiny")
    assert json.loads(result.record_path.read_text()) == json.loads(json.dumps(result.record))
    assert result.folder == (tmp_path / "out" / result.execution_id).resolve()
    # The uploaded numbers were the input: loss = (3 - 3)^2 + 1 + 2 + 3.
    fit = result.record["Local"]["Steps"]["Fit"]["Properties"]
    assert fit["FinalMetricDataList"][0]["Value"] == pytest.approx(6.0)
    lines = result.output_lines(highlight=("metrics.json",))
    assert any(line.strip().endswith("/evaluation/metrics.json") for line in lines), lines
    text = progress.getvalue()
    assert f"Execution {result.execution_id} (plain, local processes, S3: folder)" in text
    assert "Register (RegisterModel): Succeeded" in text


def test_run_definition_checks_parameters_before_writing(tmp_path: Path, numbers: Path) -> None:
    with pytest.raises(ParameterError, match="not one of its allowed values"):
        run_definition(support.definition(), {"Flavour": "sweet"}, None, options(tmp_path, numbers))
    with pytest.raises(executor.DefinitionError, match="no 'Steps' list"):
        run_definition({"Version": "2020-12-01"}, options=options(tmp_path, numbers))
    with pytest.raises(ExecutorError, match="store 'gcs'"):
        run_definition(support.definition(), options=Options(outputs=tmp_path / "out", store="gcs"))
    assert not (tmp_path / "out").exists()


def test_run_job_trains_as_the_service_and_describes_the_job(tmp_path: Path, numbers: Path) -> None:
    request = support.training_request("tiny-train-1", x="5")
    sent = copy.deepcopy(request)
    run = run_job("CreateTrainingJob", request, support.tiny_images(), options(tmp_path, numbers))
    assert request == sent  # the caller's request is left as it was
    assert isinstance(run, JobRun) and run.status == "Completed"
    describe = run.describe
    assert describe["TrainingJobName"] == "tiny-train-1"
    assert describe["TrainingJobArn"] == (
        "arn:aws:sagemaker:us-east-1:000000000000:training-job/tiny-train-1"
    )
    assert describe["TrainingJobStatus"] == "Completed" and "_local" not in describe
    # Metric regexes over the log: loss = (5 - 3)^2 + 1 + 2 + 3.
    assert describe["FinalMetricDataList"][0]["MetricName"] == "loss"
    assert describe["FinalMetricDataList"][0]["Value"] == pytest.approx(10.0)
    artifact = describe["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact == f"s3://{support.BUCKET}/jobs/model/tiny-train-1/output/model.tar.gz"
    with tarfile.open(store_file(tmp_path, artifact)) as tar:
        assert json.load(tar.extractfile("model.json"))["x"] == 5.0
    # The same /opt/ml tree as a pipeline's job: string hyperparameters, `train`, its log.
    hyper = json.loads((run.folder / "opt_ml/input/config/hyperparameters.json").read_text())
    assert hyper == {"x": "5"}
    log = Path(run.local["Log"]).read_text()
    assert "tiny_image.py train" in log.splitlines()[0]
    assert run.local["LostFiles"] == ["stray.txt"]
    assert (
        json.loads((run.folder / "request.json").read_text())["TrainingJobName"] == "tiny-train-1"
    )


def test_run_job_processes_inputs_into_outputs(tmp_path: Path, numbers: Path) -> None:
    step = support.processing(
        "Copy",
        ["copy", "/opt/ml/processing/input/data", "/opt/ml/processing/output/data"],
        {"data": f"s3://{support.BUCKET}/input/numbers/"},
        ["data"],
    )
    request = {**step["Arguments"], "ProcessingJobName": "tiny-copy-1"}
    request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] = (
        f"s3://{support.BUCKET}/jobs/copy"
    )
    request["Environment"] = {"GREETING": "hi"}
    run = run_job("CreateProcessingJob", request, support.tiny_images(), options(tmp_path, numbers))
    assert run.status == "Completed" == run.describe["ProcessingJobStatus"]
    assert run.describe["ProcessingJobArn"].endswith(":processing-job/tiny-copy-1")
    copied = store_file(tmp_path, f"s3://{support.BUCKET}/jobs/copy/numbers.txt")
    assert copied.read_text() == "1 2 3\n"
    assert "greeting=hi" in Path(run.local["Log"]).read_text()


def test_run_job_refuses_what_the_service_refuses_before_writing(
    tmp_path: Path, numbers: Path
) -> None:
    images, opts = support.tiny_images(), options(tmp_path, numbers)
    with pytest.raises(RequestRefused, match=r"HyperParameters\['x'\] is 300 characters"):
        run_job("CreateTrainingJob", support.training_request("t-1", x="9" * 300), images, opts)
    missing = support.training_request("t-2")
    del missing["RoleArn"]
    with pytest.raises(RequestRefused, match="RoleArn"):
        run_job("CreateTrainingJob", missing, images, opts)
    bad_name = support.training_request("not_a_valid_name")
    with pytest.raises(RequestRefused, match="TrainingJobName"):
        run_job("CreateTrainingJob", bad_name, images, opts)
    with pytest.raises(ExecutorError, match="CreateTransformJob"):
        run_job("CreateTransformJob", {}, images, opts)
    assert not (tmp_path / "out").exists()


def test_a_failed_job_is_described_not_raised(tmp_path: Path, numbers: Path) -> None:
    request = support.training_request("tiny-train-2", fail="yes")
    run = run_job("CreateTrainingJob", request, support.tiny_images(), options(tmp_path, numbers))
    assert run.status == "Failed"
    assert run.describe["FailureReason"] == "AlgorithmError: bad hyperparameter fail=yes"


def tuning_request(name: str, **static: str) -> dict:
    definition = support.training_request("unused")
    del definition["TrainingJobName"], definition["HyperParameters"]
    definition["StaticHyperParameters"] = static
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Grid",
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "loss"},
            "ResourceLimits": {"MaxParallelTrainingJobs": 2},
            "ParameterRanges": {
                "CategoricalParameterRanges": [{"Name": "x", "Values": ["1", "4"]}]
            },
        },
        "TrainingJobDefinition": definition,
    }


def test_run_job_tunes_and_ranks_the_training_jobs(tmp_path: Path, numbers: Path) -> None:
    run = run_job(
        "CreateHyperParameterTuningJob",
        tuning_request("tiny-tune-1"),
        support.tiny_images(),
        options(tmp_path, numbers),
    )
    assert run.status == "Completed"
    describe = run.describe
    assert describe["HyperParameterTuningJobArn"].endswith(
        ":hyper-parameter-tuning-job/tiny-tune-1"
    )
    summaries = describe["TrainingJobSummaries"]
    # x=4: (4 - 3)^2 + 6 = 7 beats x=1: (1 - 3)^2 + 6 = 10.
    assert [s["TunedHyperParameters"]["x"] for s in summaries] == ["4", "1"]
    assert describe["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == 7
    assert set(run.local["TrainingJobs"]) == {s["TrainingJobName"] for s in summaries}
    for job in run.local["TrainingJobs"].values():
        assert "loss=" in Path(job["log"]).read_text()


def test_a_tuning_job_reports_its_completion_criterion_and_what_it_does_not_emulate(
    tmp_path: Path, numbers: Path
) -> None:
    request = tuning_request("tiny-tune-3")
    config = request["HyperParameterTuningJobConfig"]
    config["ResourceLimits"]["MaxParallelTrainingJobs"] = 1
    config["TuningJobCompletionCriteria"] = {"TargetObjectiveMetricValue": 100.0}
    config["TrainingJobEarlyStoppingType"] = "Auto"
    run = run_job(
        "CreateHyperParameterTuningJob", request, support.tiny_images(), options(tmp_path, numbers)
    )
    assert run.status == "Completed" == run.describe["HyperParameterTuningJobStatus"]
    assert len(run.describe["TrainingJobSummaries"]) == 1  # x=1 (loss 10) reached the target
    assert run.describe["TuningJobCompletionDetails"] == {
        "NumberOfTrainingJobsObjectiveNotImproving": 0
    }
    assert "TargetObjectiveMetricValue 100.0 reached" in run.local["CompletionCriterion"]
    assert set(run.local["NotEmulated"]) == {"TrainingJobEarlyStoppingType"}
    assert len(run.local["TrainingJobs"]) == 1


def test_a_tuning_job_whose_training_jobs_all_fail_is_described(
    tmp_path: Path, numbers: Path
) -> None:
    run = run_job(
        "CreateHyperParameterTuningJob",
        tuning_request("tiny-tune-2", fail="yes"),
        support.tiny_images(),
        options(tmp_path, numbers),
    )
    assert run.status == "Failed" == run.describe["HyperParameterTuningJobStatus"]
    assert run.describe["FailureReason"].startswith("All 2 training jobs failed.")
    assert run.describe["TrainingJobStatusCounters"] == {"Completed": 0, "Failed": 2}


def test_a_warm_image_forks_the_jobs_of_its_command(tmp_path: Path, numbers: Path) -> None:
    """The caller names the modules and the image's command; the executor forks the jobs."""
    path = support.python_path(HERE)
    images = LocalImages(
        {support.IMAGE: LocalImage(("python", "-m", "tiny_image"), {"PYTHONPATH": path}, HERE)}
    )
    env = {**os.environ, "PYTHONPATH": path}
    with warm_image(["tiny_image"], cwd=HERE, env=env, module="tiny_image") as warm:
        if warm is None:
            pytest.skip("a warm image process forks its jobs on Linux only")
        request = support.training_request("tiny-train-3", x="3")
        run = run_job("CreateTrainingJob", request, images, options(tmp_path, numbers, warm=warm))
        server = warm.process.pid
    assert run.status == "Completed"
    log = Path(run.local["Log"]).read_text()
    assert "warm.py client" in log.splitlines()[0]
    ids = dict(item.split("=") for item in next(x for x in log.splitlines() if "pid=" in x).split())
    assert int(ids["grandparent"]) == server
    assert warm.process.poll() is not None  # stopped on leaving
