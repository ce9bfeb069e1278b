"""The offline default: freMTPL2freq's columns drawn from a known true frequency."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from omegaconf import MISSING, DictConfig

from conf.schema import DataConfig
from steps.sources.base import SourceUnit

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class Truth(StrEnum):
    """The true frequency the claims are drawn from (``steps.sources.simulate.TRUTHS``)."""

    v1 = "v1"  # smooth effects per column, weak interactions
    v2 = "v2"  # v1 with driver age x bonus-malus and driver age x density


@dataclass
class SyntheticDataConfig(DataConfig):
    source: str = "synthetic"
    n_rows: int = MISSING
    seed: int = MISSING
    truth: Truth = MISSING


class Synthetic(SourceUnit):
    name = "synthetic"
    schema = SyntheticDataConfig

    def load(self, data: DictConfig) -> pd.DataFrame:
        from steps.sources.simulate import generate

        truth = Truth(data.truth)
        log.info(
            "Generating %d synthetic policies (seed %d, truth %s)", data.n_rows, data.seed, truth
        )
        return generate(int(data.n_rows), int(data.seed), truth.value)
