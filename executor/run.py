"""``make local-pipeline``: build the pipeline definition as upsert does and execute it here.

    python -m executor [--param Name=Value ...] [--container docker|podman|finch]
                                 [--s3 folder|aws] [--mounts auto|tmpfs|plain] [OVERRIDES...]
    python -m executor --definition FILE.json [--image URI=COMMAND] ...
    python -m executor clean [--keep N] [--all]

The definition is built by the same code as ``make upsert-pipeline`` (same
overrides, config channel and JSON), with local placeholders for unset account
values (role, bucket, image); the ``--param`` values pass the same pre-flight as
``make start-pipeline``. Outputs go to ``outputs/pipelines/s3/<bucket>/<key>``
and the execution record to ``outputs/pipelines/<execution id>/execution.json``.

This module is the one bridge to the project (config, definition builder,
pre-flight); the executor's other modules know only the definition.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from executor.definition import parameters as parameters_of
from executor.definition import steps as steps_of
from executor.engine import Execution, Registry, new_execution_id, run_in_thread
from executor.errors import ExecutorError
from executor.images import ContainerEngine, LocalImage, LocalImages, project_images
from executor.jobs import Runner, isolation_mode
from executor.record import RECORD
from executor.storage import BotoStore, FolderStore, S3Endpoint, Store
from executor.table import LiveTable
from executor.warm import WarmImage, loading

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = Path("outputs/pipelines")
STORE = "s3"
PLACEHOLDERS = {
    "role_arn": "arn:aws:iam::000000000000:role/local-pipeline",
    "bucket": "claim-frequency-local",
}
LOCAL_REGION = "us-east-1"
# What the project image's command loads before its work (``warm.py``): the libraries
# of every job command.
WARM_MODULES = (
    "conf.channel",
    "steps.prepare",
    "steps.train",
    "steps.evaluate",
    "steps.plots",
    "sklearn.ensemble",
    "sklearn.linear_model",
)
# Interesting files among the outputs, listed at the end.
HIGHLIGHT = (".png", "metrics.json")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m executor", description=__doc__)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--container", choices=("docker", "podman", "finch"), default=None)
    parser.add_argument(
        "--container-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra flag for `<engine> run` (repeatable)",
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
        "--definition",
        type=Path,
        default=None,
        help="run this definition JSON instead of building one",
    )
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="URI=COMMAND",
        help="with --definition: run image URI as this local command",
    )
    parser.add_argument("--name", default=None, help="pipeline name (with --definition)")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="start every job as a fresh process (default: from a warm image process)",
    )
    args, overrides = parser.parse_known_args(argv)
    flags = [o for o in overrides if o.startswith("--")]
    if flags:
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    args.overrides = overrides
    return args


def parse_params(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ExecutorError(f"--param {item!r}: write it as Name=Value.")
        out[name.strip()] = value
    return out


# ----------------------------------------------------------------- the project bridge


def placeholder_overrides(cfg: Any) -> list[str]:
    """Local placeholders for the account values that are unset."""
    sm = cfg.sagemaker
    out = [f"sagemaker.{k}={v}" for k, v in PLACEHOLDERS.items() if not sm[k]]
    if not sm.image_uri:
        out.append(f"sagemaker.image_uri={sm.ecr_repository}:local")
    return out


def build(overrides: list[str], channel: Path) -> tuple[dict[str, Any], str, str, str, str]:
    """(definition, channel URI, pipeline name, image URI, region), built as upsert builds it."""
    from pipelines.sagemaker import aws, cli

    cfg = cli.compose_checked(overrides)
    overrides = [*overrides, *placeholder_overrides(cfg)]
    cfg = cli.compose_checked(overrides)
    aws.check_config(cfg)
    aws.check_tunable(cfg)
    region = str(cfg.sagemaker.region or os.environ.get("AWS_REGION") or LOCAL_REGION)
    text, uri = cli.build_definition(cfg, overrides, channel, region)
    return json.loads(text), uri, str(cfg.pipeline.name), str(cfg.sagemaker.image_uri), region


def image_entrypoint() -> tuple[str, ...]:
    """The ENTRYPOINT of the project's image, as the definition builder knows it."""
    from pipelines.sagemaker import builder

    return tuple(builder.ENTRYPOINT)


