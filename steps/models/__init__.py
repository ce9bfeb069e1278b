"""The models: one module each (schema, estimator, fitting quirks), registered here.

To add a model, write a ``ModelUnit`` subclass in a new module, add it to
``MODELS`` below, and give it a ``conf/model/<name>.yaml`` (its values) and a
``conf/tuning/<name>.yaml`` (its search space). Nothing else names a model.
"""

from __future__ import annotations

from steps.models.base import ModelUnit
from steps.models.constant import Constant
from steps.models.glm_poisson import GLMPoisson
from steps.models.hgb_poisson import HGBPoisson

MODELS: dict[str, ModelUnit] = {
    unit.name: unit for unit in (HGBPoisson(), GLMPoisson(), Constant())
}

__all__ = ["MODELS", "ModelUnit"]
