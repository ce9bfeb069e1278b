"""The data sources: one module each (schema and loader), registered here.

To add a source, write a ``SourceUnit`` subclass in a new module, add it to
``SOURCES`` below, and give it a ``conf/data/<option>.yaml`` (its values).
Nothing else names a source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import DictConfig

from conf.errors import DataError
from conf.schema import register_option
from steps.sources.base import SourceUnit
from steps.sources.file import File
from steps.sources.openml import OpenML
from steps.sources.synthetic import Synthetic

if TYPE_CHECKING:
    import pandas as pd

SOURCES: dict[str, SourceUnit] = {unit.name: unit for unit in (Synthetic(), OpenML(), File())}


def register() -> None:
    """Store every source's schema in Hydra's ConfigStore (before ``compose``)."""
    for name, unit in SOURCES.items():
        register_option("data", name, unit.schema)


def load(data: DictConfig) -> pd.DataFrame:
    """Load the raw frame described by the ``data`` config group."""
    if data.source not in SOURCES:
        raise DataError(
            f"Unknown data.source '{data.source}': choose one of {', '.join(SOURCES)} "
            "(or pick a preset: data=synthetic, data=fremtpl2freq, data=file)."
        )
    return SOURCES[data.source].load(data)


__all__ = ["SOURCES", "SourceUnit", "load", "register"]
