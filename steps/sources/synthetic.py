"""The offline default: freMTPL2freq's columns drawn from a known true frequency."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from omegaconf import MISSING, DictConfig

from conf.schema import DataConfig
from steps.sources.base import SourceUnit

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass
class SyntheticDataConfig(DataConfig):
    source: str = "synthetic"
    n_rows: int = MISSING
    seed: int = MISSING


class Synthetic(SourceUnit):
    name = "synthetic"
    schema = SyntheticDataConfig

    def load(self, data: DictConfig) -> pd.DataFrame:
        from steps.sources.simulate import generate

        log.info("Generating %d synthetic policies (seed %d)", data.n_rows, data.seed)
        return generate(int(data.n_rows), int(data.seed))
