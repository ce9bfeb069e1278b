"""The models: one module each (schema, estimator, fitting quirks), registered here.

To add a model, write a ``ModelUnit`` subclass in a new module, add it to
``MODELS`` below, and give it a ``conf/model/<name>.yaml`` (its values) and a
``conf/tuning/<name>.yaml`` (its search space). Nothing else names a model.
"""

from __future__ import annotations

from conf.schema import register_option
from steps.models.base import ModelUnit
from steps.models.constant import Constant
from steps.models.glm_poisson import GLMPoisson
from steps.models.glm_spline import GLMSpline
from steps.models.hgb_poisson import HGBPoisson

MODELS: dict[str, ModelUnit] = {
    unit.name: unit for unit in (HGBPoisson(), GLMPoisson(), GLMSpline(), Constant())
}


def register() -> None:
    """Store every model's schema in Hydra's ConfigStore (before ``compose``)."""
    for name, unit in MODELS.items():
        register_option("model", name, unit.schema)


def trusted_types() -> list[str]:
    """Every type a fitted model of a registered unit may hold beyond skops' defaults."""
    return sorted({name for unit in MODELS.values() for name in unit.trusted_types})


__all__ = ["MODELS", "ModelUnit", "register", "trusted_types"]
