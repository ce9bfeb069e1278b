"""``hydra/launcher=sagemaker``: each job of a multirun becomes one SageMaker training job.

The sweeper's jobs are handed to ``pipelines.sagemaker.cloud.launch`` together:
every job's config is checked and ``sweep.json`` written before the first job
is created, at most ``max_parallel_jobs`` run at a time, and the sweep ends with
the table and ``summary.csv`` of a local multirun. The task function never runs
here: each job runs the image's whole-run mode in its own training job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SageMakerLauncher(Launcher):
    """Launch a sweep's jobs as training jobs (``pipelines.sagemaker.cloud``)."""

    def __init__(
        self,
        max_parallel_jobs: int = 4,
        local: bool = False,
        detach: bool = False,
        poll_seconds: float = 15.0,
        sweep_id: str | None = None,
        container: str | None = None,
        container_flags: Sequence[str] = (),
    ) -> None:
        self.max_parallel_jobs = max_parallel_jobs
        self.local = local
        self.detach = detach
        self.poll_seconds = poll_seconds
        self.sweep_id = sweep_id
        self.container = container
        self.container_flags = list(container_flags)
        self.config: DictConfig | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from pipelines.sagemaker import cloud

        sweep = cloud.launch(
            [list(job) for job in job_overrides],
            local=self.local,
            detach=self.detach,
            max_parallel=self.max_parallel_jobs,
            poll_seconds=self.poll_seconds,
            sweep_id=self.sweep_id,
            container=cloud.Container(self.container, self.container_flags),
        )
        code = 0
        if self.detach:
            print(cloud.detached_message(sweep), flush=True)
        else:
            code = cloud.summary(sweep)
        cloud.SWEEPS.append((sweep, code))
        return [_job_return(job) for job in sweep.jobs]


def _job_return(job: Any) -> JobReturn:
    """A job's result as Hydra records it (a failed job is reported in the summary, not raised)."""
    result = JobReturn(overrides=list(job.overrides), task_name=job.name)
    result.status = JobStatus.COMPLETED
    result.return_value = {"name": job.name, "status": job.status, "reason": job.failure_reason}
    return result
