"""The exposure-weighted mean frequency: the baseline every model must beat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from conf.schema import ModelConfig
from steps.models.base import ModelUnit


@dataclass
class ConstantConfig(ModelConfig):
    pass


class Constant(ModelUnit):
    name = "constant"
    schema = ConstantConfig

    def build(self, cfg: DictConfig, categorical: list[str], numeric: list[str]) -> Any:
        from sklearn.dummy import DummyRegressor

        return DummyRegressor(strategy="mean")
