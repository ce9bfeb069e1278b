"""``make cloud-run`` while its jobs run: the live table, ``--logs`` and the quota cap."""

from __future__ import annotations

import fcntl
import functools
import io
import json
import os
import select
import struct
import termios
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from conf.errors import ConfigError
from pipelines.sagemaker import cloud, cloud_cli, logs, progress
from pipelines.sagemaker.progress import OBJECTIVE
from tests.cloud.support import ACCOUNT, BUCKET, IMAGE, archive, quota_client

pytestmark = pytest.mark.usefixtures("in_tmp")
SWEEP = "20260101-000000-abcd"
TRAINING_QUOTA = "ml.m5.xlarge for training job usage"
WARM_POOL_QUOTA = "ml.m5.xlarge for training warm pool usage"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def job_name(index: int) -> str:
    return f"claim-frequency-{SWEEP}-{index}"


def sweep_of(n: int) -> list[list[str]]:
    return [[*ACCOUNT, f"model.max_leaf_nodes={2 ** (4 + i)}"] for i in range(n)]


def described(name: str, status: str, secondary: str, **fields: Any) -> dict[str, Any]:
    """A DescribeTrainingJob response, checked against the service's output shape."""
    response = {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/{name}/output/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "ResourceConfig": {
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": T0,
        **fields,
    }
    sm = _sagemaker()
    with Stubber(sm) as stub:
        stub.add_response("describe_training_job", response, {"TrainingJobName": name})
        return dict(sm.describe_training_job(TrainingJobName=name))


@functools.cache
def _sagemaker() -> Any:
    return boto3.client("sagemaker", region_name="us-east-1")


def completed(name: str, deviance: float = 0.312345) -> dict[str, Any]:
    return described(
        name,
        "Completed",
        "Completed",
        TrainingStartTime=T0 + timedelta(seconds=20),
        TrainingEndTime=T0 + timedelta(seconds=125),
        LastModifiedTime=T0 + timedelta(seconds=130),
        BillableTimeInSeconds=105,
        FinalMetricDataList=[
            {"MetricName": "validation:poisson_deviance", "Value": 0.3, "Timestamp": T0},
            {"MetricName": "test:poisson_deviance", "Value": deviance, "Timestamp": T0},
        ],
    )


METRICS = {"test": {"poisson_deviance": 0.31, "d2": 0.1}}
MODEL_TAR = archive({"model.skops": b"model", "config.yaml": b"model: {}\n"})
OUTPUT_TAR = archive({"metrics.json": json.dumps(METRICS).encode(), "config.yaml": b"{}\n"})


# ------------------------------------------------------------------------ the table


def test_the_table_shows_each_jobs_status_time_billing_and_objective() -> None:
    running = described(
        job_name(0), "InProgress", "Training", TrainingStartTime=T0 + timedelta(seconds=30)
    )
    table = progress.render(
        [running, completed(job_name(1)), {"TrainingJobName": job_name(2)}],
        now=T0 + timedelta(minutes=2, seconds=5),
    )
    header, *rows = table.splitlines()
    assert header.split() == [
        "job",
        "status",
        "secondary",
        "elapsed",
        "billable",
        progress.OBJECTIVE,
    ]
    assert rows[0].split() == [job_name(0), "InProgress", "Training", "2:05", "-", "-"]
    # An ended job's time stops at its end: 125 s after it was created.
    assert rows[1].split() == [job_name(1), "Completed", "Completed", "2:05", "105s", "0.312345"]
    assert rows[2].split() == [job_name(2), "Pending", "-", "-", "-", "-"]


def test_the_table_reads_the_executors_times_as_text() -> None:
    """``--local``: the executor describes times as ISO 8601 text."""
    job = {
        "TrainingJobName": "local-job",
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "CreationTime": "2026-01-01T12:00:00.000+00:00",
        "TrainingEndTime": "2026-01-01T13:01:02.500+00:00",
        "BillableTimeInSeconds": 3662,
    }
    (row,) = progress.render([job]).splitlines()[1:]
    assert row.split()[3:5] == ["1:01:02", "3662s"]


def test_off_a_terminal_each_status_change_is_one_line() -> None:
    out = io.StringIO()
    view = progress.Progress(out, [job_name(0)])
    assert not view.live
    starting = described(job_name(0), "InProgress", "Starting")
    training = described(job_name(0), "InProgress", "Training")
    failed = described(job_name(0), "Failed", "Failed", FailureReason="AlgorithmError: boom")
    for response in (starting, training, training, failed):
        view.update(job_name(0), response)
    view.message("a log line")
    assert out.getvalue().splitlines() == [
        f"{job_name(0)}  InProgress (Starting)",
        f"{job_name(0)}  InProgress (Training)",
        f"{job_name(0)}  Failed: AlgorithmError: boom",
        "a log line",
    ]
    assert "\x1b[" not in out.getvalue()


class Terminal:
    """A pseudo-terminal of ``columns``: the writer's end, and everything written to it."""

    def __init__(self, columns: int = 200, rows: int = 40) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.out = os.fdopen(slave, "w")
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.chunks.append(data)
            elif self.out.closed:
                return

    def text(self) -> str:
        """What was written so far (the terminal's CR LF as LF)."""
        self.out.flush()
        time.sleep(0.2)
        return b"".join(self.chunks).decode().replace("\r\n", "\n")

    def close(self) -> None:
        self.out.close()
        self.reader.join(timeout=5)
        os.close(self.master)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TERM", "xterm")
    term = Terminal()
    yield term
    term.close()


def test_on_a_terminal_the_table_is_redrawn_in_place(terminal: Terminal) -> None:
    view = progress.Progress(terminal.out, [job_name(0), job_name(1)])
    assert view.live
    view.update(job_name(0), described(job_name(0), "InProgress", "Training"))
    first = terminal.text()
    assert "\x1b[" not in first  # nothing to erase yet: header and two rows
    assert first.count("\n") == 3 and "InProgress" in first and "Pending" in first
    view.update(job_name(0), completed(job_name(0)))
    view.message("log: epoch 3")
    redraws = terminal.text()[len(first) :]
    # Each redraw goes back over the three lines of the table and erases them.
    before, after_update, after_message = redraws.split("\x1b[3A\r\x1b[J")
    assert before == ""
    assert after_update.splitlines()[1].split()[:3] == [job_name(0), "Completed", "Completed"]
    assert "0.312345" in after_update and len(after_update.splitlines()) == 3
    # The log line is written above the table, which is drawn again below it.
    assert after_message.startswith("log: epoch 3\n")
    assert after_message.splitlines()[1].startswith("job") and "0.312345" in after_message


def test_a_narrow_terminal_gets_lines_cut_to_its_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    term = Terminal(columns=40)
    try:
        view = progress.Progress(term.out, [job_name(0)])
        view.update(job_name(0), completed(job_name(0)))
        lines = term.text().splitlines()
    finally:
        term.close()
    assert len(lines) == 2 and all(len(line) <= 39 for line in lines)


def test_a_table_taller_than_the_terminal_shows_the_jobs_still_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TERM", "xterm")
    term = Terminal(rows=6)
    names = [job_name(i) for i in range(8)]
    try:
        view = progress.Progress(term.out, names)
        for name in names[:5]:
            view.update(name, completed(name))
        view.update(names[5], described(names[5], "InProgress", "Training"))
        lines = term.text().split("\x1b[J")[-1].splitlines()
    finally:
        term.close()
    # Five lines and the cursor's: the header, the jobs not ended, the ended ones counted.
    assert len(lines) == 5
    assert [line.split()[:2] for line in lines[1:4]] == [
        [names[5], "InProgress"],
        [names[6], "Pending"],
        [names[7], "Pending"],
    ]
    assert lines[4] == "... 5 more job(s) (5 ended)"


class ScriptedJobs(cloud.Backend):
    """Jobs that stay InProgress for ``checks`` status checks, then complete; what happened."""

    def __init__(self, checks: int = 2) -> None:
        self.checks = checks
        self.left: dict[str, int] = {}
        self.events: list[tuple[str, str]] = []

    def upload(self, folder: Path, uri: str) -> None:
        return None

    def start(self, request: dict[str, Any]) -> None:
        name = request["TrainingJobName"]
        self.events.append(("start", name))
        self.left[name] = self.checks

    def describe(self, name: str) -> dict[str, Any]:
        if self.left[name] > 0:
            self.left[name] -= 1
            return described(name, "InProgress", "Training")
        if ("end", name) not in self.events:
            self.events.append(("end", name))
        return completed(name)

    def stop(self, name: str) -> None:
        self.events.append(("stop", name))

    def download(self, uri: str, target: Path) -> None:
        target.write_bytes(MODEL_TAR if uri.endswith("model.tar.gz") else OUTPUT_TAR)


def test_a_sweep_on_a_terminal_is_one_live_table(terminal: Terminal) -> None:
    backend = ScriptedJobs()
    cloud.launch(
        sweep_of(2),
        poll_seconds=0.01,
        backend_factory=lambda p: backend,
        quota_client=quota_client({TRAINING_QUOTA: 4.0}),
        out=terminal.out,
        sweep_id=SWEEP,
    )
    text = terminal.text()
    assert "\x1b[3A\r\x1b[J" in text
    final = text.split("\x1b[J")[-1].splitlines()
    assert final[0].split()[0] == "job" and len(final) == 3
    for index in (0, 1):
        assert final[1 + index].split()[:3] == [job_name(index), "Completed", "Completed"]
    assert "  InProgress (Training)" not in text  # no change lines on a terminal


# -------------------------------------------------------------------- the quota cap


def test_a_cap_of_one_starts_each_job_after_another_has_ended(
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend = ScriptedJobs()
    out = io.StringIO()
    sweep = cloud.launch(
        sweep_of(3),
        max_parallel=4,
        poll_seconds=0.01,
        backend_factory=lambda p: backend,
        quota_client=quota_client({TRAINING_QUOTA: 1.0}),
        out=out,
        sweep_id=SWEEP,
    )
    assert [job.status for job in sweep.jobs] == ["Completed"] * 3
    assert backend.events == [
        (event, job_name(index)) for index in range(3) for event in ("start", "end")
    ]
    (warning,) = capsys.readouterr().err.strip().splitlines()
    assert f"quota '{TRAINING_QUOTA}' is 1: 1 of its 3 jobs run at a time" in warning
    assert "max_parallel_jobs=4" in warning and "wait for a free slot" in warning


def test_without_a_cap_the_jobs_start_together(capsys: pytest.CaptureFixture[str]) -> None:
    backend = ScriptedJobs()
    cloud.launch(
        sweep_of(3),
        poll_seconds=0.01,
        backend_factory=lambda p: backend,
        quota_client=quota_client({}, {TRAINING_QUOTA: 20.0}),  # the AWS default
        out=io.StringIO(),
        sweep_id=SWEEP,
    )
    assert [e for e, _ in backend.events[:3]] == ["start"] * 3
    assert capsys.readouterr().err == ""


def test_unreadable_quotas_warn_and_go_on(capsys: pytest.CaptureFixture[str]) -> None:
    client = boto3.client("service-quotas", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_client_error("list_service_quotas", "AccessDeniedException", "not allowed")
    stub.activate()
    backend = ScriptedJobs()
    cloud.launch(
        sweep_of(2),
        poll_seconds=0.01,
        backend_factory=lambda p: backend,
        quota_client=client,
        out=io.StringIO(),
        sweep_id=SWEEP,
    )
    assert [e for e, _ in backend.events[:2]] == ["start"] * 2
    assert "could not read the account's SageMaker quotas (AccessDeniedException)" in (
        capsys.readouterr().err
    )


def test_a_quota_of_zero_refuses_the_sweep_before_anything_is_created(
    aws: str, in_tmp: Path
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    with pytest.raises(ConfigError) as info:
        cloud.launch(
            sweep_of(2), quota_client=quota_client({TRAINING_QUOTA: 0.0}), out=io.StringIO()
        )
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert f"'{TRAINING_QUOTA}' is 0" in message and "increase in Service Quotas" in message
    sm = boto3.client("sagemaker", region_name="us-east-1")
    assert sm.list_training_jobs()["TrainingJobSummaries"] == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert not list(in_tmp.glob("outputs/cloud/*/sweep.json"))


def test_a_warm_pool_quota_of_zero_refuses_a_warm_pool(aws: str, in_tmp: Path) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    jobs = [[*ACCOUNT, "sagemaker.keep_alive_seconds=900"]]
    client = quota_client({TRAINING_QUOTA: 4.0}, {WARM_POOL_QUOTA: 0.0})
    with pytest.raises(ConfigError, match=f"'{WARM_POOL_QUOTA}' is 0.*keep_alive_seconds=0"):
        cloud.launch(jobs, quota_client=client, out=io.StringIO())
    sm = boto3.client("sagemaker", region_name="us-east-1")
    assert sm.list_training_jobs()["TrainingJobSummaries"] == []
    # Without a warm pool the same job is not asked about it.
    no_pool = quota_client({TRAINING_QUOTA: 4.0}, {WARM_POOL_QUOTA: 0.0})
    cloud.launch([ACCOUNT], quota_client=no_pool, detach=True, out=io.StringIO(), sweep_id=SWEEP)
    assert len(sm.list_training_jobs()["TrainingJobSummaries"]) == 1


def test_a_capped_sweep_on_sagemaker_warns_once_and_runs_every_job(
    aws: str, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    for index in range(3):  # the archives the platform would write (moto runs nothing)
        base = f"claim-frequency/cloud/{SWEEP}/{job_name(index)}/output"
        s3.put_object(Bucket=BUCKET, Key=f"{base}/model.tar.gz", Body=MODEL_TAR)
        s3.put_object(Bucket=BUCKET, Key=f"{base}/output.tar.gz", Body=OUTPUT_TAR)
    sweep = cloud.launch(
        sweep_of(3),
        poll_seconds=0.01,
        quota_client=quota_client({TRAINING_QUOTA: 2.0}),
        out=io.StringIO(),
        sweep_id=SWEEP,
    )
    assert [job.status for job in sweep.jobs] == ["Completed"] * 3
    sm = boto3.client("sagemaker", region_name="us-east-1")
    assert len(sm.list_training_jobs()["TrainingJobSummaries"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 of its 3 jobs run at a time" in err[0]


def test_detach_is_refused_when_the_quota_cannot_run_every_job_at_once(
    aws: str, in_tmp: Path
) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    client = quota_client({TRAINING_QUOTA: 2.0})
    with pytest.raises(ConfigError, match=r"--detach .*lets 2 of its 3 jobs run at a time"):
        cloud.launch(sweep_of(3), detach=True, quota_client=client, out=io.StringIO())
    sm = boto3.client("sagemaker", region_name="us-east-1")
    assert sm.list_training_jobs()["TrainingJobSummaries"] == []


# -------------------------------------------------------------------------- --logs


LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def put_events(client: Any, stream: str, messages: list[str]) -> None:
    stamp = int(time.time() * 1000)
    events = [{"timestamp": stamp + i, "message": m} for i, m in enumerate(messages)]
    client.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)


def test_cloudwatch_streams_are_read_forward_from_their_start(aws: str) -> None:
    client = boto3.client("logs", region_name="us-east-1")
    log = logs.CloudWatchLog(client, job_name(0))
    assert log.read() == []  # no group yet: the job has not logged
    client.create_log_group(logGroupName=LOG_GROUP)
    stream = f"{job_name(0)}/algo-1-1767268800"
    client.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    client.create_log_stream(logGroupName=LOG_GROUP, logStreamName=f"{job_name(1)}/algo-1-1")
    put_events(client, f"{job_name(1)}/algo-1-1", ["another job"])
    put_events(client, stream, ["Loading the data\n", "train:poisson_deviance=0.31"])
    assert log.read() == ["Loading the data", "train:poisson_deviance=0.31"]
    assert log.read() == []
    put_events(client, stream, ["test:poisson_deviance=0.32"])
    assert log.read() == ["test:poisson_deviance=0.32"]


def test_logs_follows_the_jobs_cloudwatch_stream_until_it_ends(
    aws: str, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    base = f"claim-frequency/cloud/{SWEEP}/{job_name(0)}/output"
    s3.put_object(Bucket=BUCKET, Key=f"{base}/model.tar.gz", Body=MODEL_TAR)
    s3.put_object(Bucket=BUCKET, Key=f"{base}/output.tar.gz", Body=OUTPUT_TAR)
    client = boto3.client("logs", region_name="us-east-1")
    client.create_log_group(logGroupName=LOG_GROUP)
    stream = f"{job_name(0)}/algo-1-1767268800"
    client.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    lines = ["Invoking script with the following command: train", "test:poisson_deviance=0.32"]
    put_events(client, stream, lines)
    out = io.StringIO()
    sweep = cloud.launch(
        [ACCOUNT],
        logs=True,
        poll_seconds=0.01,
        quota_client=quota_client({TRAINING_QUOTA: 1.0}),
        out=out,
        sweep_id=SWEEP,
    )
    assert sweep.jobs[0].status == "Completed"
    printed = out.getvalue().splitlines()
    assert [line for line in printed if line in lines] == lines  # each once, in order
    assert f"{job_name(0)}  Completed" in printed


def test_logs_is_refused_with_a_sweep(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    assert cloud_cli.main(["run", "-m", "--logs", *ACCOUNT, "model.max_leaf_nodes=8,16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--logs" in err and "-m" in err
    assert not (in_tmp / "outputs").exists()
    assert cloud_cli.main(["run", "--detach", "--logs", *ACCOUNT]) == 2


def test_a_log_file_is_read_forward_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "jobs" / "job-1" / "log.txt"
    log = logs.local_log(tmp_path, "job-1")
    assert log.read() == []  # the executor has not created the job's folder yet
    path.parent.mkdir(parents=True)
    path.write_text("$ python -m container.entrypoint train\nLoading")
    assert log.read() == ["$ python -m container.entrypoint train"]
    with path.open("a") as f:
        f.write(" the data\nvalidation:poisson_deviance=0.3\ndone")
    assert log.read() == ["Loading the data", "validation:poisson_deviance=0.3"]
    assert log.read(final=True) == ["done"]


def test_following_writes_lines_while_the_block_runs_and_the_rest_after(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text("first\n")
    written: list[str] = []
    with logs.following(logs.FileLog(path), written.append, interval=0.01):
        deadline = time.monotonic() + 5
        while not written and time.monotonic() < deadline:
            time.sleep(0.01)
        assert written == ["first"]  # while the block runs
        with path.open("a") as f:
            f.write("second\nlast")
    assert written == ["first", "second\nlast"]  # each read's lines at once


@pytest.mark.slow
def test_local_logs_follow_the_executors_log_file(in_tmp: Path) -> None:
    backend = cloud.LocalBackend()
    out = io.StringIO()
    sweep = cloud.launch(
        [["model=constant", "data.n_rows=3000"]],
        local=True,
        logs=True,
        poll_seconds=0.1,
        backend_factory=lambda p: backend,
        out=out,
        sweep_id=SWEEP,
    )
    (job,) = sweep.jobs
    assert job.status == "Completed"
    printed = out.getvalue().splitlines()
    assert any(line.startswith("$ ") for line in printed)  # the executor's first log line
    assert any(line.startswith("test:poisson_deviance=") for line in printed)
    log = (backend.outputs / "jobs" / job.name / "log.txt").read_text().splitlines()
    assert [line for line in printed if line in log] == log
    # The whole run's objective reaches FinalMetricDataList, and so the table.
    metrics = {m["MetricName"] for m in backend.results[job.name]["FinalMetricDataList"]}
    assert OBJECTIVE in metrics
