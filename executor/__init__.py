"""Run a SageMaker Pipeline definition, or one job's request, on this machine as the service would.

The executor knows the definition language and SageMaker's job contracts (the
``/opt/ml`` layout, ``hyperparameters.json``, ``model.tar.gz``, the failure
file), never the code that runs in the jobs: everything about a job comes from
the JSON. The one thing a caller adds is how an image runs here (``LocalImages``:
image URI -> local command), which a container engine (``ContainerEngine``) can
replace. It imports the standard library and botocore; boto3 (``store='aws'``)
and optuna (Bayesian tuning) only when used. See README.md beside this file.

The API::

    run_definition(definition, parameters=None, images=None, options=None, *, name=...)
        -> ExecutionResult(status, execution_id, folder, record, store)
    run_job(operation, request, images=None, options=None)
        -> JobRun(status, describe, local, folder)
    warm_image(preload, *, cwd, env=None, module=None)  # context manager -> WarmImage | None
    clean(outputs=OUTPUTS, keep=0) -> (removed, kept)
    check_request(kind, request) -> list[str]  # what the service would refuse in a request
    check_step(step, values) -> list[str]      # the same for a definition step started with values

``Options`` holds the outputs folder, the store (``folder`` or ``aws``), the
container engine, the mounts, the region, folders to upload first, the warm
image process, where progress goes and whether signals stop the jobs.

Errors: ``ExecutorError`` (``DefinitionError``, ``ParameterError``) before
anything runs; ``RequestRefused`` for a request the service would refuse.

Modules: ``api`` (the above), ``expressions``, ``definition``, ``properties``
(what ``Get`` may read), ``retry`` (RetryPolicies), ``rules`` and ``service_rules``
(the service's request checks), ``storage``, ``images``, ``jobs``, ``dispatch``,
``tuning``, ``cache``, ``record``, ``engine``, ``table``, ``warm``, ``sandbox`` and
``run`` (``python -m executor``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from executor import service_rules
    from executor.api import (
        OUTPUTS,
        ExecutionResult,
        JobRun,
        Options,
        clean,
        run_definition,
        run_job,
        warm_image,
    )
    from executor.definition import parameters as check_parameters
    from executor.errors import DefinitionError, ExecutorError, ParameterError, RequestRefused
    from executor.images import ContainerEngine, LocalImage, LocalImages
    from executor.rules import problems as check_request
    from executor.rules import step_problems as check_step
    from executor.warm import WarmImage

# Name -> (module, attribute): loaded on first use, so that a job-side helper
# (``executor.warm``, ``executor.sandbox``) or a rules check loads only what it needs.
_EXPORTS = {
    "OUTPUTS": ("executor.api", "OUTPUTS"),
    "ContainerEngine": ("executor.images", "ContainerEngine"),
    "DefinitionError": ("executor.errors", "DefinitionError"),
    "ExecutionResult": ("executor.api", "ExecutionResult"),
    "ExecutorError": ("executor.errors", "ExecutorError"),
    "JobRun": ("executor.api", "JobRun"),
    "LocalImage": ("executor.images", "LocalImage"),
    "LocalImages": ("executor.images", "LocalImages"),
    "Options": ("executor.api", "Options"),
    "ParameterError": ("executor.errors", "ParameterError"),
    "RequestRefused": ("executor.errors", "RequestRefused"),
    "WarmImage": ("executor.warm", "WarmImage"),
    "check_parameters": ("executor.definition", "parameters"),
    "check_request": ("executor.rules", "problems"),
    "check_step": ("executor.rules", "step_problems"),
    "clean": ("executor.api", "clean"),
    "run_definition": ("executor.api", "run_definition"),
    "run_job": ("executor.api", "run_job"),
    "service_rules": ("executor.service_rules", None),
    "warm_image": ("executor.api", "warm_image"),
}
__all__ = [
    "OUTPUTS",
    "ContainerEngine",
    "DefinitionError",
    "ExecutionResult",
    "ExecutorError",
    "JobRun",
    "LocalImage",
    "LocalImages",
    "Options",
    "ParameterError",
    "RequestRefused",
    "WarmImage",
    "check_parameters",
    "check_request",
    "check_step",
    "clean",
    "run_definition",
    "run_job",
    "service_rules",
    "warm_image",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'executor' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = importlib.import_module(module)
    value = value if attribute is None else getattr(value, attribute)
    globals()[name] = value
    return value
