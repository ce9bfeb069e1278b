"""Deploy the stack in ``infra/`` and write its outputs into the Hydra config.

    python -m infra.cli deploy [--stack-name NAME] [--region REGION] [--project-name ...]
    python -m infra.cli config [--stack-name NAME] [--region REGION] [--output PATH]

``deploy`` creates or updates the CloudFormation stack and waits for it; an
update without changes is reported as up to date, not as an error. ``config``
reads the stack's outputs and writes ``conf/sagemaker/stack.yaml``, which the
default composition picks up when present.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    WaiterError,
)
from omegaconf import OmegaConf

from conf.errors import UserError, report
from infra import TEMPLATE_PATH
from infra.image.record import default_record_path, read_record, write_record
from infra.template import load_template, parameter_defaults
from pipelines.sagemaker import session as aws_session
from pipelines.sagemaker.ecr import tag_exists

DEFAULT_STACK_NAME = "claim-frequency-infra"
CAPABILITIES = ["CAPABILITY_NAMED_IAM"]
POLL_SECONDS = 5.0
MAX_WAIT_SECONDS = 3600
CREDENTIALS_HELP = (
    "No AWS region or credentials found. Set AWS_REGION (or pass --region) and "
    "AWS_PROFILE (or pass --profile, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), "
    "then try again."
)
NO_CHANGES = ("No updates are to be performed",)

# Stack output -> dotted config key written by `config`.
OUTPUT_KEYS: dict[str, str] = {
    "Region": "sagemaker.region",
    "ExecutionRoleArn": "sagemaker.role_arn",
    "DataBucket": "sagemaker.bucket",
    "ConfigBucket": "sagemaker.config_bucket",
    "S3Prefix": "sagemaker.prefix",
    "EcrRepositoryName": "sagemaker.ecr_repository",
    "ModelPackageGroupName": "sagemaker.model_package_group",
    "KmsKeyArn": "sagemaker.kms_key_id",
    "SchedulerRoleArn": "schedule.role_arn",
    "PipelineName": "pipeline.name",
}
# sagemaker.image_uri is never derived from the stack: `make push-image` records
# the image it pushed, and `config` keeps that only while ECR still holds it.

# Command-line flag -> template parameter.
PARAMETER_FLAGS: dict[str, str] = {
    "project_name": "ProjectName",
    "pipeline_name": "PipelineName",
    "model_package_group_name": "ModelPackageGroupName",
    "s3_prefix": "S3Prefix",
    "untagged_image_count": "UntaggedImageCount",
    "tagged_image_count": "TaggedImageCount",
}


class InfraError(UserError):
    """A failure explained by its message; reported without a traceback (exit 2)."""


# ------------------------------------------------------------------ AWS session


def make_session(region: str | None = None, profile: str | None = None) -> boto3.Session:
    """A boto3 session with a region and credentials (the pipelines' one helper)."""
    return aws_session.session(region, profile)


# ----------------------------------------------------------------------- stack


def stack_status(cfn: Any, stack_name: str) -> tuple[str | None, dict[str, str]]:
    """The stack's status and parameter values; ``(None, {})`` if it does not exist."""
    try:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None, {}
        raise
    params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    return stack["StackStatus"], params


def stack_outputs(cfn: Any, stack_name: str) -> dict[str, str]:
    """The stack's outputs by key."""
    try:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in str(exc):
            raise InfraError(
                f"Stack {stack_name!r} not found in {cfn.meta.region_name}: "
                "deploy it first with `make deploy-infra` (or pass --stack-name/--region)."
            ) from None
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def stack_parameters(
    given: Mapping[str, str],
    defaults: Mapping[str, str | None],
    previous: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Parameters for ``create_stack`` (``previous`` is None) or ``update_stack``.

    Given values win. A create passes every other parameter's default
    explicitly; an update keeps every parameter the stack already has at its
    previous value (not the template default), so a plain ``deploy`` never
    renames anything.
    """
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise InfraError(f"Unknown template parameter(s): {', '.join(unknown)}")
    params: list[dict[str, Any]] = []
    for key in sorted(defaults):
        if key in given:
            params.append({"ParameterKey": key, "ParameterValue": str(given[key])})
        elif previous is not None and key in previous:
            params.append({"ParameterKey": key, "UsePreviousValue": True})
        elif previous is None and defaults[key] is not None:
            params.append({"ParameterKey": key, "ParameterValue": defaults[key]})
    return params


def _is_no_change(message: str) -> bool:
    return any(marker in message for marker in NO_CHANGES)


def _failure_events(cfn: Any, stack_name: str, limit: int = 10) -> list[str]:
    """Reasons of the latest failed resource events, newest first."""
    try:
        events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    except (ClientError, BotoCoreError):
        return []
    failed = [e for e in events if e.get("ResourceStatus", "").endswith("FAILED")]
    return [
        f"{e['LogicalResourceId']} ({e.get('ResourceType', '?')}): "
        f"{e['ResourceStatus']} {e.get('ResourceStatusReason', '')}".rstrip()
        for e in failed[:limit]
    ]


def _wait(cfn: Any, waiter_name: str, stack_name: str, poll_seconds: float) -> None:
    delay = max(1, round(poll_seconds))
    config = {"Delay": delay, "MaxAttempts": MAX_WAIT_SECONDS // delay}
    try:
        cfn.get_waiter(waiter_name).wait(StackName=stack_name, WaiterConfig=config)
    except WaiterError as exc:
        status, _ = stack_status(cfn, stack_name)
        details = "\n  ".join(_failure_events(cfn, stack_name)) or str(exc)
        raise InfraError(f"Stack {stack_name!r} ended in {status}:\n  {details}") from None


def deploy_stack(
    cfn: Any,
    stack_name: str,
    template_path: Path = TEMPLATE_PATH,
    parameters: Mapping[str, str] | None = None,
    poll_seconds: float = POLL_SECONDS,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Create or update the stack, wait for it, and return its outputs.

    An update that changes nothing is reported as up to date, not as an error.
    """
    try:
        template_body = Path(template_path).read_text()
    except OSError as exc:
        raise InfraError(f"Cannot read the template '{template_path}': {exc.strerror}.") from None
    defaults = parameter_defaults(load_template(template_path))
    status, previous = stack_status(cfn, stack_name)
    if status in ("ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS"):
        # A first create that failed and rolled back, or a change set never
        # executed: the stack holds no resources and can only be deleted.
        log(f"Stack {stack_name} is in {status} and holds no resources; deleting it first.")
        cfn.delete_stack(StackName=stack_name)
        _wait(cfn, "stack_delete_complete", stack_name, poll_seconds)
        status, previous = None, {}
    if status and status.endswith("_IN_PROGRESS"):
        raise InfraError(f"Stack {stack_name!r} is busy ({status}); try again when it is done.")
    creating = status is None
    request = {
        "StackName": stack_name,
        "TemplateBody": template_body,
        "Parameters": stack_parameters(parameters or {}, defaults, None if creating else previous),
        "Capabilities": CAPABILITIES,
    }
    if creating:
        log(f"Creating stack {stack_name} in {cfn.meta.region_name} ...")
        cfn.create_stack(**request)
        _wait(cfn, "stack_create_complete", stack_name, poll_seconds)
        log(f"Stack {stack_name} created.")
    else:
        log(f"Updating stack {stack_name} in {cfn.meta.region_name} ...")
        try:
            cfn.update_stack(**request)
        except ClientError as exc:
            if not _is_no_change(str(exc)):
                raise
            log(f"Stack {stack_name} is up to date: no changes.")
        else:
            _wait(cfn, "stack_update_complete", stack_name, poll_seconds)
            log(f"Stack {stack_name} updated.")
    return stack_outputs(cfn, stack_name)


# ---------------------------------------------------------------------- config


def config_values(outputs: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Nested config values (``{"sagemaker": {...}, "schedule": {...}, ...}``) from outputs."""
    missing = sorted((set(OUTPUT_KEYS) | {"EcrRepositoryUri"}) - set(outputs))
    if missing:
        raise InfraError(
            f"Stack outputs missing: {', '.join(missing)}. Deploy the current template "
            "with `make deploy-infra` first."
        )
    values: dict[str, dict[str, str]] = {}
    for output, dotted in OUTPUT_KEYS.items():
        group, key = dotted.split(".")
        values.setdefault(group, {})[key] = outputs[output]
    return values


def pushed_image_uri(ecr: Any, repository_uri: str, recorded: str | None) -> str | None:
    """``recorded`` if it is an image of this stack's repository that ECR holds, else None.

    An image URI is written into the config only after ``make push-image``
    pushed it, and kept only while its tag is still in the repository.
    """
    name, _, tag = (recorded or "").partition(":")
    if name != repository_uri or not tag:
        return None
    return recorded if tag_exists(ecr, name.rsplit("/", 1)[-1], tag) else None


def validate_values(values: Mapping[str, Mapping[str, str]]) -> None:
    """Check the values against the config schema, as composition will."""
    from conf.schema import PipelineConfig, SageMakerConfig, ScheduleConfig

    schemas = {"sagemaker": SageMakerConfig, "schedule": ScheduleConfig, "pipeline": PipelineConfig}
    try:
        for group, entries in values.items():
            OmegaConf.merge(OmegaConf.structured(schemas[group]), dict(entries))
    except Exception as exc:  # omegaconf raises several error types
        raise InfraError(f"Stack outputs do not fit the config schema: {exc}") from None


def config_header(stack_name: str, region: str) -> str:
    """The comment that heads ``conf/sagemaker/stack.yaml`` when ``config`` writes it."""
    return (
        "# @package _global_\n"
        f"# Written by `make infra-config` from the CloudFormation stack {stack_name} in\n"
        f"# {region}, and by `make push-image` (sagemaker.image_uri: the image it pushed).\n"
        "# Do not edit: deploy with `make deploy-infra`, then run `make infra-config` again.\n"
        "#\n"
        "# conf/config.yaml loads this file, when present, right after the `sagemaker`\n"
        "# and `schedule` defaults (`optional sagemaker@_global_: stack`): its values\n"
        "# replace the nulls there, while experiments and command-line overrides\n"
        "# still win. The package is _global_ so that one file also carries\n"
        "# schedule.role_arn and pipeline.name; the schema still rejects unknown keys.\n"
    )


def write_config(
    outputs: Mapping[str, str],
    path: Path,
    stack_name: str,
    region: str,
    image_uri: str | None = None,
) -> dict[str, dict[str, str]]:
    """Validate the outputs' config values and write them to ``path``; return the values.

    ``image_uri``, an image known to be in ECR, is written as ``sagemaker.image_uri``.
    """
    values = config_values(outputs)
    if image_uri:
        values["sagemaker"]["image_uri"] = image_uri
    validate_values(values)
    write_record(path, values, config_header(stack_name, region))
    return values


# ------------------------------------------------------------------------- CLI


def _print_outputs(outputs: Mapping[str, str]) -> None:
    width = max((len(k) for k in outputs), default=0)
    for key in sorted(outputs):
        print(f"  {key:<{width}}  {outputs[key]}")


def _parse_parameter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def cmd_deploy(args: argparse.Namespace) -> int:
    """``deploy``: create or update the stack and print its outputs."""
    given = dict(args.parameter or [])
    for attr, param in PARAMETER_FLAGS.items():
        value = getattr(args, attr)
        if value is not None:
            given[param] = str(value)
    session = make_session(args.region, args.profile)
    cfn = session.client("cloudformation")
    outputs = deploy_stack(cfn, args.stack_name, Path(args.template), given, args.poll_seconds)
    print("Outputs:")
    _print_outputs(outputs)
    print("Next: `make infra-config` writes them into conf/sagemaker/stack.yaml.")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """``config``: write the stack's outputs into the Hydra config."""
    session = make_session(args.region, args.profile)
    cfn = session.client("cloudformation")
    outputs = stack_outputs(cfn, args.stack_name)
    path = Path(args.output) if args.output else default_record_path()
    recorded = read_record(path).get("sagemaker", {}).get("image_uri")
    repository_uri = outputs.get("EcrRepositoryUri", "")
    image_uri = pushed_image_uri(session.client("ecr"), repository_uri, recorded)
    values = write_config(outputs, path, args.stack_name, cfn.meta.region_name, image_uri)
    print(f"Wrote {path}:")
    for group, entries in values.items():
        for key, value in entries.items():
            print(f"  {group}.{key} = {value}")
    if image_uri is None:
        print(
            f"No image pushed to {repository_uri} is recorded: sagemaker.image_uri is unset. "
            "Run `make build-image` and `make push-image`, which records it."
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``infra.cli`` argument parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--stack-name", default=DEFAULT_STACK_NAME, help=f"default: {DEFAULT_STACK_NAME}"
    )
    common.add_argument("--region", help="default: AWS_REGION, then the profile's region")
    common.add_argument("--profile", help="AWS profile (default: AWS_PROFILE or the default chain)")

    parser = argparse.ArgumentParser(
        prog="python -m infra.cli",
        description="Deploy the CloudFormation stack in infra/ and write its outputs "
        "into the Hydra config.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    deploy = sub.add_parser(
        "deploy",
        parents=[common],
        help="create or update the stack",
        description="Create or update the stack and print its outputs. On an update, "
        "parameters not given keep their previous values.",
    )
    deploy.add_argument("--project-name", help="ProjectName (template default: claim-frequency)")
    deploy.add_argument("--pipeline-name", help="PipelineName (template default: claim-frequency)")
    deploy.add_argument(
        "--model-package-group-name",
        help="ModelPackageGroupName (template default: claim-frequency)",
    )
    deploy.add_argument("--s3-prefix", help="S3Prefix (template default: claim-frequency)")
    deploy.add_argument(
        "--untagged-image-count", type=int, help="UntaggedImageCount (template default: 5)"
    )
    deploy.add_argument(
        "--tagged-image-count", type=int, help="TaggedImageCount (template default: 20)"
    )
    deploy.add_argument(
        "--parameter",
        action="append",
        type=_parse_parameter,
        metavar="KEY=VALUE",
        help="any other template parameter, e.g. DataBucketName=my-bucket (repeatable)",
    )
    deploy.add_argument("--template", default=str(TEMPLATE_PATH), help=argparse.SUPPRESS)
    deploy.add_argument("--poll-seconds", type=float, default=POLL_SECONDS, help=argparse.SUPPRESS)
    deploy.set_defaults(func=cmd_deploy)

    config = sub.add_parser(
        "config", parents=[common], help="write the stack outputs into the Hydra config"
    )
    config.add_argument("--output", help="default: conf/sagemaker/stack.yaml")
    config.set_defaults(func=cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. As every command of the project: a problem the user can fix
    (config, credentials, a request AWS refused) is one line on stderr and exit 2;
    anything else (the network, the SDK) exit 1.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        return report(exc)
    except (NoCredentialsError, PartialCredentialsError, NoRegionError):
        return report(InfraError(CREDENTIALS_HELP))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = f"{error.get('Code', 'Error')}: {error.get('Message', exc)}"
        if error.get("Code") in {"ExpiredToken", "InvalidClientTokenId", "UnrecognizedClient"}:
            message += f" {CREDENTIALS_HELP}"
        return report(InfraError(message))
    except BotoCoreError as exc:
        return report(exc, exit_code=1)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
