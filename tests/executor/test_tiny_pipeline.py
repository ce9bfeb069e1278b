"""Hand-written definitions run by a tiny stand-in image (tests/executor/tiny_image.py).

Everything the executor knows about these jobs comes from the definition and the
one image -> command mapping: this is the proof that it interprets the JSON.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from executor import jobs
from executor.engine import Execution
from executor.errors import JobInternalError, ParameterError

from . import support


def steps_by_name(e: Execution) -> dict[str, dict]:
    return {s["StepName"]: s for s in e.record.data["PipelineExecutionSteps"]}


def local(e: Execution, name: str) -> dict:
    return e.record.data["Local"]["Steps"][name]


def test_train_variant_runs_every_step_from_the_definition(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    spec = support.definition()
    spec["Steps"][0]["Arguments"]["Environment"] = {"GREETING": "hello"}
    e = support.execution(tmp_path, spec, params={"X": "3.5", "Flavour": "salty"})
    assert e.run() == "Succeeded"
    steps = steps_by_name(e)
    assert [s["StepStatus"] for s in steps.values()] == ["Succeeded"] * 5
    assert "TooHigh" not in steps  # the unchosen branch never starts
    assert "greeting=hello" in Path(local(e, "Copy")["Log"]).read_text()
    assert steps["Gate"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    fit = local(e, "Fit")
    job = Path(fit["Log"]).parent
    # The service's side of the contract: string hyperparameters, `train`, model.tar.gz.
    hyper = json.loads((job / "opt_ml/input/config/hyperparameters.json").read_text())
    assert hyper == {"x": "3.5", "flavour": "salty"}
    assert "tiny_image.py train" in Path(fit["Log"]).read_text().splitlines()[0]
    assert "omp_threads=None" in Path(fit["Log"]).read_text()  # a lone job: every core
    artifact = fit["Properties"]["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact.endswith(f"/model/{fit['Properties']['TrainingJobName']}/output/model.tar.gz")
    with tarfile.open(e.store.local_path(artifact)) as tar:
        assert tar.getnames() == ["model.json"]
    # Metric regexes over the log: loss = (3.5 - 3)^2 + 1 + 2 + 3.
    assert fit["Properties"]["FinalMetricDataList"][0]["Value"] == pytest.approx(6.25)
    # What the job left outside its declared folders is lost, and the record says so.
    assert "stray.txt" in fit["LostFiles"]
    registered = json.loads((e.folder / "registry" / "tiny-1.json").read_text())
    assert (
        registered["CreateModelPackage"]["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
        == artifact
    )
    record = json.loads((e.folder / "execution.json").read_text())
    assert record["PipelineExecutionStatus"] == "Succeeded"
    assert json.loads(Path(local(e, "Score")["Log"]).parent.joinpath("request.json").read_text())


def test_tune_variant_picks_the_best_scraped_objective(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    e = support.execution(tmp_path, support.definition(tune=True))
    assert e.run() == "Succeeded"
    props = local(e, "Fit")["Properties"]
    summaries = props["TrainingJobSummaries"]
    assert len(summaries) == 4 and props[
        "ResourceLimits" if False else "TrainingJobStatusCounters"
    ] == {
        "Completed": 4,
        "Failed": 0,
    }
    values = [s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for s in summaries]
    assert values == sorted(values)
    best = props["BestTrainingJob"]["TrainingJobName"]
    assert best == summaries[0]["TrainingJobName"]
    model_input = local(e, "Score")["Request"]["ProcessingInputs"][0]["S3Input"]["S3Uri"]
    assert f"/{best}/output/model.tar.gz" in model_input
    # Each training job got the tuned value, the static one and the objective key.
    job_log = Path(local(e, "Fit")["TrainingJobs"][best]["log"]).parent
    hyper = json.loads((job_log / "opt_ml/input/config/hyperparameters.json").read_text())
    assert hyper["_tuning_objective_metric"] == "loss" and hyper["flavour"] == "plain"
    assert hyper["x"] == summaries[0]["TunedHyperParameters"]["x"]
    # Two jobs at a time share the cores; a lone training job is given no limit.
    share = max(1, (os.cpu_count() or 1) // 2)
    for job in local(e, "Fit")["TrainingJobs"].values():
        assert f"omp_threads={share}" in Path(job["log"]).read_text()


def test_two_jobs_at_a_time(tmp_path: Path) -> None:
    e = support.execution(tmp_path, support.definition(tune=True))
    assert e.run() == "Succeeded"
    spans = [
        (s["TrainingStartTime"], s["TrainingEndTime"])
        for s in local(e, "Fit")["Properties"]["TrainingJobSummaries"]
    ]
    overlapping = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    assert overlapping == 2


def test_gate_else_branch_fails_with_its_message(tmp_path: Path) -> None:
    e = support.execution(tmp_path, params={"Threshold": "0.5"})
    assert e.run() == "Failed"
    steps = steps_by_name(e)
    assert steps["TooHigh"]["StepStatus"] == "Failed"
    assert steps["TooHigh"]["FailureReason"] == "loss 7.0 > 0.5"
    assert "Register" not in steps
    assert not (e.folder / "registry").exists()


def test_job_failure_reason_and_later_steps_never_start(tmp_path: Path) -> None:
    spec = support.definition()
    spec["Steps"][1]["Arguments"]["HyperParameters"]["fail"] = "yes"
    e = support.execution(tmp_path, spec)
    assert e.run() == "Failed"
    steps = steps_by_name(e)
    assert steps["Fit"]["FailureReason"] == "AlgorithmError: bad hyperparameter fail=yes"
    assert set(steps) == {"Copy", "Fit"}
    assert "Fit failed" in e.record.data["FailureReason"]


def test_refused_requests_fail_before_any_job_starts(tmp_path: Path) -> None:
    spec = support.definition()
    spec["Steps"][0]["Arguments"]["AppSpecification"]["ContainerArguments"].append(
        {"Get": "Parameters.Flavour"}
    )
    spec["Parameters"][2] = {"Name": "Flavour", "Type": "String", "DefaultValue": ""}
    e = support.execution(tmp_path, spec)
    assert e.run() == "Failed"
    reason = steps_by_name(e)["Copy"]["FailureReason"]
    assert "AppSpecification.ContainerArguments[3] is empty" in reason
    assert not (e.folder / "jobs").exists()

    spec["Parameters"][2]["DefaultValue"] = "x" * 300
    e = support.execution(tmp_path, spec, execution_id="exec00000002")
    assert e.run() == "Failed"
    reason = steps_by_name(e)["Copy"]["FailureReason"]
    assert "AppSpecification.ContainerArguments[3]" in reason and "300 characters" in reason
    assert "at most 256" in reason and not (e.folder / "jobs").exists()


def test_long_hyperparameter_and_bad_s3_uri_are_refused(tmp_path: Path) -> None:
    spec = support.definition()
    spec["Steps"][1]["Arguments"]["HyperParameters"]["big"] = "y" * 257
    e = support.execution(tmp_path, spec)
    assert e.run() == "Failed"
    assert "HyperParameters['big'] is 257 characters" in steps_by_name(e)["Fit"]["FailureReason"]
    spec = support.definition()
    spec["Steps"][0]["Arguments"]["ProcessingInputs"][0]["S3Input"]["S3Uri"] = "s3://Bad_Bucket/x"
    e = support.execution(tmp_path, spec, execution_id="exec00000002")
    assert e.run() == "Failed"
    assert "not a valid S3 bucket name" in steps_by_name(e)["Copy"]["FailureReason"]


def test_bad_parameters_are_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="not one of its allowed values"):
        support.execution(tmp_path, params={"Flavour": "sweet"})
    with pytest.raises(ParameterError, match="Unknown pipeline parameter"):
        support.execution(tmp_path, params={"Nope": "1"})


def test_second_execution_reuses_the_cached_step(tmp_path: Path) -> None:
    first = support.execution(tmp_path)
    assert first.run() == "Succeeded"
    second = support.execution(tmp_path, execution_id="exec00000002")
    assert second.run() == "Succeeded"
    copy_step = steps_by_name(second)["Copy"]
    assert copy_step["CacheHitResult"] == {"SourcePipelineExecutionArn": first.execution_arn}
    assert local(second, "Copy").get("Log") is None  # no job ran
    # Its outputs are the first execution's, and the next step read them.
    channel = local(second, "Fit")["Request"]["InputDataConfig"][0]["DataSource"]
    assert "/exec00000001/" in channel["S3DataSource"]["S3Uri"]
    assert steps_by_name(second)["Fit"].get("CacheHitResult") is None


def test_retry_policy_retries_platform_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = support.definition()
    spec["Steps"][0]["RetryPolicies"] = [
        {
            "ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR", "SageMaker.CAPACITY_ERROR"],
            "IntervalSeconds": 1,
            "BackoffRate": 2.0,
            "MaxAttempts": 3,
        }
    ]
    e = support.execution(tmp_path, spec)
    e.retry_wait = lambda seconds: None
    calls = []
    original = e.runner.processing

    def flaky(name: str, request: dict) -> dict:
        calls.append(name)
        if len(calls) < 3:
            raise JobInternalError("staging failed")
        return original(name, request)

    monkeypatch.setattr(e.runner, "processing", flaky)
    assert e.run() == "Succeeded"
    copy_local = local(e, "Copy")
    assert len(copy_local["Retries"]) == 2
    assert [r["WaitSeconds"] for r in copy_local["Retries"]] == [1.0, 2.0]
    assert copy_local["RetryTypesWithoutLocalEquivalent"] == ["SageMaker.CAPACITY_ERROR"]
    assert steps_by_name(e)["Copy"]["AttemptCount"] == 3


def test_each_declared_folder_is_its_own_filesystem(tmp_path: Path) -> None:
    try:
        mode = jobs.isolation_mode("auto")
    except JobInternalError:
        mode = "plain"
    if mode != "tmpfs":
        pytest.skip("needs root and `unshare --mount` to give each folder its own filesystem")
    e = support.execution(tmp_path, isolation="tmpfs")
    assert e.run() == "Succeeded"
    log = Path(local(e, "Copy")["Log"]).read_text()
    assert "rename across folders: errno 18" in log  # EXDEV, as under SageMaker's local mode
    plain = support.execution(tmp_path / "plain", isolation="plain")
    assert plain.run() == "Succeeded"
    assert "rename across folders: ok" in Path(local(plain, "Copy")["Log"]).read_text()


def test_stop_ends_running_steps_as_stopped(tmp_path: Path) -> None:
    spec = support.definition()
    spec["Steps"][0]["Arguments"]["AppSpecification"]["ContainerEntrypoint"] = [
        "python",
        "-c",
        "import time; time.sleep(60)",
    ]
    spec["Steps"][0]["Arguments"]["AppSpecification"]["ContainerArguments"] = ["x"]
    e = support.execution(tmp_path, spec)
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(e.run()))
    thread.start()
    deadline = time.monotonic() + 20
    while not e.runner._running and time.monotonic() < deadline:
        time.sleep(0.05)
    (proc,) = e.runner._running.values()
    e.stop()
    thread.join(30)
    assert result == ["Stopped"]
    assert steps_by_name(e)["Copy"]["StepStatus"] == "Stopped"
    assert set(steps_by_name(e)) == {"Copy"}
    assert proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)


def _start_command(tmp_path: Path, job: str) -> subprocess.Popen:
    """``python -m executor`` on a one-step definition whose job runs ``job``; once it runs."""
    spec = support.definition()
    app = spec["Steps"][0]["Arguments"]["AppSpecification"]
    app["ContainerEntrypoint"] = ["python", "-c", job]
    app["ContainerArguments"] = ["x"]
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(spec))
    store = tmp_path / "out" / "s3" / support.BUCKET / "input/numbers"
    store.mkdir(parents=True)
    (store / "numbers.txt").write_text("1\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "executor",
            "--definition",
            str(path),
            "--mounts",
            "plain",
            "--outputs",
            str(tmp_path / "out"),
            "--image",
            f"{support.IMAGE}=python {support.TINY}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": support.python_path()},
    )
    deadline = time.monotonic() + 60
    logs: list[Path] = []
    while time.monotonic() < deadline and not logs:
        logs = [
            p for p in (tmp_path / "out").glob("*/jobs/*/log.txt") if "started" in p.read_text()
        ]
        time.sleep(0.1)
    assert logs, "the job never started"
    return proc


def _assert_stopped(tmp_path: Path, job_text: str) -> None:
    record = json.loads(next((tmp_path / "out").glob("*/execution.json")).read_text())
    assert record["PipelineExecutionStatus"] == "Stopped"
    assert record["PipelineExecutionSteps"][0]["StepStatus"] == "Stopped"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert job_text not in ps


def test_sigterm_stops_the_command_and_its_jobs(tmp_path: Path) -> None:
    proc = _start_command(tmp_path, "import time; print('started', flush=True); time.sleep(60)")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert "Execution Stopped" in out
    _assert_stopped(tmp_path, "time.sleep(60)")


def test_more_ctrl_c_while_stopping_end_the_same_way(tmp_path: Path) -> None:
    """A job that ignores SIGTERM keeps the command stopping for 10 s; more Ctrl-C then."""
    job = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('started', flush=True); time.sleep(61)"
    )
    proc = _start_command(tmp_path, job)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    assert "Still stopping the running jobs..." in err
    assert err.strip().splitlines()[-1] == "interrupted"
    _assert_stopped(tmp_path, "time.sleep(61)")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (b'{"Version": "2020-12-01", "Steps": [', "not valid JSON"),
        (b"\x81\xfe\x00garbage", "not UTF-8 text"),
        (b"[1, 2]", "no 'Steps' list"),
        (b'{"Steps": [1]}', "'Steps' must be a list of JSON objects"),
        (b'{"Parameters": "x", "Steps": []}', "'Parameters' must be a list of JSON objects"),
        (b'{"Parameters": [{"Type": "String"}], "Steps": []}', "Parameter 0 has no Name"),
        (b'{"Steps": [{"Name": {"a": 1}, "Type": "Processing"}]}', "Step name {'a': 1}"),
        (
            b'{"Steps": [{"Name": "A", "Type": "Training", "Arguments": []}]}',
            "Step 'A': Arguments must be a JSON object",
        ),
        (
            b'{"Steps": [{"Name": "A", "Type": "Training", "DependsOn": [3]}]}',
            "Step 'A': DependsOn must list step names",
        ),
        (
            b'{"Steps": [{"Name": "C", "Type": "Condition", "Arguments": {"IfSteps": [3]}}]}',
            "Step 'C': IfSteps must be a list of JSON objects",
        ),
    ],
)
def test_malformed_definition_is_one_line_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: bytes, named: str
) -> None:
    from executor.run import main

    path = tmp_path / "definition.json"
    path.write_bytes(text)
    code = main(["--definition", str(path), "--outputs", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and named in err, err
    assert not list((tmp_path / "out").glob("*/execution.json"))


def test_command_refuses_an_unsupported_step_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from executor import run

    spec = support.definition()
    spec["Steps"].append({"Name": "Batch", "Type": "Transform", "Arguments": {}})
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(spec))
    code = run.main(["--definition", str(path), "--outputs", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Step 'Batch' has type 'Transform', which is not supported locally" in err
    assert not (tmp_path / "out").exists()


def test_command_runs_with_relative_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Jobs run in their own folders: every path the command was given is made absolute first."""
    from executor import run

    monkeypatch.chdir(tmp_path)
    Path("definition.json").write_text(json.dumps(support.definition()))
    numbers = Path("out/s3", support.BUCKET, "input/numbers/numbers.txt")
    numbers.parent.mkdir(parents=True)
    numbers.write_text("1 2 3\n")
    image = f"{support.IMAGE}=python {support.TINY}"
    args = ["--definition", "definition.json", "--outputs", "out", "--image", image]
    code = run.main([*args, "--mounts", "plain"])
    out = capsys.readouterr().out
    assert code == 0, out
    (record,) = Path("out").glob("*/execution.json")
    data = json.loads(record.read_text())
    assert data["PipelineExecutionStatus"] == "Succeeded"
    fit = data["Local"]["Steps"]["Fit"]
    assert Path(fit["Log"]).is_absolute()
    artifact = fit["Properties"]["ModelArtifacts"]["S3ModelArtifacts"]
    assert Path("out/s3", artifact.removeprefix("s3://")).is_file()
