"""What every model unit provides: its config schema, its estimator and how to fit it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from omegaconf import DictConfig

if TYPE_CHECKING:  # the config tree imports this module: no pandas or numpy at import time
    import numpy as np
    import pandas as pd

# Features, target and weights of one split: (x, frequency, exposure).
Split: TypeAlias = "tuple[pd.DataFrame, np.ndarray, np.ndarray]"


class ModelUnit:
    """One model: subclass it in a module of its own and list it in ``steps/models/__init__.py``.

    ``schema`` is a dataclass of the ``model`` group's keys and types (the
    values live in ``conf/model/<name>.yaml``). Keep scikit-learn imports inside
    the methods: the config tree reads ``schema`` without loading them.
    """

    name: ClassVar[str]
    schema: ClassVar[type]
    # Types a fitted estimator holds beyond those skops trusts by default (scikit-learn's
    # estimators, numpy), named as skops names them: loading a model file must trust them.
    trusted_types: ClassVar[tuple[str, ...]] = ()

    def build(self, cfg: DictConfig, categorical: list[str], numeric: list[str]) -> Any:
        """An unfitted estimator for the composed ``model`` config."""
        raise NotImplementedError

    def fit(self, estimator: Any, cfg: DictConfig, train: Split, validation: Split | None) -> None:
        """Fit with exposure as sample weight (override for early stopping and the like)."""
        x, y, w = train
        estimator.fit(x, y, sample_weight=w)

    def fitted_params(self, estimator: Any) -> dict[str, Any]:
        """Values learnt while fitting that belong in the report (e.g. iterations run)."""
        return {}

    def train_deviance(self, estimator: Any, train: Split) -> float | None:
        """The train split's Poisson deviance if fitting already computed it; None: predict."""
        return None
