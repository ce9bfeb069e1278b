"""``make cloud-run``, ``make cloud-status`` and ``make cloud-fetch``: runs as SageMaker jobs.

    python -m pipelines.sagemaker.cloud_cli run [--local] [--detach | --logs] [-m] [OVERRIDES...]
    python -m pipelines.sagemaker.cloud_cli status SWEEP_ID
    python -m pipelines.sagemaker.cloud_cli fetch SWEEP_ID

``run`` runs the config of the overrides as one training job (``cloud.launch``);
with ``-m`` each job of the sweep is one training job, fanned out by the Hydra
launcher ``hydra/launcher=sagemaker``. ``--local`` sends the very same requests
to the executor here; ``--detach`` starts the jobs and prints the sweep id;
``--logs`` (one job) prints the job's log as it comes.
``status`` lists a sweep's jobs as SageMaker reports them; ``fetch`` downloads
the outputs of its finished jobs into ``outputs/cloud/<sweep id>/<job>/`` and
writes the summary. Exit codes: 0, 1 (a job failed unexpectedly), 2 (a user
error or a job failed on one), 130/143 (interrupted: every started job stopped).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from conf.errors import ConfigError, UserError, report
from pipelines.sagemaker import cloud

# Hydra overrides of a cloud sweep: the jobs run in SageMaker, so the local run's
# callbacks (its checks and its summary of a local sweep folder) do not apply.
CLOUD_SWEEP = [
    "hydra/launcher=sagemaker",
    "~hydra.callbacks.run_checks",
    "~hydra.callbacks.sweep_summary",
]


ENGINES = ("docker", "podman", "finch")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.sagemaker.cloud_cli", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a config (or a -m sweep) as training jobs")
    run.add_argument("--local", action="store_true", help="run the requests here (executor)")
    run.add_argument("--detach", action="store_true", help="start the jobs and return")
    run.add_argument("--logs", action="store_true", help="print the job's log as it comes")
    run.add_argument("-m", "--multirun", action="store_true", help="one job per sweep job")
    run.add_argument("--poll", type=float, default=15.0, help="seconds between status checks")
    run.add_argument("--max-parallel", type=int, default=4, help="jobs running at a time")
    tune = commands.add_parser("tune", help="a standalone tuning job of the `tuning` config")
    tune.add_argument("--local", action="store_true", help="run the request here (executor)")
    tune.add_argument("--poll", type=float, default=30.0, help="seconds between status checks")
    replay = commands.add_parser(
        "replay", help="run a SageMaker training or processing job (or a pipeline step's) here"
    )
    replay.add_argument("job", help="a job's name, or a pipeline execution's ARN")
    replay.add_argument("step", nargs="?", help="the step's name (with an execution's ARN)")
    for command in (run, tune, replay):
        command.add_argument(
            "--container",
            choices=ENGINES,
            default=None,
            help="run the job(s) here in the built image (with --local for run and tune)",
        )
        command.add_argument(
            "--container-flag",
            action="append",
            default=[],
            metavar="FLAG",
            help="extra flag for `<engine> run` (repeatable; write --container-flag=--runtime)",
        )
    replay.add_argument("--image", help="with --container: run this local image instead")
    for name in ("status", "fetch"):
        command = commands.add_parser(name)
        command.add_argument("sweep_id")
        command.add_argument("--poll", type=float, default=15.0)
    args, overrides = parser.parse_known_args(list(argv))
    flags = [o for o in overrides if o.startswith("-")]
    if flags:
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    args.overrides = overrides
    return args


def cmd_run(args: argparse.Namespace) -> int:
    if args.multirun:
        if args.logs:
            raise UserError("--logs follows the log of one job: it cannot go with -m (a sweep).")
        return multirun(args)
    sweep = cloud.launch(
        [args.overrides],
        local=args.local,
        detach=args.detach,
        logs=args.logs,
        max_parallel=args.max_parallel,
        poll_seconds=args.poll,
        container=cloud.Container(args.container, args.container_flag),
    )
    return finish(sweep, args.detach)


def finish(sweep: cloud.Sweep, detached: bool) -> int:
    """The sweep's summary (or how to follow a detached one); the exit code."""
    if detached:
        print(cloud.detached_message(sweep), flush=True)
        return 0
    for job in sweep.jobs:
        if job.folder:
            print(f"Outputs: {job.folder}")
    return cloud.summary(sweep)


