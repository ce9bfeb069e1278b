"""What an override given when a pipeline starts may change (``HydraOverrides``).

The pipeline's shape is fixed at upsert: the search space of a tuning step,
instance types, names and the quality gate are in the definition, not read by
the jobs. An override of those at start would be ignored, or (a new model in a
tuning pipeline) break every training job. These rules refuse such overrides
before anything runs: at ``make start-pipeline`` and again in every job.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from conf import override_key

# Groups (and their keys) read only when the pipeline is built.
UPSERT_ONLY = ("sagemaker", "pipeline", "tuning", "schedule", "deploy", "experiment", "hydra")


class StartOverrideError(ValueError):
    """An override that may not be given when the pipeline starts."""


def check_start_overrides(upserted: DictConfig, overrides: Sequence[str]) -> None:
    """Refuse overrides that take effect only at upsert, or that break a tuning pipeline.

    ``upserted`` is the config the pipeline was built from (its config channel).
    """
    mode = upserted.pipeline.mode
    tuned = set(upserted.tuning.parameters) if mode == "tune" else set()
    for override in overrides:
        key = override_key(override)
        top = key.split(".", 1)[0]
        if top in UPSERT_ONLY:
            raise StartOverrideError(
                f"'{override}': {top}.* is read only when the pipeline is built, so it cannot "
                f"change at start. Upsert with it instead: make upsert-pipeline "
                f'ARGS="... {override}".'
            )
        if mode != "tune" or top != "model":
            continue
        if key == "model":
            choice = override.split("=", 1)[1].strip() if "=" in override else ""
            if choice != upserted.model.name:
                raise StartOverrideError(
                    f"'{override}': this pipeline tunes model '{upserted.model.name}' and its "
                    "search ranges were fixed at upsert; a tuning job cannot switch models. "
                    f"Upsert a tuning pipeline for it instead: make upsert-pipeline "
                    f'ARGS="pipeline=tune {override}".'
                )
        elif key.removeprefix("model.") in tuned:
            raise StartOverrideError(
                f"'{override}': the tuning job sets {key} itself (it is in the search space), "
                "so a value given at start would be replaced by the tuned one. Change "
                f"tuning.parameters.{key.removeprefix('model.')} at upsert instead."
            )
