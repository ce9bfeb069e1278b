"""``make replay``: a SageMaker training or processing job, run again here with its own inputs.

    make replay ARGS="<job name>"                           a training or processing job
    make replay ARGS="<pipeline execution ARN> <step name>" the job of a pipeline step

The job is described (DescribeTrainingJob, else DescribeProcessingJob when no
training job has that name); a pipeline step's job is found with
ListPipelineExecutionSteps (its ``Metadata.TrainingJob`` or ``ProcessingJob``).
Every S3 input it read (training channels, processing inputs' ``S3Input``; the
config channel among them) is downloaded, and the same request, named
``replay-<job>``, runs through the executor (``executor.run_job``): as a process
of this checkout, or in the image itself with a container engine. A job that
failed in the cloud replays as any other.

The request is the describe's fields that the Create* operation accepts
(botocore's model: ``dropped`` names the others, status, times, ARNs, metrics and
failure reasons), without a warm pool (``KeepAlivePeriodInSeconds``: a job here
ends when it ends).
"""

from __future__ import annotations

import copy
import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from conf.contract import JOB
from conf.errors import UserError
from pipelines.sagemaker.s3 import download_prefix

if TYPE_CHECKING:
    from executor import ContainerEngine, JobRun

MAX_JOB_NAME = 63
PREFIX = "replay-"
# Settings a Create* request accepts that make no sense here (the service's warm pool).
LOCAL_DROPS = {"ResourceConfig": ("KeepAlivePeriodInSeconds",)}
# Errors of a Describe* call for a job that does not exist (moto says ValidationException).
NOT_FOUND = ("ValidationException", "ResourceNotFound", "ResourceNotFoundException")


@dataclass(frozen=True)
class Kind:
    """A job type replay runs: its operations, fields and ListPipelineExecutionSteps key."""

    label: str
    create: str
    describe: str
    name_field: str
    status_field: str
    metadata: str
    # Where the request names its image: (structure, field).
    image_field: tuple[str, str]

    def image(self, request: dict[str, Any]) -> str:
        """The image the request runs."""
        where, field = self.image_field
        return str(request[where][field])

    def set_image(self, request: dict[str, Any], image: str) -> None:
        where, field = self.image_field
        request[where][field] = image


TRAINING = Kind(
    "training", "CreateTrainingJob", "DescribeTrainingJob", "TrainingJobName",
    "TrainingJobStatus", "TrainingJob", ("AlgorithmSpecification", "TrainingImage"),
)  # fmt: skip
PROCESSING = Kind(
    "processing", "CreateProcessingJob", "DescribeProcessingJob", "ProcessingJobName",
    "ProcessingJobStatus", "ProcessingJob", ("AppSpecification", "ImageUri"),
)  # fmt: skip
KINDS = (TRAINING, PROCESSING)


@dataclass(frozen=True)
class Input:
    """One S3 input of a job: its channel or input name, S3 URI and path in the job."""

    name: str
    uri: str
    path: str


# ----------------------------------------------------------------------------- request


@functools.cache
def _members(operation: str, output: bool) -> tuple[str, ...]:
    from botocore.session import get_session

    model = get_session().get_service_model("sagemaker").operation_model(operation)
    shape = model.output_shape if output else model.input_shape
    return tuple(shape.members)


def dropped(kind: Kind) -> list[str]:
    """The fields of the Describe* response that the Create* request does not accept."""
    accepted = set(_members(kind.create, False))
    return [name for name in _members(kind.describe, True) if name not in accepted]


def replay_request(kind: Kind, described: dict[str, Any], name: str) -> dict[str, Any]:
    """The Create* request of a described job, named ``name`` (see ``dropped``)."""
    accepted = set(_members(kind.create, False))
    request = {
        key: copy.deepcopy(value)
        for key, value in described.items()
        if key in accepted and value is not None
    }
    request[kind.name_field] = name
    for field, keys in LOCAL_DROPS.items():
        for key in keys:
            request.get(field, {}).pop(key, None)
    return request