def preflight(
    definition: dict[str, Any], params: dict[str, str], channel: Path, allow_any_input: bool
) -> dict[str, str]:
    """The start-time checks of ``make start-pipeline``; the values it would send."""
    from pipelines.sagemaker.preflight import check_start

    return check_start(definition, params, channel, allow_any_input=allow_any_input)


def is_user_error(err: BaseException) -> bool:
    """Ours, or the project's user-error type (re-exported by the pipeline commands)."""
    if isinstance(err, ExecutorError):
        return True
    cli = sys.modules.get("pipelines.sagemaker.cli")
    return cli is not None and isinstance(err, cli.UserError)


# --------------------------------------------------------------------------- running


def make_store(mode: str, outputs: Path) -> Store:
    if mode == "aws":
        import boto3

        return BotoStore(boto3.client("s3"))
    return FolderStore(outputs / STORE)


def job_environment(endpoint: str | None, region: str, folder: Path) -> dict[str, str]:
    """What jobs see of AWS: the local store's endpoint and dummy credentials (folder mode)."""
    if endpoint is None:
        return {}
    config = folder / "aws-config"
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


def outputs_summary(record: dict[str, Any], store: Store) -> list[str]:
    """Where each processing output landed, with the interesting files in it."""
    lines = []
    for name, step in record["Local"]["Steps"].items():
        if step.get("StepStatus") != "Succeeded":
            continue
        outputs = (step.get("Properties") or {}).get("ProcessingOutputConfig", {}).get("Outputs")
        for output in outputs or []:
            uri = output["S3Output"]["S3Uri"]
            path = store.local_path(uri)
            where = f"{uri} -> {path}" if path else uri
            lines.append(f"  {name}/{output['OutputName']}: {where}")
            if path and path.is_dir():
                for file in sorted(path.rglob("*")):
                    if file.name.endswith(HIGHLIGHT):
                        lines.append(f"      {file}")
    return lines


def start_warm_image(stack: ExitStack) -> WarmImage:
    """The project image's command with its libraries loaded, while the definition builds."""
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="warm-")))
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    warm = WarmImage(
        sys.executable,
        None,  # the image's command, once the definition is built
        list(WARM_MODULES),
        ROOT,
        {**os.environ, "PYTHONPATH": path},
        folder,
    )
    stack.callback(warm.close)
    return warm


