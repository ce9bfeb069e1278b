"""Poisson GLM on cubic B-splines of the numeric columns and one-hot categories.

An additive model that follows curves: each numeric column enters as a smooth
curve (a B-spline basis with knots at quantiles, optionally of ``log(1 + x)``),
each category as its own level. Its coefficients are what a pricing actuary
reviews and files; ``fitted_params`` puts them, with the knots, in the model's
report (``params`` of ``metrics.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING, DictConfig

from conf.errors import ConfigError, DataError
from conf.schema import ModelConfig
from steps.models.base import ModelUnit, Split

if TYPE_CHECKING:
    import numpy as np


@dataclass
class GLMSplineConfig(ModelConfig):
    alpha: float = MISSING  # L2 penalty of the GLM
    max_iter: int = MISSING
    n_knots: int = MISSING  # knots per numeric column, at quantiles of the train split
    degree: int = MISSING  # of the B-splines (3: cubic)
    # Numeric columns whose splines are taken of log(1 + x) (long right tails: Density).
    log_columns: list[str] = MISSING


class GLMSpline(ModelUnit):
    name = "glm_spline"
    schema = GLMSplineConfig
    # The fitted splines are scipy BSpline objects (with a reference to their array
    # namespace's asarray): plain data, which a model file must be allowed to hold.
    trusted_types = (
        "scipy.interpolate._bsplines.BSpline",
        "scipy._lib.array_api_compat.numpy._aliases.asarray",
    )

    def build(self, cfg: DictConfig, categorical: list[str], numeric: list[str]) -> Any:
        import numpy as np
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import PoissonRegressor
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, SplineTransformer

        # Columns are checked against the data by ``fit``: ``build`` also serves to
        # validate the parameters, with placeholder columns.
        logged = set(cfg.log_columns)

        def curve(column: str) -> Any:
            # ``fit`` replaces the knots by ones from the train split (``quantile_knots``).
            splines = SplineTransformer(n_knots=cfg.n_knots, degree=cfg.degree, include_bias=True)
            if column not in logged:
                return splines
            log = FunctionTransformer(np.log1p, feature_names_out="one-to-one")
            return Pipeline([("log1p", log), ("splines", splines)])

        encode = ColumnTransformer(
            [("categorical", OneHotEncoder(handle_unknown="ignore"), categorical)]
            + [(column, curve(column), [column]) for column in numeric],
            verbose_feature_names_out=False,
        )
        glm = PoissonRegressor(alpha=cfg.alpha, max_iter=cfg.max_iter, solver="newton-cholesky")
        return Pipeline([("encode", encode), ("glm", glm)])

    def fit(self, estimator: Any, cfg: DictConfig, train: Split, validation: Split | None) -> None:
        import numpy as np
        from sklearn.pipeline import Pipeline

        x, y, w = train
        numeric = [name for name, *_ in estimator["encode"].transformers if name != "categorical"]
        unknown = sorted(set(cfg.log_columns) - set(numeric))
        if unknown:
            raise ConfigError(
                f"model.log_columns names {unknown}, which are not numeric columns of the data "
                f"({', '.join(numeric)}): list only those, or set model.log_columns=[]."
            )
        knots = {}
        for name, transformer, columns in estimator["encode"].transformers:
            if name == "categorical":
                continue
            values = x[columns[0]].to_numpy(float)
            key = f"encode__{name}__knots"
            if isinstance(transformer, Pipeline):  # splines of log(1 + x)
                if np.nanmin(values) < 0:
                    raise DataError(
                        f"Column '{name}' has negative values: its splines are taken of "
                        "log(1 + x) (model.log_columns); remove it from that list."
                    )
                values = np.log1p(values)
                key = f"encode__{name}__splines__knots"
            points = quantile_knots(values, cfg.n_knots)
            if len(points) < 2:
                raise DataError(
                    f"Column '{name}' holds a single value in the train split: it has no curve "
                    "to fit. Drop it from data.numeric."
                )
            knots[key] = points[:, None]
        estimator.set_params(**knots)
        estimator.fit(x, y, glm__sample_weight=w)

    def fitted_params(self, estimator: Any) -> dict[str, Any]:
        return {
            "intercept": float(estimator["glm"].intercept_),
            "coefficients": coefficients(estimator),
            "knots": knots(estimator),
            # A plain list in place of the config's own node, which a model file cannot hold.
            "log_columns": [
                name for name, t, _ in estimator["encode"].transformers_ if hasattr(t, "steps")
            ],
        }


def quantile_knots(values: np.ndarray, n_knots: int) -> np.ndarray:
    """``n_knots`` distinct knots at quantiles of ``values`` (fewer if it has fewer values).

    Knots are values of the column, its smallest and largest among them. Quantiles
    of a column with a heavy mode (BonusMalus 50) coincide; each missing knot goes,
    in turn, to the median of the values strictly inside the gap between knots that
    holds the most of them, so the knots still follow the data.
    """
    import numpy as np

    values = np.sort(values[~np.isnan(values)])
    levels = np.linspace(0.0, 1.0, n_knots)
    knots = np.unique(np.quantile(values, levels, method="inverted_cdf"))
    while len(knots) < n_knots:
        lo = np.searchsorted(values, knots[:-1], side="right")
        hi = np.searchsorted(values, knots[1:], side="left")
        widest = int(np.argmax(hi - lo))
        if hi[widest] <= lo[widest]:  # no value left between two knots
            break
        inside = values[lo[widest] : hi[widest]]
        knots = np.unique(np.append(knots, np.median(inside)))
    return knots


def coefficients(estimator: Any) -> dict[str, float]:
    """The GLM's coefficients on the log scale, by input: ``Area_A``, ``DrivAge_sp_0``, ...

    ``<column>_<level>`` is a category's term; ``<column>_sp_<i>`` the ``i``-th
    B-spline of a numeric column, from its smallest values up. A column's splines
    sum to one, so each coefficient is about the curve's height where its spline
    peaks: read in order, they trace the curve.
    """
    names = estimator["encode"].get_feature_names_out()
    return {str(n): float(c) for n, c in zip(names, estimator["glm"].coef_, strict=True)}


def knots(estimator: Any) -> dict[str, list[float]]:
    """Each numeric column's knots, in the column's own units (``log_columns`` transformed back)."""
    import numpy as np

    out: dict[str, list[float]] = {}
    for name, transformer, _ in estimator["encode"].transformers_:
        if name == "categorical":
            continue
        logged = hasattr(transformer, "steps")
        splines = transformer["splines"] if logged else transformer
        # The knot vector repeats ``degree`` extra knots beyond each boundary.
        inner = np.asarray(splines.bsplines_[0].t[splines.degree : -splines.degree], dtype=float)
        out[name] = [round(float(v), 6) for v in (np.expm1(inner) if logged else inner)]
    return out