def multirun(args: argparse.Namespace) -> int:
    """The sweep through Hydra: its sweeper expands the overrides, the launcher starts jobs."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from conf import CONF_DIR

    sweep_id = cloud.new_sweep_id()
    launcher = [
        f"hydra.launcher.sweep_id={sweep_id}",
        f"hydra.sweep.dir={cloud.OUTPUTS / sweep_id}",
        f"hydra.launcher.local={str(args.local).lower()}",
        f"hydra.launcher.detach={str(args.detach).lower()}",
        f"hydra.launcher.poll_seconds={args.poll}",
    ]
    if args.container:
        flags = ",".join(repr(flag) for flag in args.container_flag)
        launcher += [
            f"hydra.launcher.container={args.container}",
            f"hydra.launcher.container_flags=[{flags}]",
        ]
    if args.max_parallel != 4:
        launcher.append(f"hydra.launcher.max_parallel_jobs={args.max_parallel}")
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(
        task_name="cloud_run", config_search_path=create_config_search_path(str(CONF_DIR))
    )
    cloud.SWEEPS.clear()
    try:
        hydra.multirun(
            config_name="config",
            task_function=_never_called,
            overrides=[*CLOUD_SWEEP, *launcher, *args.overrides],
        )
    except (HydraException, OmegaConfBaseException) as err:
        overrides = " ".join(args.overrides)
        raise ConfigError(f"Invalid overrides {overrides!r}: {err}") from None
    finally:
        GlobalHydra.instance().clear()
    return max((code for _, code in cloud.SWEEPS), default=0)


def _never_called(cfg: Any) -> None:
    raise RuntimeError("The SageMaker launcher runs each job in SageMaker, not in this process.")


def refreshed(sweep_id: str) -> tuple[cloud.Sweep, cloud.Backend]:
    """The sweep's record, each job's status as SageMaker reports it now (a local one's as kept)."""
    sweep = cloud.Sweep.load(sweep_id)
    backend = _backend(sweep)
    if not sweep.local:
        for job in sweep.jobs:
            described = backend.describe(job.name)
            job.status = str(described.get("TrainingJobStatus", job.status))
            job.failure_reason = str(described.get("FailureReason", ""))
    return sweep, backend


def cmd_status(args: argparse.Namespace) -> int:
    sweep, _ = refreshed(args.sweep_id)
    for job in sweep.jobs:
        reason = f": {job.failure_reason}" if job.failure_reason else ""
        print(f"{job.name}  {job.status}  {' '.join(job.overrides) or '-'}{reason}")
    sweep.save()
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    sweep, backend = refreshed(args.sweep_id)
    for job in sweep.jobs:
        if job.status in cloud.TERMINAL:
            cloud.fetch_job(sweep, job, backend)
        else:
            print(f"{job.name}  {job.status}: not finished, fetch it again later")
    sweep.save()
    return cloud.summary(sweep)


def _backend(sweep: cloud.Sweep) -> cloud.Backend:
    if sweep.local:
        return cloud.LocalBackend()
    from conf.errors import compose_checked
    from pipelines.sagemaker.session import region
    from steps import register_schemas

    register_schemas()
    return cloud.AwsBackend(region(compose_checked([])))


def cmd_tune(args: argparse.Namespace) -> int:
    """``make cloud-tune``: one tuning job (each training job a whole run); its best overrides."""
    import tempfile
    import time
    from pathlib import Path

    from conf.errors import ConfigError
    from pipelines.sagemaker import cloud_tuning

    if args.container and not args.local:
        raise UserError(f"--container {args.container} runs the jobs on this machine: add --local.")
    with tempfile.TemporaryDirectory(prefix="cloud-tune-") as tmp:
        planned = cloud.plan([args.overrides], Path(tmp), local=args.local)
        cfg, training = planned.configs[0], planned.requests[0]
        if not cfg.tuning.parameters:
            raise ConfigError(
                f"model '{cfg.model.name}' has no search space (tuning.parameters is empty): "
                "tune a model with one (e.g. model=hgb_poisson)."
            )
        if args.local and cfg.tuning.warm_start_from:
            raise ConfigError(
                "tuning.warm_start_from: a warm start reads its parent tuning jobs' results in "
                "SageMaker, and a tuning job here starts cold. Set tuning.warm_start_from=[] "
                "to tune here."
            )
        name = f"tune-{planned.sweep.sweep_id}"
        request = cloud_tuning.tuning_request(cfg, name, training, training["Tags"])
        cloud.check_request(request, "CreateHyperParameterTuningJob")
        container = cloud.Container(args.container, args.container_flag)
        backend = cloud.backend_for(planned, local=args.local, container=container)
        backend.upload(planned.channels[0], planned.sweep.jobs[0].channel_uri)
        print(f"Tuning job {name} ({'here' if args.local else planned.region})", flush=True)
        status, seen = "", ""
        try:
            with cloud.signals_raise():
                backend.start_tuning(request)
                while status not in cloud.TERMINAL:
                    described = backend.describe_tuning(name)
                    status = str(described.get("HyperParameterTuningJobStatus", ""))
                    counters = described.get("TrainingJobStatusCounters", {})
                    line = f"{name}  {status}  " + " ".join(
                        f"{k}={v}" for k, v in sorted(counters.items()) if v
                    )
                    if line != seen:
                        print(line.rstrip(), flush=True)
                        seen = line
                    if status not in cloud.TERMINAL:
                        time.sleep(args.poll)
        except cloud.Interrupted:
            if status not in cloud.TERMINAL:
                backend.stop_tuning(name)
            print(f"interrupted: stopping the tuning job {name}", flush=True)
            raise
    if status != "Completed":
        reason = described.get("FailureReason") or f"the tuning job ended {status}"
        raise cloud.JobFailed(f"Tuning job {name}: {reason}")
    best = cloud_tuning.best_overrides(described)
    print("Best overrides: " + (" ".join(best) or "(none)"), flush=True)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """``make replay``: a cloud job (or a pipeline step's job) with its inputs, run here."""
    import tempfile
    from pathlib import Path

    from conf.errors import compose_checked
    from executor import ContainerEngine
    from pipelines.sagemaker import replay
    from pipelines.sagemaker.session import region, session

    if args.overrides:
        raise UserError(
            f"replay takes a job name, or a pipeline execution ARN and a step name; "
            f"not also {' '.join(args.overrides)!r}."
        )
    is_execution = ":pipeline/" in args.job and "/execution/" in args.job
    if is_execution and not args.step:
        raise UserError(
            f"{args.job} is a pipeline execution: name the step to replay too "
            f'(make replay ARGS="{args.job} <step name>").'
        )
    if args.step and not is_execution:
        raise UserError(
            f"{args.job!r} is not a pipeline execution ARN "
            "(arn:aws:sagemaker:<region>:<account>:pipeline/<name>/execution/<id>)."
        )
    boto = session(replay.region_of(args.job) or region(compose_checked([])))
    sm = boto.client("sagemaker")
    name = replay.step_job(sm, args.job, args.step) if args.step else replay.job_name(args.job)
    engine = ContainerEngine(args.container, tuple(args.container_flag)) if args.container else None
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        done = replay.replay(
            sm, boto.client("s3"), name, Path(tmp), engine=engine, image=args.image
        )
    run = done.run
    reason = run.describe.get("FailureReason")
    print(f"{run.describe[done.kind.name_field]}  {run.status}" + (f": {reason}" if reason else ""))
    print(f"Job folder (request.json, log.txt, opt_ml): {run.folder}")
    return 0 if run.status == "Completed" else 1


COMMANDS = {
    "run": cmd_run,
    "tune": cmd_tune,
    "replay": cmd_replay,
    "status": cmd_status,
    "fetch": cmd_fetch,
}


def main(argv: Sequence[str] | None = None) -> int:
    from steps import register_schemas

    args = parse_args(sys.argv[1:] if argv is None else argv)
    register_schemas()
    try:
        with cloud.signals_raise():
            return COMMANDS[args.command](args)
    except cloud.Interrupted as err:
        print("interrupted", file=sys.stderr, flush=True)
        return err.exit_code
    except UserError as err:
        return report(err)


if __name__ == "__main__":
    sys.exit(main())