def execute(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    # Jobs run in folders of their own: every path is absolute from here on.
    outputs: Path = args.outputs.resolve()
    with ExitStack() as stack:
        warm = None
        # Forking a process with these libraries loaded is safe on Linux; elsewhere jobs
        # start cold (macOS's system frameworks do not survive a fork reliably).
        local = args.definition is None and args.container is None
        if local and not args.cold and sys.platform == "linux":
            warm = start_warm_image(stack)
        if args.definition is not None:
            definition = json.loads(args.definition.read_text())
            channel_uri = None
            name = args.name or "local-pipeline"
            region = os.environ.get("AWS_REGION") or LOCAL_REGION
            images = LocalImages({})
            for item in args.image:
                uri, sep, command = item.partition("=")
                if not sep:
                    raise ExecutorError(f"--image {item!r}: write it as URI=COMMAND.")
                images.images[uri] = LocalImage(tuple(shlex.split(command)))
            channel = None
        else:
            channel = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="channel-")))
            print("Building the pipeline definition (as make upsert-pipeline does)...", flush=True)
            with loading():
                definition, channel_uri, name, image, region = build(args.overrides, channel)
                entrypoint = image_entrypoint()
                images = project_images(image, ROOT, entrypoint)
                if warm is not None and entrypoint[:2] in (("python", "-m"), ("python3", "-m")):
                    warm.module = entrypoint[2]
                params = preflight(definition, params, channel, args.allow_any_input)
        # The graph and the parameters are checked before anything is written.
        steps_of(definition)
        parameters_of(definition, params)
        store = make_store(args.s3, outputs)
        if channel_uri is not None and channel is not None:
            store.upload(channel, channel_uri)
        execution_id = new_execution_id()
        folder = outputs / execution_id
        folder.mkdir(parents=True, exist_ok=True)
        endpoint = None
        if isinstance(store, FolderStore):
            endpoint = stack.enter_context(S3Endpoint(store)).url
        engine = (
            ContainerEngine(args.container, tuple(args.container_flag)) if args.container else None
        )
        runner = Runner(
            store=store,
            images=images,
            jobs_dir=folder / "jobs",
            region=region,
            engine=engine,
            isolation="bind mounts" if engine else isolation_mode(args.mounts),
            job_env=job_environment(endpoint, region, folder),
            warm=warm,
        )
        registry_client = None
        if args.s3 == "aws":
            import boto3

            registry_client = boto3.client("sagemaker", region_name=region)
        table = LiveTable()
        execution = Execution(
            definition,
            params,
            runner,
            folder,
            pipeline_name=name,
            execution_id=execution_id,
            store=store,
            registry=Registry(folder / "registry", registry_client),
            cache_root=outputs,
            on_change=table,
        )
        print(
            f"Execution {execution_id} ({runner.isolation}, "
            f"{engine.tool if engine else 'local processes'}, S3: {args.s3})",
            flush=True,
        )
        thread, result = run_in_thread(execution)

        def stop(signum: int, _frame: object) -> None:
            print(f"\nStopping ({signal.Signals(signum).name})...", file=sys.stderr, flush=True)
            execution.stop()

        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while thread.is_alive():
                thread.join(0.2)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        status = result[0] if result else "Failed"
        table.final(execution.record)
        print(f"\nExecution {status}: {folder / RECORD}")
        lines = outputs_summary(execution.record.data, store)
        if lines:
            print("Outputs:\n" + "\n".join(lines))
        return 0 if status == "Succeeded" else 1


# ----------------------------------------------------------------------- housekeeping


def clean(argv: Sequence[str], outputs: Path = OUTPUTS) -> int:
    """Remove old local executions and what they stored in the local store.

    Objects that a kept execution still uses (for example through a cache hit) stay.
    """
    parser = argparse.ArgumentParser(prog="python -m executor clean")
    parser.add_argument("--keep", type=int, default=0, help="keep the newest N executions")
    parser.add_argument("--outputs", type=Path, default=outputs, help=f"default: {outputs}")
    args = parser.parse_args(argv)
    root: Path = args.outputs
    records = sorted(root.glob(f"*/{RECORD}"), key=lambda p: p.stat().st_mtime, reverse=True)
    keep, remove = records[: args.keep], records[args.keep :]
    used = set().union(*(_stored_prefixes(p) for p in keep))
    store = (root / STORE).resolve()
    for path in remove:
        for prefix in sorted(_stored_prefixes(path) - used):
            target = (store / prefix).resolve()
            if target.is_relative_to(store) and target != store and target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
                _prune(target.parent, store)
        shutil.rmtree(path.parent)
    print(f"Removed {len(remove)} local execution(s) and their stored outputs; kept {len(keep)}.")
    return 0


def _stored_prefixes(path: Path) -> set[str]:
    """The store prefixes an execution's steps wrote or reused (outputs, training job folders)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["clean"]:
            return clean(argv[1:])
        args = parse_args(argv)
        return execute(args)
    except Exception as err:
        if is_user_error(err):
            print(f"error: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
            return 2
        raise
