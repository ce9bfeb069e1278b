"""The launcher's config, registered as ``hydra/launcher=sagemaker``.

No ``from __future__ import annotations`` here: Hydra's plugin scan executes this
module outside ``sys.modules``, where a dataclass cannot resolve string annotations.
"""

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore


@dataclass
class SageMakerLauncherConf:
    """How a cloud sweep runs: jobs at a time, here or in SageMaker, detached or followed."""

    _target_: str = "hydra_plugins.hydra_sagemaker_launcher.sagemaker_launcher.SageMakerLauncher"
    # Training jobs running at a time (the rest wait for one to end).
    max_parallel_jobs: int = 4
    # Send each job's request to the executor on this machine instead of SageMaker.
    local: bool = False
    # Start the jobs and return (follow with `make cloud-status`).
    detach: bool = False
    # Seconds between status checks.
    poll_seconds: float = 15.0
    # The sweep's id (null: a new one); `make cloud-run` sets it with hydra.sweep.dir.
    sweep_id: str | None = None
    # With local: run each job in the built image with this engine (docker, podman, finch).
    container: str | None = None
    # Extra flags for `<engine> run`.
    container_flags: list[str] = field(default_factory=list)


ConfigStore.instance().store(
    group="hydra/launcher",
    name="sagemaker",
    node=SageMakerLauncherConf,
    provider="hydra_sagemaker_launcher",
)