def replay_name(job: str) -> str:
    """``replay-<job>``, cut to the service's 63 characters."""
    return f"{PREFIX}{job}"[:MAX_JOB_NAME].rstrip("-")


def inputs(kind: Kind, request: dict[str, Any]) -> list[Input]:
    """The job's S3 inputs; one that is not an S3 prefix (EFS, FSx, a manifest) is refused."""
    found = []
    if kind is TRAINING:
        for channel in request.get("InputDataConfig", []):
            source = channel.get("DataSource", {}).get("S3DataSource")
            name = str(channel["ChannelName"])
            _check_source(name, source)
            found.append(Input(name, source["S3Uri"], str(JOB.channel(name))))
    else:
        for item in request.get("ProcessingInputs", []):
            source = item.get("S3Input")
            name = str(item["InputName"])
            _check_source(name, source)
            found.append(Input(name, source["S3Uri"], str(source["LocalPath"])))
    return found


def _check_source(name: str, source: dict[str, Any] | None) -> None:
    if source is None:
        raise UserError(
            f"Input {name!r} does not read S3 (a file system or a dataset definition): "
            "replay downloads S3 inputs only."
        )
    if source.get("S3DataType", "S3Prefix") != "S3Prefix":
        raise UserError(
            f"Input {name!r} is S3DataType {source['S3DataType']}: replay downloads "
            "S3Prefix inputs only."
        )


# ------------------------------------------------------------------------------ lookups


def job_name(arn_or_name: str) -> str:
    """A job's name: the last part of its ARN, or the name itself."""
    return arn_or_name.rsplit("/", 1)[-1] if arn_or_name.startswith("arn:") else arn_or_name


def describe(sm: Any, name: str) -> tuple[Kind, dict[str, Any]]:
    """The training job ``name``, else the processing job; a message naming both if neither."""
    from botocore.exceptions import ClientError

    missing = []
    for kind in KINDS:
        method = getattr(sm, _snake(kind.describe))
        try:
            described = method(**{kind.name_field: name})
        except ClientError as err:
            error = err.response.get("Error", {})
            if error.get("Code") not in NOT_FOUND:
                raise UserError(
                    f"Cannot describe the {kind.label} job {name!r}: "
                    f"{error.get('Code', 'error')}: {error.get('Message', err)}"
                ) from None
            missing.append(f"{kind.describe}: {error.get('Message', 'not found')}")
            continue
        described.pop("ResponseMetadata", None)
        return kind, described
    raise UserError(f"No training or processing job is named {name!r} ({'; '.join(missing)}).")


def _snake(operation: str) -> str:
    from botocore import xform_name

    return str(xform_name(operation))


def execution_steps(sm: Any, execution_arn: str) -> list[dict[str, Any]]:
    """Every step of a pipeline execution (ListPipelineExecutionSteps, all pages)."""
    from botocore.exceptions import ClientError

    steps: list[dict[str, Any]] = []
    try:
        pages = sm.get_paginator("list_pipeline_execution_steps").paginate(
            PipelineExecutionArn=execution_arn
        )
        for page in pages:
            steps += page.get("PipelineExecutionSteps", [])
    except ClientError as err:
        error = err.response.get("Error", {})
        raise UserError(
            f"Cannot list the steps of the pipeline execution {execution_arn}: "
            f"{error.get('Code', 'error')}: {error.get('Message', err)}"
        ) from None
    return steps


def _step_job(step: dict[str, Any]) -> str | None:
    """The ARN of the training or processing job a step started, if any."""
    metadata = step.get("Metadata") or {}
    for kind in KINDS:
        arn = (metadata.get(kind.metadata) or {}).get("Arn")
        if arn:
            return str(arn)
    return None


