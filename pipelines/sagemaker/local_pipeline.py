"""``make local-pipeline``: build the pipeline definition as upsert does and run it on this machine.

    python -m pipelines.sagemaker.local_pipeline [--param Name=Value ...] [--allow-any-input]
        [--container docker|podman|finch [--container-flag=FLAG ...]] [--s3 folder|aws]
        [--outputs DIR] [--mounts auto|tmpfs|plain] [--cold] [OVERRIDES...]
    python -m executor clean [--keep N] [--outputs DIR]      (make local-pipeline-clean)

The definition is built by the same code as ``make upsert-pipeline`` (same
overrides, config channel and JSON), with local placeholders for unset account
values (role, bucket, image); the ``--param`` values pass the same pre-flight as
``make start-pipeline``. The executor runs it, given the config channel to put
in its store and how the project's image runs here: its ENTRYPOINT with this
interpreter and the project on ``PYTHONPATH`` (or the image itself with
``--container``). Outputs go to ``outputs/pipelines/s3/<bucket>/<key>``, the
execution record to ``outputs/pipelines/<execution id>/execution.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

from conf.contract import ENTRYPOINT, METRICS_FILE
from conf.errors import UserError, report
from executor import (
    OUTPUTS,
    ContainerEngine,
    ExecutorError,
    LocalImage,
    LocalImages,
    Options,
    WarmImage,
    run_definition,
    warm_image,
)
from steps.runtime.interrupt import Interrupted, interrupt, signals_raise

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDERS = {
    "role_arn": "arn:aws:iam::000000000000:role/local-pipeline",
    "bucket": "claim-frequency-local",
}
LOCAL_REGION = "us-east-1"
# What the image's command loads before its work: the libraries of every job command.
WARM_MODULES = (
    "conf.channel",
    "steps.prepare",
    "steps.train",
    "steps.evaluate",
    "steps.plots",
    "sklearn.ensemble",
    "sklearn.linear_model",
)
# Files among the outputs worth listing at the end.
HIGHLIGHT = (".png", METRICS_FILE)


class Built(NamedTuple):
    """The definition as upsert builds it, and what running it here needs."""

    definition: dict[str, Any]
    channel_uri: str
    name: str
    image: str
    region: str


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Flags wherever they are; everything else is a Hydra override."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.sagemaker.local_pipeline", description=__doc__
    )
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--container", choices=("docker", "podman", "finch"), default=None)
    parser.add_argument(
        "--container-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra flag for `<engine> run` (repeatable; write --container-flag=--runtime)",
    )
    parser.add_argument(
        "--allow-any-input",
        action="store_true",
        help="accept an InputDataUri outside the project's prefix (as make start-pipeline)",
    )
    parser.add_argument("--s3", choices=("folder", "aws"), default="folder")
    parser.add_argument("--outputs", type=Path, default=OUTPUTS, help=f"default: {OUTPUTS}")
    parser.add_argument("--mounts", choices=("auto", "tmpfs", "plain"), default="auto")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="start every job as a fresh process (default: forked from a warm image process)",
    )
    args, overrides = parser.parse_known_args(argv)
    flags = [o for o in overrides if o.startswith("-")]
    if flags:
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    args.overrides = overrides
    return args


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``Name=Value`` items as a dict."""
    from pipelines.sagemaker import aws

    return aws.parse_params(items)


def placeholder_overrides(cfg: Any) -> list[str]:
    """Local placeholders for the unset account values (also for ``--local`` cloud runs)."""
    sm = cfg.sagemaker
    out = [f"sagemaker.{k}={v}" for k, v in PLACEHOLDERS.items() if not sm[k]]
    if not sm.image_uri:
        out.append(f"sagemaker.image_uri={sm.ecr_repository}:local")
    return out


def build(overrides: Sequence[str], channel: Path) -> Built:
    """The definition, built as upsert builds it, with its config channel written to ``channel``."""
    from pipelines.sagemaker import aws, cli

    cfg = cli.compose_checked(overrides)
    overrides = [*overrides, *placeholder_overrides(cfg)]
    cfg = cli.compose_checked(overrides)
    aws.check_config(cfg)
    aws.check_tunable(cfg)
    region = str(cfg.sagemaker.region or os.environ.get("AWS_REGION") or LOCAL_REGION)
    text, uri = cli.build_definition(cfg, overrides, channel, region)
    return Built(
        json.loads(text), uri, str(cfg.pipeline.name), str(cfg.sagemaker.image_uri), region
    )


