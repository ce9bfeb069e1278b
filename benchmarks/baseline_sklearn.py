"""Baseline for ``make bench``: the same job as ``make local-run`` in one plain script.

Generate the default synthetic data, split, fit the Poisson gradient boosting
model with early stopping on the validation split, predict the test split,
score it and draw the calibration plot. No config, no validation, no files
besides the plot. The model's settings are read from the default model's config
file, so both sides fit the same model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import yaml
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import mean_poisson_deviance
from sklearn.model_selection import train_test_split

from steps.sources.simulate import generate

FEATURES = ["Area", "VehBrand", "VehGas", "Region", "VehPower", "VehAge", "DrivAge"]
FEATURES += ["BonusMalus", "Density"]
MODEL_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "model" / "hgb_poisson.yaml"


def default_params() -> dict[str, object]:
    """The default model's settings, as written in its config file."""
    params = yaml.safe_load(MODEL_CONFIG.read_text())
    params.pop("defaults", None)
    return params


def main(out: Path, n_rows: int = 678_013) -> None:
    df = generate(n_rows, 42)
    rest, test = train_test_split(df, test_size=0.2, random_state=42)
    train, val = train_test_split(rest, test_size=0.15 / 0.8, random_state=43)
    model = HistGradientBoostingRegressor(loss="poisson", **default_params())
    model.fit(
        train[FEATURES],
        train["ClaimNb"] / train["Exposure"],
        sample_weight=train["Exposure"],
        X_val=val[FEATURES],
        y_val=val["ClaimNb"] / val["Exposure"],
        sample_weight_val=val["Exposure"],
    )
    pred = model.predict(test[FEATURES])
    y, w = test["ClaimNb"] / test["Exposure"], test["Exposure"].to_numpy()
    print(f"test:poisson_deviance={mean_poisson_deviance(y, pred, sample_weight=w):.6f}")
    order = np.argsort(pred)
    bins = np.array_split(order, 20)
    observed = [np.average(y.to_numpy()[b], weights=w[b]) for b in bins]
    predicted = [np.average(pred[b], weights=w[b]) for b in bins]
    fig, ax = plt.subplots()
    ax.plot(predicted, "o-", label="predicted")
    ax.plot(observed, "s--", label="observed")
    ax.legend()
    fig.savefig(out / "calibration.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 678_013)
