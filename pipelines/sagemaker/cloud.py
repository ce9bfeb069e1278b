"""Cloud runs: each run's config as ONE SageMaker training job of the project's image.

A job is a whole run (load, validate, split, train, evaluate: the image's
``train`` with the hyperparameter ``mode=run``) configured by the same
content-addressed config channel as the pipeline's jobs, under
``s3://<config bucket>/<prefix>/config/<digest>/`` (the prefix the config
bucket's lifecycle expires). The CreateTrainingJob request is built here with
plain dictionaries (no SDK: it costs seconds), checked with botocore's
validation and the service rules the executor knows, and sent to SageMaker or
to the executor (``local=True``: the very same request, run here). When a job
ends, its ``model.tar.gz`` and ``output.tar.gz`` are unpacked into
``outputs/cloud/<sweep id>/<job>/`` in the layout of a local run.

A sweep is a list of jobs (one for a single run). Before the first job is
created every job's config passes the checks of a local run, and
``outputs/cloud/<sweep id>/sweep.json`` names the sweep's jobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from omegaconf import DictConfig

from conf.channel import digest, write_channel
from conf.contract import (
    CONFIG_CHANNEL,
    METRIC_NAMES,
    METRIC_REGEX,
    METRICS_FILE,
    MODE_KEY,
    MODEL_ARCHIVE,
    RUN_MODE,
)
from conf.errors import ConfigError, UserError, compose_checked, require_complete
from pipelines.sagemaker.progress import OBJECTIVE, Progress
from pipelines.sagemaker.s3 import upload_folder
from steps.summary import SUMMARY_FILE, Row, exit_code, summary_table, write_csv

if TYPE_CHECKING:
    from executor import ContainerEngine
    from pipelines.sagemaker.logs import LogStream

OUTPUTS = Path("outputs/cloud")
SWEEP_FILE = "sweep.json"
OUTPUT_ARCHIVE = "output.tar.gz"
FAILED_FILE = "FAILED"
TERMINAL = ("Completed", "Failed", "Stopped")
# The service's limits (the API reference; botocore's model does not encode them all).
MAX_JOB_NAME = 63
MAX_TAGS = 50
MAX_TAG_KEY, MAX_TAG_VALUE = 128, 256
_TAG_CHARS = re.compile(r"[^\w.:/=+\-@ ]")
SWEEP_TAG, OVERRIDES_TAG = "sweep-id", "overrides"
# Each sweep a launcher ran in this process, with its exit code (for the command's exit).
SWEEPS: list[tuple[Sweep, int]] = []


@dataclass
class Job:
    """One run of a sweep: its overrides, training job name and, once known, how it ended."""

    index: int
    overrides: list[str]
    name: str
    channel_uri: str = ""
    status: str = "Pending"
    failure_reason: str = ""
    folder: str = ""


@dataclass
class Sweep:
    """The jobs of one ``make cloud-run`` (one job, or one per multirun job)."""

    sweep_id: str
    local: bool
    output_path: str
    jobs: list[Job] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return OUTPUTS / self.sweep_id

    def save(self) -> Path:
        """Write ``sweep.json`` (sweep id, local or not, each job's name and overrides)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / SWEEP_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, sweep_id: str) -> Sweep:
        path = OUTPUTS / sweep_id / SWEEP_FILE
        if not path.is_file():
            raise UserError(f"No sweep {sweep_id!r} here ({path} does not exist).")
        data = json.loads(path.read_text())
        jobs = [Job(**job) for job in data.pop("jobs")]
        return cls(**data, jobs=jobs)


# ----------------------------------------------------------------------------- names


def new_sweep_id(now: datetime | None = None) -> str:
    """A sortable, unique sweep id: ``YYYYmmdd-HHMMSS-xxxx``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(2)}"


def job_name(prefix: str, sweep_id: str, index: int) -> str:
    """``<prefix>-<sweep id>-<index>``, the prefix cut so the name fits the service's 63."""
    suffix = f"-{sweep_id}-{index}"
    head = re.sub(r"[^A-Za-z0-9-]", "-", prefix).strip("-")[: MAX_JOB_NAME - len(suffix)]
    return (head.rstrip("-") or "run") + suffix


def config_prefix(cfg: DictConfig) -> str:
    """``s3://<config bucket>/<prefix>/config``: where single runs' channels go (expired)."""
    bucket = cfg.sagemaker.config_bucket or cfg.sagemaker.bucket
    return f"s3://{bucket}/{cfg.sagemaker.prefix}/config"


def output_path(cfg: DictConfig, sweep_id: str) -> str:
    """Where the sweep's jobs write ``<job>/output/{model,output}.tar.gz``."""
    return f"s3://{cfg.sagemaker.bucket}/{cfg.sagemaker.prefix}/cloud/{sweep_id}"


def tags(cfg: DictConfig, sweep_id: str, overrides: Sequence[str]) -> list[dict[str, str]]:
    """``sagemaker.tags``, the sweep id and the job's overrides, within the tag limits.

    A tag value may hold letters, digits, spaces and ``_.:/=+-@`` up to 256
    characters: other characters become ``_`` and a longer value is cut.
    """
    values = {str(k): str(v) for k, v in cfg.sagemaker.tags.items()}
    values[SWEEP_TAG] = sweep_id
    values[OVERRIDES_TAG] = " ".join(overrides) or "none"
    out = []
    for key, value in list(values.items())[:MAX_TAGS]:
        out.append(
            {
                "Key": _TAG_CHARS.sub("_", key)[:MAX_TAG_KEY],
                "Value": _TAG_CHARS.sub("_", value)[:MAX_TAG_VALUE],
            }
        )
    return out


# ---------------------------------------------------------------------------- checks


def compose_run(overrides: Sequence[str]) -> DictConfig:
    """One run's config with the checks of a local run (``steps.checks``) and the cloud's own."""
    from steps import register_schemas
    from steps.checks import check_config

    register_schemas()
    cfg = compose_checked(list(overrides))
    require_complete(cfg)
    check_config(cfg)
    check_cloud_options(cfg)
    return cfg


def check_account(cfg: DictConfig) -> None:
    """The account values a cloud run needs, each named when missing."""
    from pipelines.sagemaker.session import account_problems

    problems = account_problems(cfg)
    if problems:
        raise ConfigError(
            "The cloud run cannot start: set "
            + "; ".join(problems)
            + ". Pass them as overrides or write them with `make infra-config` "
            "(or add --local to run the job here)."
        )


def check_cloud_options(cfg: DictConfig) -> None:
    """Options the service would refuse together, refused before anything is created."""
    sm = cfg.sagemaker
    if sm.spot and int(sm.keep_alive_seconds) > 0:
        raise ConfigError(
            "sagemaker.spot=true and sagemaker.keep_alive_seconds > 0 cannot go together: "
            "SageMaker warm pools are not available for managed spot training. "
            "Set sagemaker.keep_alive_seconds=0 or sagemaker.spot=false."
        )
    if int(sm.keep_alive_seconds) < 0 or int(sm.keep_alive_seconds) > 3600:
        raise ConfigError(
            f"sagemaker.keep_alive_seconds must be between 0 and 3600, not {sm.keep_alive_seconds}."
        )
    wait = sm.max_wait_seconds
    if sm.spot and wait is not None and int(wait) < int(sm.max_runtime_seconds):
        raise ConfigError(
            f"sagemaker.max_wait_seconds ({wait}) must be at least sagemaker.max_runtime_seconds "
            f"({sm.max_runtime_seconds}) for managed spot training."
        )


# --------------------------------------------------------------------------- request


def metric_definitions() -> list[dict[str, str]]:
    """The metric lines a whole run prints: training's (as the pipeline's training step
    declares them) and the test objective the progress table shows."""
    out = []
    for name in (*METRIC_NAMES, OBJECTIVE):
        split, metric = name.split(":", 1)
        out.append({"Name": name, "Regex": METRIC_REGEX.format(split=split, name=metric)})
    return out


def training_request(
    cfg: DictConfig, name: str, channel_uri: str, sweep_id: str, overrides: Sequence[str]
) -> dict[str, Any]:
    """The CreateTrainingJob request of one whole run (its config travels in the channel)."""
    sm = cfg.sagemaker
    resource: dict[str, Any] = {
        "InstanceType": str(sm.training_instance_type),
        "InstanceCount": 1,
        "VolumeSizeInGB": int(sm.volume_size_gb),
    }
    if int(sm.keep_alive_seconds) > 0:
        resource["KeepAlivePeriodInSeconds"] = int(sm.keep_alive_seconds)
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": int(sm.max_runtime_seconds)}
    output: dict[str, str] = {"S3OutputPath": output_path(cfg, sweep_id)}
    if sm.kms_key_id:
        output["KmsKeyId"] = str(sm.kms_key_id)
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": str(sm.role_arn),
        "AlgorithmSpecification": {
            "TrainingImage": str(sm.image_uri),
            "TrainingInputMode": "File",
            "MetricDefinitions": metric_definitions(),
        },
        "HyperParameters": {MODE_KEY: RUN_MODE},
        "InputDataConfig": [
            {
                "ChannelName": CONFIG_CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": channel_uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": output,
        "ResourceConfig": resource,
        "StoppingCondition": stopping,
        "Tags": tags(cfg, sweep_id, overrides),
    }
    if sm.spot:
        request["EnableManagedSpotTraining"] = True
        wait = sm.max_wait_seconds
        stopping["MaxWaitTimeInSeconds"] = int(wait) if wait else 2 * int(sm.max_runtime_seconds)
    return request


def check_request(request: dict[str, Any], operation: str = "CreateTrainingJob") -> None:
    """Refuse what the service would: botocore's validation, then the service's own rules."""
    from botocore.session import get_session
    from botocore.validate import ParamValidator

    from executor import service_rules

    model = get_session().get_service_model("sagemaker").operation_model(operation)
    report = ParamValidator().validate(request, model.input_shape)
    problems = [report.generate_report()] if report.has_errors() else []
    step_type = "Training" if operation == "CreateTrainingJob" else "Tuning"
    problems += service_rules.request_problems(step_type, request)
    if len(request.get("TrainingJobName", "")) > MAX_JOB_NAME:
        problems.append(f"TrainingJobName is longer than {MAX_JOB_NAME} characters")
    if problems:
        raise ConfigError(f"The {operation} request would be refused: " + "; ".join(problems))


# ---------------------------------------------------------------------------- a sweep


@dataclass
class Planned:
    """A sweep ready to start: its record, and each job's request and channel folder."""

    sweep: Sweep
    requests: list[dict[str, Any]]
    channels: list[Path]
    region: str
    scratch: Path
    configs: list[DictConfig] = field(default_factory=list)


def plan(
    jobs: Sequence[Sequence[str]], scratch: Path, *, local: bool, sweep_id: str | None = None
) -> Planned:
    """Compose and check every job, write its channel and request; nothing is created.

    Raises a ``UserError`` naming the job whose config or request is refused.
    """
    from pipelines.sagemaker.local_pipeline import placeholder_overrides

    if not jobs:
        raise ConfigError("The sweep has no jobs.")
    sweep_id = sweep_id or new_sweep_id()
    records: list[Job] = []
    requests: list[dict[str, Any]] = []
    channels: list[Path] = []
    configs: list[DictConfig] = []
    for index, job in enumerate(jobs):
        overrides = list(job)
        try:
            cfg = compose_run(overrides)
            if local:
                overrides = [*overrides, *placeholder_overrides(cfg)]
                cfg = compose_run(overrides)
            check_account(cfg)
            folder = scratch / f"channel-{index}"
            write_channel(folder, overrides)
            uri = f"{config_prefix(cfg)}/{digest(folder)}/"
            name = job_name(str(cfg.sagemaker.prefix), sweep_id, index)
            request = training_request(cfg, name, uri, sweep_id, list(job))
            check_request(request)
        except UserError as err:
            if len(jobs) == 1:
                raise
            raise type(err)(f"Job {index} ({' '.join(job)}) of the sweep: {err}") from None
        records.append(Job(index, list(job), name, uri))
        requests.append(request)
        channels.append(folder)
        configs.append(cfg)
    first = configs[0]
    sweep = Sweep(sweep_id, local, output_path(first, sweep_id), records)
    return Planned(sweep, requests, channels, _region(first, local), scratch, configs)


def _region(cfg: DictConfig, local: bool) -> str:
    """``sagemaker.region`` (else the environment's or profile's; here a default)."""
    if local:
        return str(cfg.sagemaker.region or os.environ.get("AWS_REGION") or "us-east-1")
    from pipelines.sagemaker.session import region

    return region(cfg)


class JobFailed(UserError):
    """A job ended without success (its reason is the message)."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while jobs ran."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


@contextmanager
def signals_raise() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class Backend:
    """Where jobs run: SageMaker (boto3) or the executor here; same requests, same results."""

    def upload(self, folder: Path, uri: str) -> None:
        raise NotImplementedError

    def start(self, request: dict[str, Any]) -> None:
        raise NotImplementedError

    def describe(self, name: str) -> dict[str, Any]:
        raise NotImplementedError

    def stop(self, name: str) -> None:
        raise NotImplementedError

    def download(self, uri: str, target: Path) -> None:
        raise NotImplementedError

    def start_tuning(self, request: dict[str, Any]) -> None:
        raise NotImplementedError

    def describe_tuning(self, name: str) -> dict[str, Any]:
        raise NotImplementedError

    def stop_tuning(self, name: str) -> None:
        raise NotImplementedError


class AwsBackend(Backend):
    """SageMaker and S3 through boto3 (``AWS_ENDPOINT_URL`` points them at a local endpoint)."""

    def __init__(self, region: str, sm_client: Any = None, s3_client: Any = None) -> None:
        if sm_client is None or s3_client is None:
            from pipelines.sagemaker.session import session

            boto = session(region)
            sm_client = sm_client or boto.client("sagemaker")
            s3_client = s3_client or boto.client("s3")
        self.sm, self.s3 = sm_client, s3_client

    def upload(self, folder: Path, uri: str) -> None:
        upload_folder(self.s3, folder, uri)

    def start(self, request: dict[str, Any]) -> None:
        from botocore.exceptions import ClientError

        try:
            self.sm.create_training_job(**request)
        except ClientError as err:
            error = err.response.get("Error", {})
            raise UserError(
                f"SageMaker refused the training job {request['TrainingJobName']}: "
                f"{error.get('Code', 'error')}: {error.get('Message', err)}"
            ) from None

    def describe(self, name: str) -> dict[str, Any]:
        return self.sm.describe_training_job(TrainingJobName=name)

    def stop(self, name: str) -> None:
        self.sm.stop_training_job(TrainingJobName=name)

    def download(self, uri: str, target: Path) -> None:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        self.s3.download_file(bucket, key, str(target))

    def start_tuning(self, request: dict[str, Any]) -> None:
        self.sm.create_hyper_parameter_tuning_job(**request)

    def describe_tuning(self, name: str) -> dict[str, Any]:
        return self.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)

    def stop_tuning(self, name: str) -> None:
        self.sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)


class LocalBackend(Backend):
    """The executor: each request run here by ``executor.run_job``, outputs in its store."""

    def __init__(self, outputs: Path | None = None, engine: ContainerEngine | None = None) -> None:
        from executor import OUTPUTS as EXECUTOR_OUTPUTS

        self.outputs = Path(outputs or EXECUTOR_OUTPUTS).resolve()
        self.engine = engine
        self.uploads: dict[str, Path] = {}
        self.results: dict[str, dict[str, Any]] = {}

    def upload(self, folder: Path, uri: str) -> None:
        self.uploads[uri] = folder

    def start(self, request: dict[str, Any]) -> None:
        self.results[request["TrainingJobName"]] = self._run("CreateTrainingJob", request)

    def start_tuning(self, request: dict[str, Any]) -> None:
        name = request["HyperParameterTuningJobName"]
        self.results[name] = self._run("CreateHyperParameterTuningJob", request)

    def describe_tuning(self, name: str) -> dict[str, Any]:
        return self.results[name]

    def stop_tuning(self, name: str) -> None:  # a local job ends before start returns
        return None

    def _run(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        from executor import Options, run_job
        from pipelines.sagemaker.local_pipeline import project_images

        spec = request.get("TrainingJobDefinition", request)["AlgorithmSpecification"]
        options = Options(outputs=self.outputs, uploads=dict(self.uploads), engine=self.engine)
        run = run_job(operation, request, project_images(spec["TrainingImage"]), options)
        reason = str(run.describe.get("FailureReason", ""))
        if run.status == "Stopped" and not reason.startswith("MaxRuntimeExceeded"):
            # Here only SIGINT or SIGTERM stops a job (the executor stops it on either):
            # the sweep ends as a cloud sweep does when interrupted.
            raise Interrupted(signal.SIGINT)
        return run.describe

    def describe(self, name: str) -> dict[str, Any]:
        return self.results[name]

    def stop(self, name: str) -> None:  # a local job ends before start returns
        return None

    def download(self, uri: str, target: Path) -> None:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        source = self.outputs / "s3" / bucket / key
        target.write_bytes(source.read_bytes())


def start_sweep(planned: Planned, backend: Backend) -> None:
    """Write ``sweep.json``, then upload every job's channel (content-addressed)."""
    planned.sweep.save()
    for folder, job in zip(planned.channels, planned.sweep.jobs, strict=True):
        backend.upload(folder, job.channel_uri)


def run_jobs(
    planned: Planned,
    backend: Backend,
    *,
    max_parallel: int = 4,
    caps: Mapping[str, int] | None = None,
    poll_seconds: float = 15.0,
    detach: bool = False,
    follow: LogStream | None = None,
    out: TextIO | None = None,
) -> Sweep:
    """Start the jobs (at most ``max_parallel`` at a time), follow them and fetch their outputs.

    ``caps``: at most that many jobs at a time per training quota (``quotas.training_quota``
    of the request); the others wait for a free slot. On a terminal the jobs are a live
    table, elsewhere one line per status change (``progress``); ``follow``: a job's log,
    printed as it comes. SIGINT or SIGTERM stops every job started (their names are
    listed) and raises ``Interrupted``. With ``detach`` every job is started and left
    running (``launch`` refuses more jobs than may run at once).
    """
    from pipelines.sagemaker.logs import following
    from pipelines.sagemaker.quotas import training_quota

    sweep = planned.sweep
    progress = Progress(out or sys.stdout, [job.name for job in sweep.jobs])
    pending = list(zip(sweep.jobs, planned.requests, strict=True))
    running: dict[str, str] = {}  # job name -> its training quota
    jobs = {job.name: job for job in sweep.jobs}
    started: list[Job] = []
    caps = caps or {}

    def next_job() -> tuple[Job, dict[str, Any]] | None:
        if len(running) >= max(1, max_parallel):
            return None
        for item in pending:
            quota = training_quota(item[1])
            if quota not in caps or sum(q == quota for q in running.values()) < caps[quota]:
                return item
        return None

    with signals_raise(), following(follow, progress.message):
        try:
            while pending or running:
                while (item := next_job()) is not None:
                    pending.remove(item)
                    job, request = item
                    started.append(job)
                    backend.start(request)
                    running[job.name] = training_quota(request)
                    _update(job, backend.describe(job.name), progress)
                    sweep.save()
                if detach:
                    return sweep
                for name in list(running):
                    job = jobs[name]
                    _update(job, backend.describe(name), progress)
                    if job.status in TERMINAL:
                        del running[name]
                        fetch_job(sweep, job, backend)
                        sweep.save()
                if running:
                    time.sleep(poll_seconds)
        except BaseException as err:  # interrupted, or an AWS call failed: stop what runs
            stopped = [j for j in started if j.status not in TERMINAL]
            for job in stopped:
                with contextlib.suppress(Exception):
                    backend.stop(job.name)
                job.status = "Stopping"
            sweep.save()
            names = ", ".join(j.name for j in stopped) or "none"
            why = "interrupted" if isinstance(err, Interrupted) else "failed"
            progress.message(f"{why}: stopping {len(stopped)} job(s): {names}")
            raise
    return sweep


def _update(job: Job, described: dict[str, Any], progress: Progress) -> None:
    """Record the job's status and show it (``progress``: the table, or a line if it changed)."""
    progress.update(job.name, described)
    job.status = str(described.get("TrainingJobStatus", "Unknown"))
    job.failure_reason = str(described.get("FailureReason", ""))


def fetch_job(sweep: Sweep, job: Job, backend: Backend) -> None:
    """Unpack a finished job's archives into ``outputs/cloud/<sweep>/<job>/`` (as a local run)."""
    folder = sweep.folder / job.name
    folder.mkdir(parents=True, exist_ok=True)
    job.folder = str(folder)
    if job.status != "Completed":
        (folder / FAILED_FILE).write_text(
            (job.failure_reason or f"the job ended {job.status}") + "\n"
        )
        return
    base = f"{sweep.output_path.rstrip('/')}/{job.name}/output"
    archives = {MODEL_ARCHIVE: folder / "model", OUTPUT_ARCHIVE: folder}
    from steps.runtime.io import extract_safely

    missing = []
    with tempfile.TemporaryDirectory(prefix="fetch-") as tmp:
        for archive, target in archives.items():
            local = Path(tmp) / archive
            if not _downloaded(backend, f"{base}/{archive}", local):
                missing.append(archive)
                continue
            target.mkdir(parents=True, exist_ok=True)
            with tarfile.open(local) as tar:
                extract_safely(tar, target)
    if missing:
        job.failure_reason = f"the job completed without {' and '.join(missing)} in {base}/"
        (folder / FAILED_FILE).write_text(job.failure_reason + "\n")


def _downloaded(backend: Backend, uri: str, target: Path) -> bool:
    """Download ``uri``; False when there is no such object."""
    from botocore.exceptions import ClientError

    try:
        backend.download(uri, target)
    except FileNotFoundError:
        return False
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            return False
        raise
    return True


# --------------------------------------------------------------------------- summary


def detached_message(sweep: Sweep) -> str:
    """How to follow and fetch a sweep started with ``--detach``."""
    sid = sweep.sweep_id
    return (
        f'Started sweep {sid}. Follow it with `make cloud-status ARGS="{sid}"`, '
        f'fetch it with `make cloud-fetch ARGS="{sid}"`.'
    )


def summary(sweep: Sweep, out: TextIO | None = None) -> int:
    """Print the table of a local multirun and write ``summary.csv``; the exit code.

    0: every job completed; 1: a job failed unexpectedly; 2: a job failed on a user error.
    """
    out = out or sys.stdout
    rows: list[Row] = []
    for job in sweep.jobs:
        metrics_file = Path(job.folder or sweep.folder / job.name) / METRICS_FILE
        if job.status == "Completed" and metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
        else:
            metrics = {"error": job.failure_reason or f"the job ended {job.status}"}
        rows.append((" ".join(job.overrides) or job.name, metrics))
    with open(sweep.folder / SUMMARY_FILE, "w", newline="") as f:
        write_csv(f, rows, [job.name for job in sweep.jobs])
    print(summary_table(rows), file=out)
    print(f"Summary: {sweep.folder / SUMMARY_FILE}", file=out, flush=True)
    return exit_code(rows)


# ------------------------------------------------------------------------ the command


def launch(
    jobs: Sequence[Sequence[str]],
    *,
    local: bool = False,
    detach: bool = False,
    logs: bool = False,
    max_parallel: int = 4,
    poll_seconds: float = 15.0,
    backend_factory: Callable[[Planned], Backend] | None = None,
    quota_client: Any = None,
    out: TextIO | None = None,
    sweep_id: str | None = None,
    container: Container | None = None,
) -> Sweep:
    """Check every job, write ``sweep.json``, start the jobs and (unless detached) fetch them.

    In SageMaker the account's training quotas cap how many jobs run at once
    (``quotas.cloud_run_caps``, read with ``quota_client``: None, the session's);
    ``logs`` prints the one job's log as it comes.
    """
    out = out or sys.stdout
    if container and container.tool and not local:
        raise UserError(f"--container {container.tool} runs the jobs on this machine: add --local.")
    if local and detach:
        raise UserError("--detach needs SageMaker: a --local job runs here until it ends.")
    if logs and (detach or len(jobs) != 1):
        raise UserError(
            "--logs follows the log of one job until it ends: leave out -m and --detach."
        )
    if detach and len(jobs) > max(1, max_parallel):
        raise UserError(
            f"--detach starts every job at once, and {len(jobs)} jobs exceed "
            f"hydra.launcher.max_parallel_jobs={max_parallel}: raise it, or follow the sweep "
            "(no --detach) so that jobs start as others end."
        )
    with tempfile.TemporaryDirectory(prefix="cloud-run-") as tmp:
        planned = plan(jobs, Path(tmp), local=local, sweep_id=sweep_id)
        caps: dict[str, int] = {}
        if not local:
            from pipelines.sagemaker import quotas
            from pipelines.sagemaker.session import session

            client = quota_client or session(planned.region).client("service-quotas")
            caps = quotas.cloud_run_caps(client, planned.requests, max_parallel, detach=detach)
        if backend_factory is not None:
            backend = backend_factory(planned)
        else:
            backend = backend_for(planned, local=local, container=container)
        follow = _log_stream(planned, backend) if logs else None
        start_sweep(planned, backend)
        where = "here (executor)" if local else f"in SageMaker ({planned.region})"
        print(
            f"Sweep {planned.sweep.sweep_id}: {len(jobs)} job(s) {where}; "
            f"record {planned.sweep.folder / SWEEP_FILE}",
            file=out,
            flush=True,
        )
        return run_jobs(
            planned,
            backend,
            max_parallel=max_parallel,
            caps=caps,
            poll_seconds=poll_seconds,
            detach=detach,
            follow=follow,
            out=out,
        )


@dataclass
class Container:
    """``--container`` and its ``--container-flag``s: run ``--local`` jobs in the built image."""

    tool: str | None = None
    flags: Sequence[str] = ()


def backend_for(planned: Planned, *, local: bool, container: Container | None = None) -> Backend:
    """SageMaker, or the executor here (as processes, or in the image with ``container``).

    ``container`` is refused without ``local``; its engine and the jobs' image are
    checked before anything runs.
    """
    tool = container.tool if container else None
    if not local:
        if tool:
            raise UserError(f"--container {tool} runs the jobs on this machine: add --local.")
        return AwsBackend(planned.region)
    if not tool or container is None:
        return LocalBackend()
    from executor import ContainerEngine
    from pipelines.sagemaker.local_pipeline import check_engine

    engine = ContainerEngine(tool, tuple(container.flags))
    for image in sorted({str(c.sagemaker.image_uri) for c in planned.configs}):
        check_engine(engine, image)
    return LocalBackend(engine=engine)


def _log_stream(planned: Planned, backend: Backend) -> LogStream:
    """The log of the sweep's one job: the executor's log file here, else CloudWatch."""
    from pipelines.sagemaker import logs

    name = planned.sweep.jobs[0].name
    if isinstance(backend, LocalBackend):
        return logs.local_log(backend.outputs, name)
    from pipelines.sagemaker.session import session

    return logs.CloudWatchLog(session(planned.region).client("logs"), name)
