"""Bad input and faults, in-process: each class of the bad-input table, case by case.

Every case either refuses with a clear ``UserError`` naming the problem, or is accepted
and produces a meaningful result (named in the test).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from hydra.errors import HydraException
from omegaconf import OmegaConf

from conf import compose, to_yaml
from conf.channel import compose_from_channel
from conf.contract import MODEL_FILE
from conf.errors import OutputWriteError, UserError, compose_checked
from conf.secrets import RedactingFilter, check_runtime_overrides, redact
from steps.checks import check_config, check_memory, check_tuning
from steps.evaluate import evaluate
from steps.model import OTHER, fit
from steps.prepare import prepare
from steps.runtime.io import read_split, staged_outputs, write_json
from steps.sources import load
from steps.sources.simulate import generate
from steps.train import load_model, train
from steps.validate import validate

SMALL = "data.n_rows=1500"
SECRET = "s3cr3t-Value-0123456789abcdef"


@pytest.fixture(scope="module")
def claims() -> pd.DataFrame:
    return generate(1500, 4).drop(columns=["TrueFrequency"])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return prepare(compose([SMALL]), tmp_path_factory.mktemp("prepared"))


@pytest.fixture(scope="module")
def glm_model(prepared: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    train(compose([SMALL, "model=glm_poisson"]), prepared["train"], prepared["validation"], folder)
    return folder


def file_cfg(path: Path, *overrides: str):
    return compose(["data=file", f"data.path={path}", *overrides])


def message(call, *args) -> str:
    with pytest.raises(UserError) as info:
        call(*args)
    return str(info.value)


# ---------------------------------------------------------- 1. one validation everywhere


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["+model.max_leaf_nodez=3"], "Unknown config key 'model.max_leaf_nodez'"),
        (["model.name=glm_poisson"], "model.name='glm_poisson' contradicts the selected model"),
        (["+data.extra=1"], "Unknown config key 'data.extra'"),
        (["data.source=openml"], "data.source='openml' contradicts the selected data group"),
    ],
)
def test_local_and_job_composition_refuse_the_same(overrides: list[str], expected: str) -> None:
    assert expected in message(compose_checked, overrides)  # local runs, multiruns, tuning
    with pytest.raises(HydraException) as info:
        compose_from_channel(None, overrides)  # every SageMaker job
    assert expected in str(info.value)


def test_the_steps_check_a_config_they_are_handed(prepared: dict[str, Path], tmp_path) -> None:
    cfg = OmegaConf.create(OmegaConf.to_container(compose([SMALL])))
    cfg.model.max_leaf_nodez = 3  # as a hand-built config could carry
    assert "max_leaf_nodez" in message(
        train, cfg, prepared["train"], prepared["validation"], tmp_path
    )
    assert not (tmp_path / MODEL_FILE).exists()


# ------------------------------------------------------------------------ 2. secrets


@pytest.mark.parametrize(
    "override",
    [
        "data.name=${oc.env:AWS_SECRET_ACCESS_KEY}",
        "data.name='${oc.env:AWS_SESSION_TOKEN,none}'",
        "data.name=${oc.decode:${oc.env:HOME}}",
        "+model.note=${env:HOME}",
        "model=${oc.env:MODEL}",
    ],
)
def test_runtime_overrides_may_not_read_the_environment(override: str) -> None:
    assert "may not read the environment or files" in message(compose_checked, [override])
    with pytest.raises(Exception, match="may not read the environment or files"):
        compose_from_channel(None, [override])


def test_plain_interpolations_and_safe_resolvers_are_accepted() -> None:
    check_runtime_overrides(["data.name=${now:%Y}", "split.seed=${seed}", "seed=${oc.select:x,1}"])


def test_credentials_are_redacted_from_config_metrics_and_logs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("MY_API_TOKEN", SECRET[::-1])
    cfg = compose([SMALL])
    cfg.data.name = f"name-{SECRET}"  # as if the packaged config had read it
    assert SECRET not in to_yaml(cfg) and "name-***" in to_yaml(cfg)
    write_json(tmp_path / "m.json", {"data": cfg.data.name, "x": [SECRET[::-1]]})
    assert SECRET not in (tmp_path / "m.json").read_text()
    assert SECRET[::-1] not in (tmp_path / "m.json").read_text()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key %s", (SECRET,), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "key ***"
    assert redact("short: testing", {"AWS_SECRET_ACCESS_KEY": "testing"}) == "short: testing"


# ------------------------------------------------------------------- 3. model files


def test_models_round_trip_in_the_safe_format(glm_model: Path, prepared) -> None:
    model = load_model(glm_model)
    assert (glm_model / MODEL_FILE).read_bytes()[:2] == b"PK"  # a skops (zip) file, no pickle
    assert np.isfinite(model.predict(read_split(prepared["test"]))).all()


def _crafted(path: Path) -> None:
    sio.dump(functools.partial(os.system, "touch pwned"), path)


def _foreign(path: Path) -> None:
    from sklearn.linear_model import PoissonRegressor

    sio.dump(PoissonRegressor(), path)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_crafted, "types that are not trusted"),
        (_foreign, "holds a PoissonRegressor, not a model of this project"),
        (lambda p: p.write_bytes(b"PK\x03\x04 garbage"), "Cannot read the model file"),
        (lambda p: p.rename(p.with_name("model.joblib")), "earlier version as a pickle"),
        (lambda p: p.unlink(), "No trained model"),
    ],
)
def test_untrusted_or_broken_model_files_are_refused(
    make, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / MODEL_FILE
    path.write_bytes(b"")
    make(path)
    assert expected in message(load_model, tmp_path)
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------- 4. silent wrong results


def _duplicate_header(df: pd.DataFrame, path: Path) -> None:
    text = df.to_csv(index=False).replace("VehGas", "Area", 1)
    path.write_text(text)


@pytest.mark.parametrize(
    ("change", "overrides", "expected"),
    [
        (_duplicate_header, [], "duplicate column names: Area"),
        ({"ClaimNb": 1.5}, [], "column 'ClaimNb' must have whole numbers"),
        ({"ClaimNb": math.inf}, [], "column 'ClaimNb' must have finite numbers"),
        ({"Exposure": math.inf}, [], "column 'Exposure' must have finite numbers"),
        ({"Exposure": -1.0}, [], "column 'Exposure' must have exposure > 0"),
        ({"Exposure": 1.5}, ["data.max_exposure=1.2"], "must have exposure <= 1.2"),
        ({}, ["data.id_column=policy"], "column 'policy' is missing"),
        ({}, ["data.true_frequency=truth"], "column 'truth' is missing"),
    ],
)
def test_bad_data_files_are_refused(
    claims: pd.DataFrame, tmp_path: Path, change, overrides: list[str], expected: str
) -> None:
    path = tmp_path / "claims.csv"
    if callable(change):
        change(claims, path)
    else:
        bad = claims.copy()
        for column, value in change.items():
            bad[column] = bad[column].astype(float)
            bad.loc[:4, column] = value
        bad.to_csv(path, index=False)
    cfg = file_cfg(path, *overrides)
    assert expected in message(prepare, cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_exposure_above_one_year_passes_by_default(claims: pd.DataFrame) -> None:
    long = claims.assign(Exposure=claims["Exposure"] * 2.0)
    assert len(validate(long, compose(["data=file", "data.path=x.csv"]).data)) == len(claims)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.categorical=[Area,ClaimNb]"], "data.target='ClaimNb' is also listed as a feature"),
        (["data.numeric=[Exposure,DrivAge]"], "data.exposure='Exposure' is also listed"),
        (["data.numeric=[IDpol]"], "data.id_column='IDpol' is also listed"),
        (["data.numeric=[TrueFrequency]"], "data.true_frequency='TrueFrequency' is also listed"),
        (["data.exposure=ClaimNb"], "data.target and data.exposure are the same column"),
        (["data.numeric=[DrivAge,DrivAge]"], "columns listed twice as features: DrivAge"),
        (["data.categorical=[]", "data.numeric=[]"], "needs at least one feature"),
        (["evaluation.calibration_bins=1"], "evaluation.calibration_bins=1 must be at least 2"),
        (["data.max_exposure=0"], "data.max_exposure=0.0 must be positive"),
    ],
)
def test_leaks_and_meaningless_settings_are_refused(overrides: list[str], expected: str) -> None:
    assert expected in message(check_config, compose([SMALL, *overrides]))


def test_metrics_json_is_strict_and_undefined_values_are_null(tmp_path: Path, caplog) -> None:
    path = tmp_path / "metrics.json"
    write_json(path, {"test": {"d2_ratio": float("nan"), "gini": np.float64("inf"), "n": 3}})

    def refuse(token: str) -> None:
        raise ValueError(token)

    parsed = json.loads(path.read_text(), parse_constant=refuse)
    assert parsed == {"test": {"d2_ratio": None, "gini": None, "n": 3}}
    assert "test.d2_ratio, test.gini" in caplog.text


# ------------------------------------------------------------- 5. fixable problems


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model.max_leaf_nodes=1"], "'max_leaf_nodes' parameter of HistGradientBoostingRegressor"),
        (["model.learning_rate=0"], "'learning_rate' parameter"),
        (["model.max_bins=300"], "'max_bins' parameter"),
        (["model=glm_poisson", "model.alpha=-1"], "'alpha' parameter of PoissonRegressor"),
        (["model=glm_poisson", "model.n_bins=1"], "'n_bins' parameter of KBinsDiscretizer"),
        (["seed=-1"], "seed=-1 must be between 0 and 4294967294"),
        (["split.seed=4294967295"], "split.seed=4294967295 must be between"),
        (["model.random_state=-5"], "model.random_state=-5 must be between"),
        (["tuning.seed=1099511627776"], "tuning.seed=1099511627776 must be between"),
        (["data.n_rows=0"], "data.n_rows=0 must be at least 1"),
        (["data.n_rows=-5"], "data.n_rows=-5 must be at least 1"),
        (["data=file", "data.path=x", "data.format=xlsx"], "data.format='xlsx' is not supported"),
    ],
)
def test_out_of_range_settings_are_refused(overrides: list[str], expected: str) -> None:
    assert expected in message(check_config, compose(overrides))


def test_more_rows_than_memory_is_refused(tmp_path: Path) -> None:
    assert "lower data.n_rows" in message(check_memory, 10**7, 2**30)
    check_memory(10**5, 2**30)
    cfg = compose(["data.n_rows=100000000000000"])
    assert "GiB of memory" in message(prepare, cfg, tmp_path / "out")


@pytest.mark.parametrize(
    ("n_rows", "claims_kept", "expected"),
    [
        (2, None, "too few to split"),
        (200, 0, "has no claim at all"),
    ],
)
def test_splits_too_small_for_their_metrics_are_refused(
    claims: pd.DataFrame, tmp_path: Path, n_rows: int, claims_kept, expected: str
) -> None:
    small = claims.head(n_rows).copy()
    if claims_kept is not None:
        small["ClaimNb"] = 0
    small.to_csv(tmp_path / "c.csv", index=False)
    assert expected in message(prepare, file_cfg(tmp_path / "c.csv"), tmp_path / "out")


def test_categories_beyond_the_model_limit_are_grouped_and_stored(claims: pd.DataFrame) -> None:
    wide = claims.assign(Region=[f"R{i % 300}" for i in range(len(claims))])
    cfg = compose(["model.max_bins=32", "model.max_iter=5", "model.early_stopping=false"])
    model = fit(cfg.model, cfg.data, wide).model
    assert len(model.levels["Region"]) == 31
    unseen = wide.head(3).assign(Region="never-seen")
    assert np.isfinite(model.predict(unseen)).all()
    assert np.isfinite(model.predict(wide)).all()
    assert OTHER not in model.levels["Region"]


def test_unwritable_output_folder(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    with (
        pytest.raises(OutputWriteError, match="Cannot write the outputs to"),
        staged_outputs(tmp_path / "a-file" / "run") as stage,
    ):
        (stage / "x").write_text("x")


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 256 KiB tmpfs (needs root; skipped elsewhere)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_is_a_user_error(full_disk: Path) -> None:
    with (
        pytest.raises(OutputWriteError, match="No space left on device"),
        staged_outputs(full_disk / "run") as stage,
    ):
        (stage / "big.bin").write_bytes(b"\0" * (1 << 20))
    assert not list(full_disk.rglob(".staging-*"))


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda f: (f / "data.parquet").write_bytes(b"PAR1 junk"), "Cannot read the Parquet"),
        (
            lambda f: (
                pd.read_parquet(f / "data.parquet")
                .drop(columns=["Area"])
                .to_parquet(f / "data.parquet")
            ),
            "The train split in",
        ),
    ],
)
def test_corrupt_job_inputs_are_refused(
    prepared: dict[str, Path], tmp_path: Path, damage, expected: str
) -> None:
    import shutil

    train_dir = tmp_path / "train"
    shutil.copytree(prepared["train"], train_dir)
    damage(train_dir)
    text = message(train, compose([SMALL]), train_dir, prepared["validation"], tmp_path / "m")
    assert expected in text
    if "split in" in text:
        assert "column 'Area' is missing" in text


def test_model_with_other_features_is_refused_at_evaluation(
    glm_model: Path, prepared: dict[str, Path], tmp_path: Path
) -> None:
    cfg = compose([SMALL, "model=glm_poisson", "data.numeric=[DrivAge]"])
    text = message(evaluate, cfg, glm_model, prepared["test"], tmp_path / "eval")
    assert "The model was trained on categorical" in text
    assert not (tmp_path / "eval" / "metrics.json").exists()


# ---------------------------------------------------------------------- 8. tuning


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["tuning.max_jobs=0"], "tuning.max_jobs=0 must be at least 1"),
        (["tuning.max_parallel_jobs=0"], "tuning.max_parallel_jobs=0 must be at least 1"),
        (["tuning.objective_metric=test:gini"], "'test:gini' is not reported by training"),
        (["tuning.objective_type=Lowest"], "tuning.objective_type=Lowest"),
        (["tuning.strategy=Grid"], "tuning.strategy=Grid"),
        (["tuning.parameters.max_leaf_nodes.min=1"], "the value 1.0 is out of range"),
        (["tuning.parameters.learning_rate.min=0"], "Logarithmic scaling and needs min > 0"),
        (["tuning.parameters.max_leaf_nodes.min=8.5"], "needs whole-number bounds"),
        (["model=constant"], "has no tuning.parameters"),
    ],
)
def test_tuning_budget_objective_and_ranges_are_checked(
    overrides: list[str], expected: str
) -> None:
    assert expected in message(lambda: check_tuning(compose_checked(overrides)))


# ---------------------------------------------------------------------- 9. formats


def _partitioned(df: pd.DataFrame, folder: Path) -> Path:
    df.to_parquet(folder / "claims", partition_cols=["VehGas"])
    return folder / "claims"


@pytest.mark.parametrize(
    ("name", "write", "overrides"),
    [
        ("claims.data", lambda df, p: df.to_csv(p, index=False), ["data.format=CSV"]),
        ("claims.csv.gz", lambda df, p: df.to_csv(p, index=False), []),
        ("claims.csv.bz2", lambda df, p: df.to_csv(p, index=False), []),
        ("claims.PARQUET", lambda df, p: df.to_parquet(p), []),
        ("claims.bin", lambda df, p: df.to_parquet(p), ["data.format=Parquet"]),
    ],
)
def test_formats_case_and_compression(
    claims: pd.DataFrame, tmp_path: Path, name: str, write, overrides: list[str]
) -> None:
    write(claims, tmp_path / name)
    df = load(file_cfg(tmp_path / name, *overrides).data)
    assert len(df) == len(claims) and "ClaimNb" in df


def test_partitioned_parquet_folder(claims: pd.DataFrame, tmp_path: Path) -> None:
    folder = _partitioned(claims, tmp_path)
    df = load(file_cfg(folder).data)
    assert len(df) == len(claims)
    assert sorted(df["VehGas"].astype(str).unique()) == ["Diesel", "Regular"]


def test_partitioned_parquet_under_an_s3_prefix(
    aws: str, claims: pd.DataFrame, tmp_path: Path
) -> None:
    import boto3

    folder = _partitioned(claims, tmp_path)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="claims")
    for path in folder.rglob("*.parquet"):
        s3.upload_file(str(path), "claims", f"in/claims/{path.relative_to(folder).as_posix()}")
    df = load(compose(["data=file", "data.path=s3://claims/in/claims"]).data)
    assert len(df) == len(claims)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.format=xlsx"], "data.format='xlsx' is not supported"),
        ([], "Cannot tell the format of data.path="),
    ],
)
def test_unknown_formats_name_the_value(tmp_path: Path, overrides, expected: str) -> None:
    (tmp_path / "claims.txt").write_text("a,b\n1,2\n")
    assert expected in message(load, file_cfg(tmp_path / "claims.txt", *overrides).data)
