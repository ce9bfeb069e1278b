"""``python -m pipelines.sagemaker.cli definition|upsert|start|schedule [flags] [hydra overrides]``.

The overrides compose the same config a local run uses; ``definition`` and
``upsert`` build the SageMaker Pipeline from it, ``start`` starts an execution,
``schedule`` creates, updates or removes the retraining schedule.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from conf import errors
from conf.errors import ConfigError, UserError, report
from pipelines.sagemaker import aws, ecr, sdk
from pipelines.sagemaker.session import region
from steps import register_schemas
from steps.runtime import speed

DEFAULT_OUT = Path("outputs/pipeline-definition.json")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.sagemaker.cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    overrides_help = "Hydra overrides, e.g. pipeline=tune sagemaker.role_arn=arn:..."

    p = sub.add_parser("definition", help="write the pipeline definition JSON (no AWS call)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.add_argument("overrides", nargs="*", help=overrides_help)

    p = sub.add_parser("upsert", help="upload the config and create or update the pipeline")
    p.add_argument("overrides", nargs="*", help=overrides_help)

    p = sub.add_parser("start", help="start an execution")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="repeatable; an empty HydraOverrides or InputDataUri clears it (sent as 'none')",
    )
    p.add_argument(
        "--allow-any-input",
        action="store_true",
        help="accept an InputDataUri outside the project's S3 prefix (the role must read it)",
    )
    p.add_argument("--wait", action="store_true", help="print step status until it ends")
    p.add_argument("--poll", type=float, default=30.0, help="seconds between polls (--wait)")
    p.add_argument("--timeout", type=float, default=6 * 3600, help="seconds to wait at most")
    p.add_argument("overrides", nargs="*", help=overrides_help)

    p = sub.add_parser("schedule", help="create or update the retraining schedule")
    p.add_argument("--remove", action="store_true", help="delete the schedule")
    p.add_argument("overrides", nargs="*", help=overrides_help)
    # Flags may come before or after the overrides: known flags are taken
    # wherever they are, and the rest are the overrides.
    args, rest = parser.parse_known_args(argv)
    unknown = [item for item in rest if item.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [*args.overrides, *rest]
    return args


def build_definition(
    cfg: DictConfig, overrides: Sequence[str], folder: Path, region_name: str
) -> tuple[str, str]:
    """Write the config channel to ``folder`` and build the definition; no AWS call.

    Returns the definition JSON and the channel's S3 URI.
    """
    import boto3

    sdk.sagemaker_env(region_name, offline=True)
    from pipelines.sagemaker.builder import definition

    uri = aws.write_config_channel(cfg, list(overrides), folder)
    with sdk.quiet_sdk():
        session = sdk.pipeline_session(cfg, boto3.Session(region_name=region_name))
        return definition(cfg, session, uri), uri


def cmd_definition(args: argparse.Namespace, cfg: DictConfig) -> None:
    from steps.runtime.io import check_writable, write_text_atomically

    out: Path = args.out
    if out.exists() and not args.force:
        raise UserError(f"{out} exists: pass --force to overwrite it, or choose --out.")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: name a file, e.g. --out {out}/definition.json.")
    check_writable(out.parent)
    aws.check_config(cfg)
    aws.check_tunable(cfg)
    region_name = region(cfg)
    with aws.temporary_folder() as tmp:
        definition, uri = build_definition(cfg, args.overrides, Path(tmp), region_name)
    write_text_atomically(out, aws.definition_text(definition))
    print(f"Definition: {out}\nConfig channel (uploaded at upsert): {uri}")


def cmd_upsert(args: argparse.Namespace, cfg: DictConfig) -> None:
    aws.check_config(cfg)
    aws.check_tunable(cfg)
    region_name = region(cfg)
    session = aws.check_credentials(region_name)
    with aws.temporary_folder() as tmp:
        definition, uri = build_definition(cfg, args.overrides, Path(tmp), region_name)
        count = aws.upload_channel(session.client("s3"), Path(tmp), uri)
    print(f"Config channel: {uri} ({count} files)")
    arn, diff = aws.upsert(cfg, session.client("sagemaker"), definition)
    print(f"Pipeline: {arn}\nChanges since the deployed version: {diff}")
    kept = ecr.keep_deployed(session.client("ecr"), str(cfg.sagemaker.image_uri))
    if kept:
        print(f"Image {cfg.sagemaker.image_uri} tagged {kept}: ECR's lifecycle policy keeps it.")


def cmd_start(args: argparse.Namespace, cfg: DictConfig) -> None:
    params = aws.parse_params(args.param)
    session = aws.check_credentials(region(cfg))
    client = session.client("sagemaker")
    _, values = aws.checked_params(cfg, session, params, allow_any_input=args.allow_any_input)
    arn = aws.start(cfg, client, values)
    print(f"Execution: {arn}")
    if args.wait:
        status = aws.wait(client, arn, poll_seconds=args.poll, timeout_seconds=args.timeout)
        if status != "Succeeded":
            raise SystemExit(1)


def cmd_schedule(args: argparse.Namespace, cfg: DictConfig) -> None:
    session = aws.check_credentials(region(cfg))
    scheduler = session.client("scheduler")
    if args.remove:
        removed = aws.remove_schedule(cfg, scheduler)
        print(f"Schedule {cfg.schedule.name}: {'removed' if removed else 'did not exist'}")
        return
    if not cfg.schedule.role_arn:
        raise ConfigError(
            "Set schedule.role_arn (the role EventBridge Scheduler assumes to start the pipeline)."
        )
    # The schedule starts the pipeline with these values unattended: check them now.
    params = {str(k): str(v) for k, v in cfg.schedule.parameters.items()}
    described, values = aws.checked_params(cfg, session, params)
    arn = described["PipelineArn"]
    action = aws.put_schedule(cfg, scheduler, arn, values)
    print(f"Schedule {cfg.schedule.name} {action}: {cfg.schedule.expression} -> {arn}")


COMMANDS = {
    "definition": cmd_definition,
    "upsert": cmd_upsert,
    "start": cmd_start,
    "schedule": cmd_schedule,
}


def compose_checked(overrides: Sequence[str]) -> DictConfig:
    """The command line's config, once every model and data source has stored its schema."""
    register_schemas()
    return errors.compose_checked(overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    speed.pause_collector()  # the SDK loads without the collector's passes
    register_schemas()
    try:
        cfg = compose_checked(args.overrides)
        COMMANDS[args.command](args, cfg)
    except UserError as err:
        return report(err)
    finally:
        speed.resume_collector(freeze=False)
    return 0


if __name__ == "__main__":
    speed.exit_now(main())
