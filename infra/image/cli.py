"""The command line of ``python -m infra.image``: one action per subcommand."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from conf import merge_overrides
from conf.contract import JOBS, TRAIN
from conf.errors import UserError, report
from infra import image as package
from infra.image import base, build, run_local
from infra.image.config import sagemaker_config
from infra.image.engine import DEFAULT_PLATFORM, detect_engine
from infra.image.record import default_record_path
from infra.image.tag import image_name, source_tag
from steps import register_schemas


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The action and its flags; the rest are Hydra overrides (and run-local's job)."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.image",
        description=(package.__doc__ or "").split("\n", 1)[0],
    )
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("base", help="build the stand-in base image from Debian packages")
    p.add_argument("--name", default=base.STANDIN_NAME, help=f"default {base.STANDIN_NAME}")
    p.add_argument("--suite", default=base.STANDIN_SUITE, help=f"default {base.STANDIN_SUITE}")

    p = sub.add_parser("build", help="build the job image from this source")
    p.add_argument("--base", default=None, help="base image (default: the Dockerfile's)")
    p.add_argument("--ca-bundle", type=Path, default=None, help="CA bundle for a TLS proxy")
    p.add_argument("--platform", default=DEFAULT_PLATFORM, help="target platform")
    p.add_argument("rest", nargs="*", metavar="OVERRIDES", help="Hydra overrides")

    sub.add_parser("engine", help="print the container engine and the flags it gets here")

    p = sub.add_parser("name", help="print the image name for this source")
    p.add_argument("rest", nargs="*", metavar="OVERRIDES", help="Hydra overrides")

    p = sub.add_parser("push", help="push the image built from this source to ECR")
    p.add_argument("--allow-dirty", action="store_true", help="push a -dirty-<hash> image")
    p.add_argument("--record", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("rest", nargs="*", metavar="OVERRIDES", help="Hydra overrides")

    p = sub.add_parser("run-local", help="run a job in the image on temporary /opt/ml trees")
    p.add_argument("--image", default=None, help="image (default: built from this source)")
    p.add_argument("--platform", default=DEFAULT_PLATFORM, help="target platform")
    p.add_argument("rest", nargs="*", metavar="[JOB] OVERRIDES", help="job, Hydra overrides")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch one action; a user error is one line on stderr and exit code 2."""
    register_schemas()  # before any config is composed
    args = parse_args(argv)
    try:
        return dispatch(args)
    except UserError as err:
        return report(err)


def dispatch(args: argparse.Namespace) -> int:
    """Run the action ``args`` name; return its exit code."""
    if args.action == "engine":
        engine = detect_engine()
        print(" ".join([*engine.cmd(), *engine.limit_flags]))
        return 0
    if args.action == "base":
        base.build_base(detect_engine(), args.name, args.suite)
        return 0
    rest = list(args.rest)
    if args.action == "run-local":
        job = rest.pop(0) if rest and rest[0] in JOBS else TRAIN
        overrides = merge_overrides(list(run_local.RUN_LOCAL_DEFAULTS), rest)
        engine = detect_engine()
        image = args.image or image_name(sagemaker_config(rest).ecr_repository, source_tag())
        return run_local.run_local(engine, image, job, overrides, args.platform)
    if args.action == "name":
        print(image_name(sagemaker_config(rest).ecr_repository, source_tag()))
    elif args.action == "build":
        engine = detect_engine()
        build.check_ca_bundle(args.ca_bundle)
        source = source_tag()
        image = image_name(sagemaker_config(rest).ecr_repository, source)
        build.build(engine, image, source, args.platform, args.base, args.ca_bundle)
    else:
        sagemaker = sagemaker_config(rest)
        source = source_tag()
        build.check_pushable(source, args.allow_dirty)
        record = args.record or default_record_path()
        build.push(detect_engine(), sagemaker, source, record)
    return 0