def project_images(image_uri: str) -> LocalImages:
    """The project's image as a local process: its ENTRYPOINT with the project importable.

    The job runner sets ``OPT_ML_ROOT`` to the job's own tree, which the entrypoint reads.
    """
    image = LocalImage(
        entrypoint=tuple(ENTRYPOINT), env={"PYTHONPATH": _python_path()}, workdir=ROOT
    )
    return LocalImages({image_uri: image})


def image_module() -> str | None:
    """The module the image's ENTRYPOINT runs (``python -m MODULE``), for a warm process."""
    if ENTRYPOINT[:2] in (("python", "-m"), ("python3", "-m")):
        return ENTRYPOINT[2]
    return None


def _python_path() -> str:
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)


def check_engine(
    engine: ContainerEngine,
    image: str,
    hint: str = "Build it (`make build-image`) and pass its name as sagemaker.image_uri=<image>.",
) -> None:
    """Refuse ``--container`` before anything runs when its engine or the image is not here.

    ``hint``: how to get the image, when it is not here.
    """
    tool = engine.tool
    if shutil.which(tool) is None:
        raise UserError(
            f"--container {tool}: {tool} is not installed (or not on PATH). Install it, or run "
            "the jobs as local processes (no --container)."
        )

    def run(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tool, *arguments], capture_output=True, text=True, timeout=120, check=False
        )

    info = run("info")
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        raise UserError(
            f"--container {tool}: the engine does not answer (`{tool} info`: {reason}). "
            "Start it, or run the jobs as local processes (no --container)."
        )
    if run("image", "inspect", image).returncode != 0:
        raise UserError(f"--container {tool}: the image {image} is not built here. {hint}")


def execute(args: argparse.Namespace) -> int:
    from pipelines.sagemaker.preflight import check_start
    from steps.runtime import speed
    from steps.runtime.io import check_writable

    params = parse_params(args.param)
    check_writable(args.outputs)
    engine = ContainerEngine(args.container, tuple(args.container_flag)) if args.container else None
    with ExitStack() as stack:
        warm: WarmImage | None = None
        if engine is None and not args.cold and speed.enabled():
            # Loads the jobs' libraries while the definition builds (a start-up speed-up:
            # CLAIM_FREQUENCY_SPEEDUPS=0 turns it off with the others).
            env = {**os.environ, "PYTHONPATH": _python_path()}
            warm = stack.enter_context(
                warm_image(WARM_MODULES, cwd=ROOT, env=env, module=image_module())
            )
        channel = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="channel-")))
        print("Building the pipeline definition (as make upsert-pipeline does)...", flush=True)
        speed.pause_collector()  # the SDK loads without the collector's passes
        try:
            built = build(args.overrides, channel)
            values = check_start(
                built.definition, params, channel, allow_any_input=args.allow_any_input
            )
        finally:
            speed.resume_collector()
        if engine is not None:
            check_engine(engine, built.image)
        options = Options(
            outputs=args.outputs,
            store=args.s3,
            engine=engine,
            mounts=args.mounts,
            region=built.region,
            uploads={built.channel_uri: channel},
            warm=warm,
            progress=sys.stdout,
        )
        result = run_definition(
            built.definition, values, project_images(built.image), options, name=built.name
        )
        print(f"\nExecution {result.status}: {result.record_path}", flush=True)
        if result.signal is not None:
            interrupt(result.signal)  # the jobs are stopped; leave through the cleanup
    lines = result.output_lines(HIGHLIGHT)
    if lines:
        print("Outputs:\n" + "\n".join(lines))
    return 0 if result.status == "Succeeded" else 1


def main(argv: Sequence[str] | None = None) -> int:
    """The command; SIGINT or SIGTERM end it with ``interrupted`` (130 or 143)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with signals_raise():
            return execute(parse_args(argv))
    except (UserError, ExecutorError) as err:
        return report(err)
    except Interrupted as err:
        print("interrupted", file=sys.stderr, flush=True)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
