"""Processing and training jobs as SageMaker runs them, on this machine.

Each job gets a fresh ``/opt/ml`` tree under its job folder. Every processing
input, processing output and training channel (and ``/opt/ml/model``) is its own
folder at its declared path; with ``isolation='tmpfs'`` each is its own
filesystem. The service's side of the job contract lives here:
``input/config/hyperparameters.json`` (string values), the single argument
``train``, ``model.tar.gz`` at ``<S3OutputPath>/<job>/output/model.tar.gz``,
uploads from the declared paths only, ``output/failure`` (processing:
``output/message``) as the FailureReason, and metric regexes over the log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from executor.errors import ExecutorError, JobInternalError, RequestRefused, StepStopped
from executor.images import OPT_ML, ContainerEngine, LocalImages
from executor.storage import Store, split_uri
from executor.warm import WarmImage

# The service's side of the /opt/ml contract.
HYPERPARAMETERS = "input/config/hyperparameters.json"
INPUT_DATA_CONFIG = "input/config/inputdataconfig.json"
RESOURCE_CONFIG = "input/config/resourceconfig.json"
PROCESSING_CONFIG = "config/processingjobconfig.json"
PROCESSING_RESOURCES = "config/resourceconfig.json"
CHANNELS = "input/data"
MODEL = "model"
OUTPUT_DATA = "output/data"
FAILURE = "output/failure"
MESSAGE = "output/message"
MODEL_ARCHIVE = "model.tar.gz"
# How a job learns the cores it may use (OpenMP, and BLAS libraries that follow it).
THREADS_VARIABLE = "OMP_NUM_THREADS"
OUTPUT_ARCHIVE = "output.tar.gz"
TRAIN_ARGUMENT = "train"
MAX_FAILURE_REASON = 1024
ACCOUNT = "000000000000"
SANDBOX = Path(__file__).with_name("sandbox.py")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def isolation_mode(requested: str = "auto") -> str:
    """``tmpfs`` where this process may mount (root, ``unshare``), else ``plain`` folders."""
    if requested == "plain":
        return "plain"
    ok = os.geteuid() == 0 and bool(shutil.which("unshare")) and bool(shutil.which("mount"))
    if ok:
        probe = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
        )
        ok = probe.returncode == 0
    if not ok and requested == "tmpfs":
        raise ExecutorError("tmpfs mounts need root and `unshare --mount` on this machine.")
    return "tmpfs" if ok else "plain"


@dataclass
class Folder:
    """A declared folder: its path in the container, and its S3 source or destination."""

    path: str  # /opt/ml/...
    uri: str
    is_input: bool
    # An input that is every object under an S3 prefix (S3DataType S3Prefix).
    prefix: bool = False


@dataclass
class JobResult:
    status: str  # Completed | Failed | Stopped
    failure_reason: str = ""
    log: str = ""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    start: str = ""
    end: str = ""


@dataclass
class Runner:
    """Runs jobs: storage, how images run, where job folders go, and how to stop them."""

    store: Store
    images: LocalImages
    jobs_dir: Path
    region: str = "us-east-1"
    engine: ContainerEngine | None = None
    isolation: str = "plain"
    job_env: dict[str, str] = field(default_factory=dict)
    # The image's command with its libraries loaded (local processes only; see warm.py).
    warm: WarmImage | None = None
    slots: threading.Semaphore = field(
        default_factory=lambda: threading.Semaphore(os.cpu_count() or 1)
    )
    stop: threading.Event = field(default_factory=threading.Event)
    _running: dict[str, subprocess.Popen] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # A job runs in a folder of its own: the paths it is given must not be relative.
        self.jobs_dir = Path(self.jobs_dir).resolve()

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:{kind}/{name.lower()}"

    # ------------------------------------------------------------------ processing

    def processing(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run a CreateProcessingJob request; return DescribeProcessingJob-like properties."""
        app = request["AppSpecification"]
        folders = [
            Folder(
                i["S3Input"]["LocalPath"],
                i["S3Input"]["S3Uri"],
                True,
                i["S3Input"].get("S3DataType") == "S3Prefix",
            )
            for i in request.get("ProcessingInputs", [])
            if "S3Input" in i
        ] + [
            Folder(o["S3Output"]["LocalPath"], o["S3Output"]["S3Uri"], False)
            for o in request.get("ProcessingOutputConfig", {}).get("Outputs", [])
            if "S3Output" in o
        ]
        created = now()
        empty = self._empty_input(folders, request)
        if empty:
            # The job fails before it starts, as on the service (see ``_empty_input``).
            return {
                **request,
                "ProcessingJobName": name,
                "ProcessingJobArn": self.arn("processing-job", name),
                "ProcessingJobStatus": "Failed",
                "FailureReason": cut(f"ClientError: {empty}"),
                "CreationTime": created,
                "LastModifiedTime": now(),
                "_local": {"log": None, "lost": []},
            }
        configs = {
            PROCESSING_CONFIG: {**request, "ProcessingJobName": name},
            PROCESSING_RESOURCES: {"current_host": "algo-1", "hosts": ["algo-1"]},
        }
        result = self._run(
            name,
            app["ImageUri"],
            app.get("ContainerEntrypoint"),
            list(app.get("ContainerArguments") or []),
            request.get("Environment") or {},
            folders,
            configs,
            failure_file=MESSAGE,
            max_runtime=request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds"),
            request=request,
        )
        props = {
            **request,
            "ProcessingJobName": name,
            "ProcessingJobArn": self.arn("processing-job", name),
            "ProcessingJobStatus": result.status,
            "ProcessingStartTime": result.start,
            "ProcessingEndTime": result.end,
            "CreationTime": created,
            "LastModifiedTime": now(),
        }
        if result.failure_reason:
            props["FailureReason"] = props["ExitMessage"] = result.failure_reason
        props["_local"] = {"log": result.log, "lost": result.lost}
        return props

    # -------------------------------------------------------------------- training

    def training(
        self, name: str, request: dict[str, Any], threads: int | None = None
    ) -> dict[str, Any]:
        """Run a CreateTrainingJob request; return DescribeTrainingJob-like properties.

        ``threads``: the cores this job has to itself while others share the machine
        (a tuning job's parallel training jobs), given to it as ``OMP_NUM_THREADS``;
        on the service each training job has an instance of its own.
        """
        algo = request["AlgorithmSpecification"]
        folders = [
            Folder(
                f"{OPT_ML}/{CHANNELS}/{c['ChannelName']}",
                c["DataSource"]["S3DataSource"]["S3Uri"],
                True,
                c["DataSource"]["S3DataSource"].get("S3DataType") == "S3Prefix",
            )
            for c in request.get("InputDataConfig", [])
        ]
        created = now()
        empty = self._empty_input(folders, request)
        if empty:
            # CreateTrainingJob refuses it: "An error occurred (ValidationException) when
            # calling the CreateTrainingJob operation: No S3 objects found under S3 URL ..."
            # (aws/amazon-sagemaker-examples #2267, #2489).
            raise RequestRefused(f"CreateTrainingJob: ValidationException: {empty}")
        output_path = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        job_root = f"{output_path}/{name}/output"
        folders.append(Folder(f"{OPT_ML}/{MODEL}", f"{job_root}/{MODEL_ARCHIVE}", False))
        # The service drops a hyperparameter whose value is empty (sagemaker-python-sdk #582).
        hyper = {k: str(v) for k, v in (request.get("HyperParameters") or {}).items() if v != ""}
        configs = {
            HYPERPARAMETERS: hyper,
            INPUT_DATA_CONFIG: {
                c["ChannelName"]: {
                    "TrainingInputMode": c.get("InputMode", "File"),
                    "S3DistributionType": "FullyReplicated",
                    "RecordWrapperType": "None",
                }
                for c in request.get("InputDataConfig", [])
            },
            RESOURCE_CONFIG: {
                "current_host": "algo-1",
                "hosts": ["algo-1"],
                "network_interface_name": "eth0",
            },
        }
        entrypoint = algo.get("ContainerEntrypoint")
        arguments = list(algo.get("ContainerArguments") or [])
        if not entrypoint:
            arguments = [TRAIN_ARGUMENT]
        result = self._run(
            name,
            algo["TrainingImage"],
            entrypoint,
            arguments,
            request.get("Environment") or {},
            folders,
            configs,
            failure_file=FAILURE,
            max_runtime=request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds"),
            request=request,
            metric_definitions=algo.get("MetricDefinitions", []),
            output_root=job_root,
            platform_env={THREADS_VARIABLE: str(threads)} if threads else {},
        )
        ran = datetime.fromisoformat(result.end) - datetime.fromisoformat(result.start)
        seconds = max(1, round(ran.total_seconds()))
        props = {
            **request,
            "HyperParameters": hyper,
            "TrainingJobName": name,
            "TrainingJobArn": self.arn("training-job", name),
            "TrainingJobStatus": result.status,
            "SecondaryStatus": result.status,
            "TrainingStartTime": result.start,
            "TrainingEndTime": result.end,
            "CreationTime": created,
            "LastModifiedTime": now(),
            "TrainingTimeInSeconds": seconds,
            "BillableTimeInSeconds": seconds,
            "FinalMetricDataList": result.metrics,
            "ModelArtifacts": {"S3ModelArtifacts": f"{job_root}/{MODEL_ARCHIVE}"},
        }
        if result.failure_reason:
            props["FailureReason"] = result.failure_reason
        props["_local"] = {"log": result.log, "lost": result.lost}
        return props

    def _empty_input(self, folders: list[Folder], request: dict[str, Any]) -> str | None:
        """Why the job cannot start when an S3 prefix input holds no object, else None.

        The service lists each S3Prefix input before the job starts and fails it when
        the prefix is empty, in these words (CreateTrainingJob's ValidationException,
        aws/amazon-sagemaker-examples #2267).
        """
        for folder in folders:
            if not (folder.is_input and folder.prefix):
                continue
            try:
                found = self.store.keys(folder.uri)
            except Exception as exc:
                raise JobInternalError(f"Listing the input {folder.uri} failed: {exc}") from exc
            if not found:
                bucket = split_uri(folder.uri)[0]
                role = request.get("RoleArn", "")
                return (
                    f'No S3 objects found under S3 URL "{folder.uri}" given in input data '
                    f"source. Please ensure that the bucket exists in the selected region "
                    f"({self.region}), that objects exist under that S3 prefix, and that the "
                    f'role "{role}" has "s3:ListBucket" permissions on bucket "{bucket}".'
                )
        return None

    # ------------------------------------------------------------------ the run

    def _run(
        self,
        name: str,
        image: str,
        entrypoint: list[str] | None,
        arguments: list[str],
        environment: dict[str, str],
        folders: list[Folder],
        configs: dict[str, Any],
        *,
        failure_file: str,
        max_runtime: int | None,
        request: dict[str, Any],
        metric_definitions: list[dict[str, str]] | None = None,
        output_root: str | None = None,
        platform_env: dict[str, str] | None = None,
    ) -> JobResult:
        if self.stop.is_set():
            raise StepStopped(f"Job {name} was not started: the execution is stopping.")
        job_dir = self.jobs_dir / name
        if job_dir.exists():
            shutil.rmtree(job_dir)
        tree = job_dir / "opt_ml"
        tree.mkdir(parents=True)
        (job_dir / "request.json").write_text(json.dumps(request, indent=2, sort_keys=True))
        log_path = job_dir / "log.txt"
        result = JobResult(status="Failed", log=str(log_path), start=now())
        isolated = self.isolation == "tmpfs" and self.engine is None
        mounts: list[dict[str, str]] = []

        def local(path: str) -> Path:
            return tree / Path(path).relative_to(OPT_ML)

        try:
            for rel, content in configs.items():
                (tree / rel).parent.mkdir(parents=True, exist_ok=True)
                (tree / rel).write_text(json.dumps(content, indent=2))
            (tree / "output").mkdir(exist_ok=True)
            for i, folder in enumerate(folders):
                target = local(folder.path)
                target.mkdir(parents=True, exist_ok=True)
                mount = {"path": str(target)}
                if folder.is_input:
                    dest = job_dir / "stage" / f"in-{i}" if isolated else target
                    dest.mkdir(parents=True, exist_ok=True)
                    self.store.download(folder.uri, dest)
                    mount["source"] = str(dest)
                else:
                    mount["collect"] = str(job_dir / "stage" / f"out-{i}")
                mounts.append(mount)
        except Exception as exc:
            if isinstance(exc, JobInternalError):
                raise
            raise JobInternalError(f"Staging the inputs of job {name} failed: {exc}") from exc

        # The platform's settings first: the request's Environment wins, as on the service.
        environment = {**(platform_env or {}), **environment}
        command, env, workdir = self._command(
            name, image, entrypoint, arguments, tree, folders, environment
        )
        job_command = command
        if isolated:
            spec = job_dir / "sandbox.json"
            sandbox = {
                "mounts": mounts,
                "command": command,
                "cwd": str(workdir or job_dir),
                "error": str(job_dir / "sandbox-error"),
            }
            spec.write_text(json.dumps(sandbox))
            command = ["unshare", "--mount", "--propagation", "private", "--"]
            command += [self.images.interpreter, "-S", str(SANDBOX), str(spec)]
        if self.warm is not None and self.engine is None and self.warm.runs(job_command):
            spec = job_dir / "warm.json"
            warm = {
                "module": self.warm.module,
                "args": job_command[3:],
                "cwd": str(workdir or job_dir),
                "mounts": mounts if isolated else None,
                "error": str(job_dir / "sandbox-error"),
                "cold": command,
            }
            spec.write_text(json.dumps(warm))
            command = self.warm.client_command(spec)
        code = self._spawn(name, command, env, workdir or job_dir, log_path, max_runtime)
        result.end = now()
        if isolated and (job_dir / "sandbox-error").exists():
            error = (job_dir / "sandbox-error").read_text()
            raise JobInternalError(f"Job {name}: its folders could not be mounted ({error}).")
        log = log_path.read_text(errors="replace")
        result.metrics = scrape_metrics(log, metric_definitions or [])

        def produced(i: int, folder: Folder) -> Path:
            return Path(mounts[i]["collect"]) if isolated else local(folder.path)

        if code == "stopped":
            result.status = "Stopped"
            raise StepStopped(f"Job {name} was stopped.")
        if code == "timeout":
            result.failure_reason = (
                f"MaxRuntimeExceeded: job {name} ran longer than MaxRuntimeInSeconds={max_runtime}."
            )
        elif code != 0:
            reason = _read_reason(tree / failure_file)
            result.failure_reason = cut(
                f"AlgorithmError: {reason}"
                if reason
                else f"AlgorithmError: the job exited with status {code}; see its log {log_path}."
            )
        else:
            result.status = "Completed"
            try:
                for i, folder in enumerate(folders):
                    if folder.is_input:
                        continue
                    source = produced(i, folder)
                    if output_root and folder.path == f"{OPT_ML}/{MODEL}":
                        archive = job_dir / MODEL_ARCHIVE
                        make_tar(source, archive)
                        self.store.write(folder.uri, archive.read_bytes())
                    else:
                        self.store.upload(source, folder.uri)
                data = tree / OUTPUT_DATA
                if output_root and data.is_dir() and any(data.iterdir()):
                    archive = job_dir / OUTPUT_ARCHIVE
                    make_tar(data, archive)
                    self.store.write(f"{output_root}/{OUTPUT_ARCHIVE}", archive.read_bytes())
            except Exception as exc:
                raise JobInternalError(
                    f"Uploading the outputs of job {name} failed: {exc}"
                ) from exc
        shutil.rmtree(job_dir / "stage", ignore_errors=True)
        declared = [local(f.path) for f in folders] + [tree / rel for rel in configs]
        declared += [tree / FAILURE, tree / MESSAGE, tree / OUTPUT_DATA]
        result.lost = lost_files(tree, declared)
        if result.status != "Completed" and not result.failure_reason:
            result.failure_reason = f"AlgorithmError: see the job's log {log_path}."
        return result

    def _command(
        self,
        name: str,
        image: str,
        entrypoint: list[str] | None,
        arguments: list[str],
        tree: Path,
        folders: list[Folder],
        environment: dict[str, str],
    ) -> tuple[list[str], dict[str, str], Path | None]:
        """The command, its process environment and working folder (the request's
        Environment goes to the job: into the container, or into the local process)."""
        if self.engine is not None:
            mounts = [f.path for f in folders]
            job_env = {**self.job_env, **environment}
            cmd = self.engine.command(name, image, tree, mounts, entrypoint, arguments, job_env)
            return cmd, dict(os.environ), None
        command, env, workdir = self.images.command(image, entrypoint, arguments)
        env = {**os.environ, **self.job_env, **env, **environment, "OPT_ML_ROOT": str(tree)}
        return command, env, workdir

    def _spawn(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        max_runtime: int | None,
    ) -> int | str:
        """Run the job with a core; its exit code, ``'timeout'`` or ``'stopped'``."""
        with self.slots, log_path.open("w") as log:
            if self.stop.is_set():
                return "stopped"
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            try:
                proc = subprocess.Popen(
                    command,
                    cwd=cwd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as exc:
                raise JobInternalError(f"Job {name} could not start: {exc}") from exc
            with self._lock:
                self._running[name] = proc
            deadline = time.monotonic() + max_runtime if max_runtime else None
            try:
                while True:
                    try:
                        code = proc.wait(timeout=0.2)
                        return "stopped" if code != 0 and self.stop.is_set() else code
                    except subprocess.TimeoutExpired:
                        pass
                    if self.stop.is_set():
                        self._terminate(name, proc)
                        return "stopped"
                    if deadline and time.monotonic() > deadline:
                        self._terminate(name, proc)
                        return "timeout"
            finally:
                with self._lock:
                    self._running.pop(name, None)

    def _terminate(self, name: str, proc: subprocess.Popen) -> None:
        """SIGTERM the job's process group (and its container), SIGKILL after 10 s."""
        if self.engine is not None:
            subprocess.run(self.engine.stop_command(name), capture_output=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        """Stop every running job and start no new one."""
        self.stop.set()
        with self._lock:
            running = list(self._running.items())
        for name, proc in running:
            self._terminate(name, proc)


# ----------------------------------------------------------------------------- helpers


def cut(reason: str) -> str:
    """A FailureReason as the service keeps it: one paragraph, at most 1024 characters."""
    reason = " ".join(reason.split())
    return reason if len(reason) <= MAX_FAILURE_REASON else reason[: MAX_FAILURE_REASON - 3] + "..."


def _read_reason(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def make_tar(folder: Path, archive: Path) -> None:
    """``folder``'s contents at the top level of a gzipped tar, as the service packs them."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)


def scrape_metrics(log: str, definitions: list[dict[str, str]]) -> list[dict[str, Any]]:
    """FinalMetricDataList: the last value each metric definition's regex finds in the log."""
    out = []
    for metric in definitions:
        values = []
        for match in re.finditer(metric["Regex"], log):
            with contextlib.suppress(ValueError, IndexError):
                values.append(float(match.group(1)))
        if values:
            out.append({"MetricName": metric["Name"], "Value": values[-1], "Timestamp": now()})
    return out


def lost_files(tree: Path, kept: list[Path]) -> list[str]:
    """Files a job wrote outside its declared folders: the service would discard them."""
    out = []
    for path in _files(tree):
        if not any(path == k or path.is_relative_to(k) for k in kept):
            out.append(path.relative_to(tree).as_posix())
    return out


def _files(tree: Path) -> Iterator[Path]:
    for path in sorted(tree.rglob("*")):
        if path.is_file():
            yield path
