"""What every data source unit provides: its config schema and its loader."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from omegaconf import DictConfig

if TYPE_CHECKING:  # units are registered before compose: no pandas at import time
    import pandas as pd


class SourceUnit:
    """One data source: a subclass in a module of its own, listed in ``steps/sources``.

    ``schema`` is a dataclass of the source's ``data`` keys and types (a subclass of
    ``conf.schema.DataConfig``, whose ``source`` default is the unit's ``name``);
    the values live in ``conf/data/<option>.yaml``. Keep heavy imports inside ``load``.
    """

    name: ClassVar[str]
    schema: ClassVar[type]

    def load(self, data: DictConfig) -> pd.DataFrame:
        """The raw frame described by the composed ``data`` config."""
        raise NotImplementedError
