"""The executor's public API: run a pipeline definition, or one job's request, on this machine.

``run_definition`` runs a SageMaker Pipeline definition as the service runs an
execution; ``run_job`` runs one CreateProcessingJob, CreateTrainingJob or
CreateHyperParameterTuningJob request as the service runs that job. Both check
requests as the service does, give each job its own ``/opt/ml`` tree and put
outputs in the store. ``Options`` says where and how; ``LocalImages`` says how
an image runs here when no container engine runs it.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

from executor import definition as definitions
from executor import dispatch, rules
from executor.engine import Execution, Registry, new_execution_id
from executor.errors import ExecutorError, StepFailed, StepStopped
from executor.images import ContainerEngine, LocalImages
from executor.jobs import Runner, cut, isolation_mode
from executor.record import RECORD
from executor.storage import BotoStore, FolderStore, S3Endpoint, Store
from executor.table import LiveTable
from executor.warm import WarmImage

OUTPUTS = Path("outputs/pipelines")
# The folder store's folder under the outputs folder, and single jobs' folders.
STORE = "s3"
JOBS = "jobs"
DEFAULT_REGION = "us-east-1"
STORE_MODES = ("folder", "aws")
MOUNT_MODES = ("auto", "tmpfs", "plain")
T = TypeVar("T")


@dataclass
class Options:
    """Where and how jobs run.

    ``outputs``: execution folders (``<id>/execution.json``, job folders), single jobs'
    folders (``jobs/<name>``) and, with ``store='folder'``, the store (``s3/<bucket>/<key>``).
    ``store``: ``folder`` (S3 as folders, served read-only to jobs on 127.0.0.1) or
    ``aws`` (boto3's S3, and CreateModelPackage for RegisterModel steps).
    ``engine``: run images in docker, podman or finch instead of as local processes.
    ``mounts``: ``tmpfs`` gives each declared folder its own filesystem (root and
    ``unshare``), ``plain`` uses folders, ``auto`` picks tmpfs where it can.
    ``uploads``: S3 URI -> local folder, put in the store before anything runs.
    ``warm``: a warm image process (``warm_image``) that forks the jobs of its command.
    ``progress``: where the step table goes (None: nowhere).
    ``stop_on_signals``: SIGINT and SIGTERM stop the running jobs (main thread only).
    """

    outputs: Path = OUTPUTS
    store: str = "folder"
    engine: ContainerEngine | None = None
    mounts: str = "auto"
    region: str | None = None
    uploads: Mapping[str, Path] = field(default_factory=dict)
    warm: WarmImage | None = None
    progress: TextIO | None = None
    stop_on_signals: bool = True


@dataclass
class ExecutionResult:
    """How an execution ended: its status, id, folder, record (``execution.json``) and store.

    ``signal``: the signal (SIGINT or SIGTERM) that stopped it, if one did.
    """

    status: str
    execution_id: str
    folder: Path
    record: dict[str, Any]
    store: Store
    signal: int | None = None

    @property
    def record_path(self) -> Path:
        return self.folder / RECORD

    def output_lines(self, highlight: Sequence[str] = ()) -> list[str]:
        """Where each processing output landed; files whose names end with ``highlight``."""
        lines = []
        for name, step in self.record["Local"]["Steps"].items():
            if step.get("StepStatus") != "Succeeded":
                continue
            props = step.get("Properties") or {}
            for output in props.get("ProcessingOutputConfig", {}).get("Outputs") or []:
                uri = output["S3Output"]["S3Uri"]
                path = self.store.local_path(uri)
                where = f"{uri} -> {path}" if path else uri
                lines.append(f"  {name}/{output['OutputName']}: {where}")
                if path and path.is_dir() and highlight:
                    for file in sorted(path.rglob("*")):
                        if file.name.endswith(tuple(highlight)):
                            lines.append(f"      {file}")
        return lines


@dataclass
class JobRun:
    """How one job ended.

    ``describe``: the Describe* response's shape (DescribeProcessingJob, DescribeTrainingJob
    or DescribeHyperParameterTuningJob). ``local``: what the executor adds (``Log``,
    ``LostFiles``: files written outside the declared folders; a tuning job's
    ``TrainingJobs``, ``CompletionCriterion`` when its target was reached and
    ``NotEmulated``: settings that change the service's run, not this one's).
    ``folder``: the job's folder (``request.json``, ``log.txt``, ``opt_ml``).
    ``signal``: the signal (SIGINT or SIGTERM) that stopped it, if one did.
    """

    status: str
    describe: dict[str, Any]
    local: dict[str, Any]
    folder: Path
    signal: int | None = None


# --------------------------------------------------------------------------- the API


def run_definition(
    pipeline_definition: Mapping[str, Any] | str,
    parameters: Mapping[str, str] | None = None,
    images: LocalImages | None = None,
    options: Options | None = None,
    *,
    name: str = "local-pipeline",
) -> ExecutionResult:
    """Run one execution of a definition (a dict or its JSON text) as pipeline ``name``.

    ``parameters`` are the StartPipelineExecution values (strings). The graph and the
    parameters are checked before anything is written (``DefinitionError``,
    ``ParameterError``); each job request is checked before its job starts (a refused
    request fails its step).
    """
    options = options or Options()
    spec = definitions.load(
        pipeline_definition if isinstance(pipeline_definition, str) else dict(pipeline_definition)
    )
    values = dict(parameters or {})
    definitions.steps(spec)
    definitions.parameters(spec, values)
    outputs, region, isolation = _prepare(options)
    with ExitStack() as stack:
        store = _store(options, outputs, stack)
        execution_id = new_execution_id()
        folder = outputs / execution_id
        folder.mkdir(parents=True)
        stack.enter_context(_running(folder))
        runner = _runner(options, store, images, folder / JOBS, folder, region, isolation, stack)
        registry_client = None
        if options.store == "aws":
            import boto3

            registry_client = boto3.client("sagemaker", region_name=region)
        table = LiveTable(options.progress) if options.progress is not None else None
        execution = Execution(
            spec,
            values,
            runner,
            folder,
            pipeline_name=name,
            execution_id=execution_id,
            store=store,
            registry=Registry(folder / "registry", registry_client),
            cache_root=outputs,
            on_change=table,
        )
        _say(
            options,
            f"Execution {execution_id} ({runner.isolation}, "
            f"{runner.engine.tool if runner.engine else 'local processes'}, S3: {options.store})",
        )
        status, signum = _stoppable(execution.run, execution.stop, options.stop_on_signals)
        if table is not None:
            table.final(execution.record)
        record = execution.record.data
        return ExecutionResult(status, execution_id, folder, record, store, signum)


def run_job(
    operation: str,
    request: Mapping[str, Any],
    images: LocalImages | None = None,
    options: Options | None = None,
) -> JobRun:
    """Run one job from its Create* request, as boto3 would send it; how it ended.

    ``operation``: ``CreateProcessingJob``, ``CreateTrainingJob`` or
    ``CreateHyperParameterTuningJob``. A request the service would refuse raises
    ``RequestRefused`` before any job starts; a job that ran and failed or was
    stopped is described (its status and FailureReason), not raised.
    """
    if operation not in dispatch.KINDS:
        raise ExecutorError(
            f"{operation!r} does not start a job here (choose {', '.join(dispatch.KINDS)})."
        )
    kind = dispatch.KINDS[operation]
    job = copy.deepcopy(dict(request))
    rules.check(kind, job)
    name = job[rules.JOB_NAME_FIELDS[kind]]
    options = options or Options()
    outputs, region, isolation = _prepare(options)
    jobs_dir = outputs / JOBS
    with ExitStack() as stack:
        store = _store(options, outputs, stack)
        jobs_dir.mkdir(parents=True, exist_ok=True)
        runner = _runner(options, store, images, jobs_dir, jobs_dir, region, isolation, stack)
        status_field = dispatch.STATUS_FIELDS[kind]

        def run() -> dict[str, Any]:
            try:
                return dispatch.run_request(runner, kind, name, job)
            except StepStopped as exc:
                return {**job, status_field: "Stopped", "FailureReason": cut(str(exc))}
            except StepFailed as exc:  # the platform failed: staging, starting, uploading
                return {**job, status_field: "Failed", "FailureReason": cut(str(exc))}

        describe, signum = _stoppable(run, runner.stop_all, options.stop_on_signals)
    details = describe.pop("_local", {})
    local = {
        "Log": details.get("log"),
        "LostFiles": details.get("lost"),
        **{k: v for k, v in details.items() if k not in ("log", "lost")},
    }
    return JobRun(describe[status_field], describe, local, jobs_dir / name, signum)


@contextmanager
def warm_image(
    preload: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    module: str | None = None,
) -> Iterator[WarmImage | None]:
    """A warm image process: ``preload`` imported once, each job of ``python -m module`` forked.

    The caller knows its image: which modules its command loads and which module it
    runs (``module`` may be set later on the yielded object, once known). Jobs whose
    command is another one start cold. Yields None where forking a process with
    libraries loaded is not safe (off Linux); the server stops on leaving.
    """
    if sys.platform != "linux":
        yield None
        return
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="warm-")))
        warm = WarmImage(
            sys.executable,
            module,
            list(preload),
            Path(cwd),
            dict(os.environ if env is None else env),
            folder,
        )
        stack.callback(warm.close)
        yield warm


def clean(outputs: Path = OUTPUTS, keep: int = 0) -> tuple[int, int]:
    """Remove all but the newest ``keep`` executions and what they stored in the folder store.

    Objects that a kept execution still uses (for example through a cache hit) stay.
    A running execution (its process holds its lock: a killed one does not) is never
    touched, nor is one whose record cannot be read (a warning names it). Returns
    (removed, kept).
    """
    if keep < 0:
        raise ExecutorError(f"keep={keep}: the number of executions to keep is 0 or more.")
    root = Path(outputs)
    records = sorted(root.glob(f"*/{RECORD}"), key=lambda p: p.stat().st_mtime, reverse=True)
    prefixes: dict[Path, set[str]] = {}
    untouchable: list[Path] = []
    for path in records:
        found = _stored_prefixes(path)
        if found is None:
            print(f"warning: {path} is not an execution record: skipped.", file=sys.stderr)
            untouchable.append(path)
        elif _is_running(path.parent):
            untouchable.append(path)
        else:
            prefixes[path] = found
    candidates = [p for p in records if p in prefixes]
    kept, removed = candidates[:keep], candidates[keep:]
    used = set().union(*(prefixes[p] for p in kept))
    used |= set().union(*(_stored_prefixes(p) or set() for p in untouchable))
    store = (root / STORE).resolve()
    for path in removed:
        for prefix in sorted(prefixes[path] - used):
            target = (store / prefix).resolve()
            if target.is_relative_to(store) and target != store and target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
                _prune(target.parent, store)
        shutil.rmtree(path.parent)
    return len(removed), len(kept) + len(untouchable)


LOCK = ".running"


@contextmanager
def _running(folder: Path) -> Iterator[None]:
    """Hold the execution's lock while it runs; the system releases it if the process dies."""
    with open(folder / LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_running(folder: Path) -> bool:
    """Whether a live process holds ``folder``'s execution lock."""
    lock = folder / LOCK
    if not lock.exists():
        return False
    with open(lock) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


# ----------------------------------------------------------------------------- setup


def _prepare(options: Options) -> tuple[Path, str, str]:
    """The outputs folder (absolute: jobs run in folders of their own), region, isolation."""
    if options.store not in STORE_MODES:
        raise ExecutorError(f"store {options.store!r}: choose one of {', '.join(STORE_MODES)}.")
    if options.mounts not in MOUNT_MODES:
        raise ExecutorError(f"mounts {options.mounts!r}: choose one of {', '.join(MOUNT_MODES)}.")
    region = options.region or os.environ.get("AWS_REGION") or DEFAULT_REGION
    isolation = "bind mounts" if options.engine else isolation_mode(options.mounts)
    return Path(options.outputs).resolve(), region, isolation


def _store(options: Options, outputs: Path, stack: ExitStack) -> Store:
    """The store, with ``options.uploads`` in it."""
    store: Store
    if options.store == "aws":
        import boto3

        store = BotoStore(boto3.client("s3"))
    else:
        store = FolderStore(outputs / STORE)
    for uri, folder in options.uploads.items():
        store.upload(Path(folder), uri)
    return store


def _runner(
    options: Options,
    store: Store,
    images: LocalImages | None,
    jobs_dir: Path,
    folder: Path,
    region: str,
    isolation: str,
    stack: ExitStack,
) -> Runner:
    endpoint = None
    if isinstance(store, FolderStore):
        endpoint = stack.enter_context(S3Endpoint(store)).url
    return Runner(
        store=store,
        images=images or LocalImages({}),
        jobs_dir=jobs_dir,
        region=region,
        engine=options.engine,
        isolation=isolation,
        job_env=job_environment(endpoint, region, folder),
        warm=options.warm,
    )


def job_environment(endpoint: str | None, region: str, folder: Path) -> dict[str, str]:
    """What jobs see of AWS: the local store's endpoint and dummy credentials (folder store)."""
    if endpoint is None:
        return {}
    config = folder / ".aws-config"
    config.write_text("[default]\ns3 =\n    addressing_style = path\n")
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_SESSION_TOKEN": "local",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_CONFIG_FILE": str(config.resolve()),
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _say(options: Options, line: str) -> None:
    if options.progress is not None:
        print(line, file=options.progress, flush=True)


def _stoppable(
    work: Callable[[], T], stop: Callable[[], None], on_signals: bool
) -> tuple[T, int | None]:
    """``work()`` and the signal that stopped it, if any.

    From the main thread, the first SIGINT or SIGTERM while ``work`` runs calls
    ``stop``; later ones only say that the jobs are still stopping.
    """
    if not on_signals or threading.current_thread() is not threading.main_thread():
        return work(), None
    result: list[T] = []
    error: list[BaseException] = []
    received: list[int] = []

    def target() -> None:
        try:
            result.append(work())
        except BaseException as exc:
            error.append(exc)

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            print("Still stopping the running jobs...", file=sys.stderr, flush=True)
            return
        print(f"\nStopping ({signal.Signals(signum).name})...", file=sys.stderr, flush=True)
        stop()

    # The handlers come first: a signal as soon as the work starts must stop it too.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=target, daemon=True)
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if error:
        raise error[0]
    return result[0], (received[0] if received else None)


# ----------------------------------------------------------------------- housekeeping


def _stored_prefixes(path: Path) -> set[str] | None:
    """The store prefixes an execution's steps wrote or reused (outputs, training job folders).

    None when the record is not an execution record (unreadable, or of another shape).
    """
    try:
        record = json.loads(path.read_text())
        uris: list[str] = []
        for step in record.get("Local", {}).get("Steps", {}).values():
            props = step.get("Properties") or {}
            outputs = props.get("ProcessingOutputConfig", {}).get("Outputs", [])
            uris += [o["S3Output"]["S3Uri"] for o in outputs if "S3Output" in o]
            uris += [props.get("ModelArtifacts", {}).get("S3ModelArtifacts") or ""]
            summaries = props.get("TrainingJobSummaries", [])
            if summaries:
                base = props["TrainingJobDefinition"]["OutputDataConfig"]["S3OutputPath"]
                uris += [f"{base}/{s['TrainingJobName']}" for s in summaries]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None
    if not all(isinstance(uri, str) for uri in uris):
        return None
    out = set()
    for uri in filter(None, uris):
        key = uri.removeprefix("s3://").rstrip("/")
        # A model archive goes with its training job's folder (<output path>/<job>/output/...).
        out.add(key.removesuffix("/output/model.tar.gz"))
    return out


def _prune(folder: Path, root: Path) -> None:
    """Remove empty folders from ``folder`` up to (not including) ``root``."""
    while folder != root and folder.is_relative_to(root) and folder.is_dir():
        if any(folder.iterdir()):
            return
        folder.rmdir()
        folder = folder.parent
