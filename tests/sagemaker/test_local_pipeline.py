"""``make local-pipeline`` end to end: the project's own definition, built as upsert builds it,
executed here by the executor on small synthetic data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from executor.run import main as executor_cli
from pipelines.sagemaker import local_pipeline
from steps.sources.simulate import generate

pytestmark = pytest.mark.slow
SMALL = ["data.n_rows=3000"]
SMALL_MODEL = ["model.max_iter=30", "model.max_leaf_nodes=8", "model.min_samples_leaf=100"]
BUCKET = local_pipeline.PLACEHOLDERS["bucket"]


def data_uri(outputs: Path, name: str, bad: bool = False) -> str:
    """A small data set put into the local store, as a user puts their own data there."""
    frame = generate(3000, 3)
    if bad:
        frame.loc[:9, "Exposure"] = -1.0
    path = outputs / "s3" / BUCKET / "claim-frequency/input" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return f"s3://{BUCKET}/claim-frequency/input/{name}"


def execute(
    outputs: Path, capsys: pytest.CaptureFixture, *args: str
) -> tuple[int, dict[str, Any], str]:
    code = local_pipeline.main(["--outputs", str(outputs), *args])
    out = capsys.readouterr()
    records = sorted(outputs.glob("*/execution.json"), key=lambda p: p.stat().st_mtime)
    record = json.loads(records[-1].read_text()) if records else {}
    return code, record, out.out + out.err


def statuses(record: dict[str, Any]) -> dict[str, str]:
    return {s["StepName"]: s["StepStatus"] for s in record["PipelineExecutionSteps"]}


def store_path(outputs: Path, uri: str) -> Path:
    return outputs / "s3" / uri.removeprefix("s3://")


def test_train_variant_end_to_end_then_cached(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outputs = tmp_path / "pipelines"
    params = ["pipeline.cache_prepare=true"]
    code, record, out = execute(outputs, capsys, *params, *SMALL, *SMALL_MODEL)
    assert code == 0, out
    assert statuses(record) == dict.fromkeys(
        ["Register", "QualityGate", "Evaluate", "Train", "Prepare"], "Succeeded"
    )
    steps = record["Local"]["Steps"]
    artifact = steps["Train"]["Properties"]["ModelArtifacts"]["S3ModelArtifacts"]
    assert store_path(outputs, artifact).is_file()
    request = steps["Register"]["Request"]
    assert request["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == artifact
    quality = request["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    assert "regression_metrics" in json.loads(store_path(outputs, quality).read_text())
    evaluation = steps["Evaluate"]["Properties"]["ProcessingOutputConfig"]["Outputs"][0]
    folder = store_path(outputs, evaluation["S3Output"]["S3Uri"])
    assert json.loads((folder / "metrics.json").read_text())["test"]["poisson_deviance"] > 0
    assert (folder / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "calibration.png" in out and "Execution Succeeded" in out

    # A second execution with caching on reuses Prepare; its gate refuses the model.
    code, again, out = execute(
        outputs, capsys, "--param", "QualityThreshold=0.0001", *params, *SMALL, *SMALL_MODEL
    )
    assert code == 1, out
    prepare = next(s for s in again["PipelineExecutionSteps"] if s["StepName"] == "Prepare")
    assert prepare["CacheHitResult"]["SourcePipelineExecutionArn"] == record["PipelineExecutionArn"]
    assert "Succeeded (cached)" in out
    assert statuses(again)["QualityGateFailed"] == "Failed" and "Register" not in statuses(again)
    reason = next(
        s["FailureReason"]
        for s in again["PipelineExecutionSteps"]
        if s["StepName"] == "QualityGateFailed"
    )
    assert reason.startswith("Test Poisson deviance 0.") and "threshold 0.0001" in reason
    assert again["PipelineExecutionStatus"] == "Failed"
    again_id = again["PipelineExecutionArn"].rsplit("/", 1)[-1]
    assert not list((outputs / again_id).glob("registry/*"))

    # Housekeeping: remove all but the newest execution; what it reused stays.
    assert executor_cli(["clean", "--keep", "1", "--outputs", str(outputs)]) == 0
    assert [p.parent.name for p in outputs.glob("*/execution.json")] == [again_id]
    split = steps["Prepare"]["Properties"]["ProcessingOutputConfig"]["Outputs"][0]
    assert store_path(outputs, split["S3Output"]["S3Uri"]).is_dir()
    assert not store_path(outputs, artifact).exists()


def test_tune_variant_evaluates_the_best_job(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    outputs = tmp_path / "pipelines"
    code, record, out = execute(
        outputs,
        capsys,
        "pipeline=tune",
        "tuning.max_jobs=4",
        "tuning.max_parallel_jobs=2",
        *SMALL,
        "model.max_iter=30",
    )
    steps = record["Local"]["Steps"]
    assert statuses(record)["Evaluate"] == "Succeeded", out
    tune = steps["Tune"]["Properties"]
    summaries = tune["TrainingJobSummaries"]
    assert len(summaries) == 4 and len(steps["Tune"]["TrainingJobs"]) == 4
    scores = {
        s["TrainingJobName"]: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        for s in summaries
    }
    best = min(scores, key=scores.get)
    assert tune["BestTrainingJob"]["TrainingJobName"] == best
    model_input = next(
        i["S3Input"]["S3Uri"]
        for i in steps["Evaluate"]["Request"]["ProcessingInputs"]
        if i["InputName"] == "model"
    )
    assert model_input.endswith(f"/{best}/output/model.tar.gz")
    assert code == (0 if statuses(record).get("Register") == "Succeeded" else 1)


def test_job_failure_stops_the_pipeline_with_the_entrypoints_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outputs = tmp_path / "pipelines"
    uri = data_uri(outputs, "broken.csv", bad=True)
    code, record, _out = execute(
        outputs,
        capsys,
        "--param",
        f"InputDataUri={uri}",
        *SMALL,
    )
    assert code == 1
    assert statuses(record) == {"Prepare": "Failed"}
    reason = record["PipelineExecutionSteps"][0]["FailureReason"]
    assert reason.startswith("AlgorithmError: ") and "Exposure" in reason


def test_user_errors_exit_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outputs = tmp_path / "pipelines"
    code, _record, out = execute(outputs, capsys, "--param", "Nope=1", *SMALL)
    assert code == 2 and "Unknown pipeline parameter" in out and "Traceback" not in out
    assert not any(p.name != "s3" for p in outputs.glob("*"))  # no execution folder
    code, _, out = execute(outputs, capsys, "model.nope=1")
    assert code == 2 and "model.nope" in out


def _engine(folder: Path, name: str, info_fails: bool = False) -> Path:
    """A container CLI stand-in whose `info` fails or answers, and which has no images."""
    folder.mkdir(exist_ok=True)
    tool = folder / name
    info = 'echo "cannot connect to the daemon" >&2; exit 125' if info_fails else "exit 0"
    tool.write_text(
        f'#!/bin/sh\ncase "$1" in\n  info) {info} ;;\n'
        '  image) echo "no such image" >&2; exit 1 ;;\n  *) exit 99 ;;\nesac\n'
    )
    tool.chmod(0o755)
    return folder


@pytest.mark.parametrize(
    ("tool", "info_fails", "named"),
    [
        ("finch", None, "finch is not installed"),
        ("podman", True, "the engine does not answer (`podman info`: cannot connect"),
        ("docker", False, "the image claim-frequency:local is not built here"),
    ],
)
def test_container_engine_and_image_are_checked_before_anything_runs(
    tool: str,
    info_fails: bool | None,
    named: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if info_fails is not None:
        _engine(bin_dir, tool, info_fails)
    # Only the stand-in engine (and what the shell needs) is on PATH.
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    outputs = tmp_path / "pipelines"
    code, record, out = execute(outputs, capsys, "--container", tool, *SMALL)
    assert code == 2 and named in out and "Traceback" not in out, out
    assert record == {}  # no execution started


def test_outputs_under_a_file_are_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "a-file").write_text("x")
    code = local_pipeline.main(["--outputs", str(tmp_path / "a-file" / "pipelines"), *SMALL])
    out = capsys.readouterr()
    assert code == 2 and "Cannot write the outputs to" in out.err and "Traceback" not in out.err


def test_ctrl_c_again_while_stopping_ends_with_one_line(tmp_path: Path) -> None:
    """Ctrl-C stops the running job; more Ctrl-C while it stops change nothing: no traceback."""
    import os
    import signal
    import subprocess
    import sys
    import time

    outputs = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.sagemaker.local_pipeline", "--outputs", str(outputs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    seen = ""
    for line in proc.stdout:  # the default data: Prepare runs for seconds
        seen += line
        if "Prepare (Processing): Executing" in line:
            break
    for pause in (0.05, 0.05, 0.5):
        proc.send_signal(signal.SIGINT)
        time.sleep(pause)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, seen + out + err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "interrupted"
    record = json.loads(next(outputs.glob("*/execution.json")).read_text())
    assert record["PipelineExecutionStatus"] == "Stopped"