def step_job(sm: Any, execution_arn: str, step_name: str) -> str:
    """The name of the job that step ``step_name`` of the execution ran.

    A step that started no training or processing job (a condition, a model
    registration, a tuning job) or never started is refused, naming the steps
    that can be replayed.
    """
    steps = execution_steps(sm, execution_arn)
    replayable = sorted({s["StepName"] for s in steps if _step_job(s)})
    hint = f"replayable steps: {', '.join(replayable) or 'none'}"
    matches = [s for s in steps if s.get("StepName") == step_name]
    if not matches:
        raise UserError(f"Step {step_name!r} is not in the execution {execution_arn}; {hint}.")
    arn = next((a for a in map(_step_job, matches) if a), None)
    if arn is None:
        step = matches[0]
        ran = [key for key, value in (step.get("Metadata") or {}).items() if value]
        what = (
            f"ran a {' and '.join(ran)} step, not a training or processing job"
            if ran
            else f"started no job (status {step.get('StepStatus', 'unknown')})"
        )
        if "TuningJob" in ran:
            what += " (replay one of its training jobs by name)"
        raise UserError(f"Step {step_name!r} {what}; {hint}.")
    return job_name(arn)


def region_of(arn: str) -> str | None:
    """The region of an ARN (``arn:aws:sagemaker:<region>:...``); None for a name."""
    parts = arn.split(":")
    if not arn.startswith("arn:") or len(parts) < 5:
        return None
    return parts[3] or None


# -------------------------------------------------------------------------------- replay


@dataclass
class Replayed:
    """A replayed job: its kind, the cloud job's describe and the executor's ``JobRun``."""

    kind: Kind
    cloud: dict[str, Any]
    run: JobRun


def download(
    kind: Kind, request: dict[str, Any], s3: Any, scratch: Path, out: TextIO
) -> dict[str, Path]:
    """Download every S3 input into ``scratch``; S3 URI -> folder, for the executor's store."""
    uploads: dict[str, Path] = {}
    for index, item in enumerate(inputs(kind, request)):
        if item.uri in uploads:
            continue
        folder = scratch / f"{index}-{item.name}"
        folder.mkdir(parents=True)
        count = download_prefix(s3, item.uri, folder)
        print(f"{item.name} ({item.path}): {count} file(s) from {item.uri}", file=out, flush=True)
        if not count:
            print(
                f"warning: {item.uri} holds no object now: the job fails here as it would in "
                "the cloud.",
                file=out,
                flush=True,
            )
        uploads[item.uri] = folder
    return uploads


def replay(
    sm: Any,
    s3: Any,
    name: str,
    scratch: Path,
    *,
    engine: ContainerEngine | None = None,
    image: str | None = None,
    out: TextIO | None = None,
) -> Replayed:
    """Describe the job ``name``, download its inputs and run its request here.

    ``engine``: an ``executor.ContainerEngine`` to run the image itself (``image``:
    a local image instead of the job's, e.g. the one ``make build-image`` built);
    without one, the image runs as a process of this checkout.
    """
    from executor import ExecutorError, Options, RequestRefused, run_job
    from pipelines.sagemaker.local_pipeline import check_engine, project_images

    out = out or sys.stdout
    if image and engine is None:
        raise UserError("--image names the image a container engine runs: add --container.")
    kind, described = describe(sm, name)
    status = described.get(kind.status_field, "unknown")
    print(f"{kind.label} job {name}: {status} in the cloud", file=out, flush=True)
    request = replay_request(kind, described, replay_name(name))
    left = [key for key in dropped(kind) if key in described]
    print(f"Left out of {kind.create}: {', '.join(left) or 'nothing'}", file=out, flush=True)
    if image:
        kind.set_image(request, image)
    if engine is not None:
        check_engine(engine, kind.image(request), hint=_image_hint(kind.image(request)))
    uploads = download(kind, request, s3, scratch, out)
    options = Options(engine=engine, uploads=uploads)
    images = None if engine is not None else project_images(kind.image(request))
    try:
        run = run_job(kind.create, request, images, options)
    except (ExecutorError, RequestRefused) as err:  # accepted in the cloud, refused here
        raise UserError(f"The {kind.create} request of {name} does not run here: {err}") from None
    return Replayed(kind, described, run)


def _image_hint(image: str) -> str:
    local = image.rsplit("/", 1)[-1]
    return (
        f"Pull it, or build the job's commit (`make build-image`) and pass --image {local}."
        if local != image
        else "Build it (`make build-image`) or pass --image <a local image>."
    )
