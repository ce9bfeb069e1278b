"""Bad input: a clear one-paragraph error, a non-zero exit, no metrics or plots left behind."""

from __future__ import annotations

import csv
import gc
import logging
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import steps.train
from conf import CONF_DIR, compose
from conf.errors import DataError, UserError
from pipelines.local import run as local
from pipelines.local.run import run as run_in_process
from pipelines.local.tune import check_local_tuning, tune
from pipelines.local.tune import hydra_main as tune_main
from steps.checks import check_tuning
from steps.runtime.interrupt import Interrupted, _raise
from steps.sources.simulate import generate
from tests.local.support import run


def assert_clean_failure(cwd: Path, result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode != 0
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    leftovers = [
        p for p in cwd.rglob("*") if p.name in ("metrics.json", "calibration.png", "lorenz.png")
    ]
    assert leftovers == []
    assert not list(cwd.rglob(".staging-*"))


@pytest.fixture(scope="module")
def claims() -> pd.DataFrame:
    return generate(2000, 9).drop(columns=["TrueFrequency"])


def write(df: pd.DataFrame, path: Path) -> str:
    df.to_csv(path, index=False)
    return f"data.path={path}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model.max_leaf_nodez=3"], ["model.max_leaf_nodez"]),
        (["model.max_leaf_nodes=lots"], ["model.max_leaf_nodes", "lots"]),
        (["model=xgboost"], ["xgboost"]),
        (["data=file"], ["data.path"]),
        (["data=file", "data.path=missing.csv"], ["data.path='missing.csv' does not exist"]),
        (["split.test_fraction=1.5"], ["split.test_fraction=1.5"]),
    ],
)
def test_bad_overrides_and_paths(tmp_path: Path, args: list[str], expected: list[str]) -> None:
    assert_clean_failure(tmp_path, run(tmp_path, *args), *expected)


def test_bad_data_file_through_the_command_line(claims: pd.DataFrame, tmp_path: Path) -> None:
    bad = claims.copy()
    bad.loc[:2, "Exposure"] = 0.0
    result = run(tmp_path, "data=file", write(bad, tmp_path / "claims.csv"))
    assert_clean_failure(tmp_path, result, "column 'Exposure' must have exposure > 0: 3 rows")
    assert result.stderr.count("\n") == 1  # one paragraph
    (failed,) = (tmp_path / "outputs" / "runs").glob("*/FAILED")  # the run is marked as failed
    assert "must have exposure > 0" in failed.read_text()


def fails_in_process(tmp_path: Path, overrides: list[str], *expected: str) -> None:
    """The same runner in-process: a UserError naming the problem, and no outputs."""
    with pytest.raises(UserError) as info:
        run_in_process(compose(overrides), tmp_path / "run")
    for text in expected:
        assert text in str(info.value)
    leftovers = [
        p
        for p in tmp_path.rglob("*")
        if p.name in ("metrics.json", "calibration.png", "lorenz.png")
    ]
    assert leftovers == [] and not list(tmp_path.rglob(".staging-*"))


def test_unreadable_csv(tmp_path: Path) -> None:
    path = tmp_path / "claims.csv"
    path.write_bytes(b"\x00\xff\xfe garbage \x00\n\x01")
    fails_in_process(tmp_path, ["data=file", f"data.path={path}"], "claims.csv")


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("Exposure", 0.0, "column 'Exposure' must have exposure > 0: 5 rows break it"),
        ("Exposure", -0.5, "column 'Exposure' must have exposure > 0: 5 rows break it"),
        ("ClaimNb", -1, "column 'ClaimNb' must have count >= 0: 5 rows break it"),
        ("DrivAge", None, "column 'DrivAge' must have no missing values: 5 rows break it"),
        ("VehAge", "new", "column 'VehAge' must have numeric values: 5 rows break it"),
    ],
)
def test_bad_data(claims: pd.DataFrame, tmp_path: Path, column: str, value, expected: str) -> None:
    bad = claims.copy()
    bad[column] = bad[column].astype(object)
    bad.loc[:4, column] = value
    fails_in_process(tmp_path, ["data=file", write(bad, tmp_path / "claims.csv")], expected)


def test_missing_column(claims: pd.DataFrame, tmp_path: Path) -> None:
    path = write(claims.drop(columns="Region"), tmp_path / "c.csv")
    fails_in_process(tmp_path, ["data=file", path], "column 'Region' is missing")


def test_file_without_exposure_column_trains(claims: pd.DataFrame, tmp_path: Path) -> None:
    path = write(claims.drop(columns="Exposure"), tmp_path / "counts.csv")
    cfg = compose(["data=file", path, "data.exposure=null", "model=glm_poisson"])
    metrics = run_in_process(cfg, tmp_path / "run")
    assert metrics["test"]["exposure"] == metrics["test"]["n_rows"]
    assert (tmp_path / "run" / "metrics.json").is_file()


# ----------------------------------------------- preflight: before Hydra writes anything


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["+model.max_leaf_nodez=3"], "Unknown config key 'model.max_leaf_nodez'"),
        (["model.name=glm_poisson"], "contradicts the selected model group"),
        (["model.max_leaf_nodes=1"], "'max_leaf_nodes' parameter"),
        (["data.name=${oc.env:AWS_SECRET_ACCESS_KEY}"], "may not read the environment"),
        (
            ["-m", "model=constant,glm_poisson", "model.n_bins=1"],
            "Job 0 (model=constant model.n_bins=1) of the multirun",
        ),
        (["-m", "seed=1,-1"], "Job 1 (seed=-1) of the multirun"),
        (["hydra.run.dir=."], "hydra.run.dir='.' already exists and is not empty"),
        (["hydra.run.dir=earlier"], "hydra.run.dir='earlier' already exists and is not empty"),
        (["-m", "hydra.sweep.dir=earlier", "seed=1,2"], "hydra.sweep.dir='earlier' already"),
        (["hydra.run.dir=a-file/run"], "Cannot write the outputs to 'a-file/run'"),
    ],
)
def test_preflight_refuses_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, argv: list[str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "earlier" / ".hydra").mkdir(parents=True)
    (tmp_path / "earlier" / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (tmp_path / "a-file").write_text("not a folder")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert expected in refusal(monkeypatch, capsys, local.hydra_main, argv)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def refusal(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app: Callable[[], object],
    argv: list[str],
    extra_check: Callable | None = None,
) -> str:
    """The entrypoint's refusal of ``argv`` (exit code 2): its one line on stderr.

    A single run is checked on the config Hydra composes (``RunChecks``), a multirun
    job by job before Hydra starts.
    """
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(sys, "argv", ["prog", *argv])
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert local.launch(app, extra_check) == 2
    finally:  # Hydra's logging setup writes to this test's captured stream: undo it
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert gc.isenabled()  # the entrypoint's start-up pause ends with it
    return err


def test_preflight_checks_the_search_before_local_tuning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    err = refusal(monkeypatch, capsys, tune_main, ["tuning.max_jobs=0"], check_tuning)
    assert "tuning.max_jobs=0 must be at least 1" in err
    assert list(tmp_path.iterdir()) == []


def test_a_warm_start_is_refused_before_local_tuning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["model=glm_poisson", "tuning.warm_start_from=[tune-1]"]
    err = refusal(monkeypatch, capsys, tune_main, argv, check_local_tuning)
    assert err.startswith("error: tuning.warm_start_from=[tune-1]: a warm start reads")
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_preflight_accepts_a_new_or_empty_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    hcfg = compose_with_hydra(["hydra.run.dir=empty", "data.n_rows=1000"])
    local.preflight(["hydra.run.dir=empty", "data.n_rows=1000"])
    local.RunChecks().on_run_start(config=hcfg)
    local.preflight(["-m", "hydra.sweep.dir=new", "model=constant,glm_poisson"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def compose_with_hydra(overrides: list[str]) -> DictConfig:
    """The config as Hydra's own run composes it, ``hydra`` node included."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose("config", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


# -------------------------------------------------------------------- signals, in-process


def test_an_interrupted_run_leaves_no_staging_folder(tmp_path: Path, monkeypatch) -> None:
    """The handler's exception, raised mid-fit, unwinds every staging folder of the run."""
    import steps.model

    def interrupted_fit(*args, **kwargs):
        assert list(tmp_path.rglob(".staging-*")) == []  # prepare has published its splits
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(steps.train, "fit", interrupted_fit)
    with pytest.raises(Interrupted) as info:
        run_in_process(compose(["data.n_rows=2000"]), tmp_path / "run")
    assert info.value.exit_code == 143
    assert not list(tmp_path.rglob(".staging-*"))
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert steps.model.fit is not interrupted_fit


def test_the_signal_handler_raises_interrupted_once() -> None:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(Interrupted) as info:
            _raise(signal.SIGINT, None)
        assert info.value.exit_code == 130
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # later signals: ignored
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ------------------------------------------------------- local tuning survives bad trials


def _failing_train(fail: Callable[[int], bool]):

    real, calls = steps.train.train, []

    def train(cfg, *args):
        calls.append(cfg)
        if fail(len(calls) - 1):
            raise DataError(f"injected fault in call {len(calls) - 1}")
        return real(cfg, *args)

    return train


TUNE = ["data.n_rows=3000", "model=glm_poisson", "tuning.max_jobs=3", "tuning.max_parallel_jobs=1"]


def test_one_failing_trial_does_not_stop_the_search(tmp_path: Path, monkeypatch) -> None:

    monkeypatch.setattr(steps.train, "train", _failing_train(lambda n: n == 0))
    result = tune(compose(TUNE), tmp_path)
    trials = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert [t["status"] for t in trials] == ["failed", "ok", "ok"]
    assert trials[0]["error"] == "injected fault in call 0"
    assert result["best_params"] and (tmp_path / "metrics.json").is_file()


def test_when_every_trial_fails_the_first_reason_is_shown(tmp_path: Path, monkeypatch) -> None:

    monkeypatch.setattr(steps.train, "train", _failing_train(lambda n: True))
    with pytest.raises(DataError, match=r"All 3 trials failed; the first \(trial 0\) failed"):
        tune(compose(TUNE), tmp_path)
    assert len(list(csv.DictReader((tmp_path / "trials.csv").open()))) == 3


# ------------------------------------------------------------ subprocess: multirun faults


def test_multirun_survives_a_failing_job(tmp_path: Path) -> None:
    result = run(tmp_path, "-m", "model=constant", "data.n_rows=3000,2")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: job 1: The data set 'synthetic_fremtpl2freq' has 2 rows" in result.stderr
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*")
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [(r["run"], r["status"]) for r in rows] == [
        ("model=constant data.n_rows=3000", "ok"),
        ("model=constant data.n_rows=2", "failed"),
    ]
    assert "too few to split" in rows[1]["error"] and float(rows[0]["poisson_deviance"]) > 0
    assert "too few to split" in (sweep / "1" / "FAILED").read_text()
    assert "errors:" in result.stdout


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_sigterm_stops_a_multirun_and_its_workers(tmp_path: Path) -> None:
    import os
    import sys
    import time

    args = [
        "-m",
        "data.n_rows=100000",
        "seed=1,2",
        "model.max_iter=2000",
        "model.n_iter_no_change=2000",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.local.run", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    children: set[int] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        listing = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        children |= {int(p) for p in listing.read_text().split()} if listing.exists() else set()
        if len(list(tmp_path.glob("outputs/multirun/*/*/data"))) == 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in stderr
    assert children
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)]
    assert not list(tmp_path.rglob(".staging-*"))


def test_sigterm_during_prepare_stops_the_run_and_its_prepare_child(tmp_path: Path) -> None:
    import os
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.local.run", "data.n_rows=3000000", "hydra.run.dir=run"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    listing = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    children: set[int] = set()
    deadline = time.monotonic() + 60
    while not children and time.monotonic() < deadline and proc.poll() is None:
        children = {int(p) for p in listing.read_text().split()} if listing.exists() else set()
        time.sleep(0.05)
    assert children, proc.communicate()  # the prepare step's child is running
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in stderr
    assert not list(tmp_path.rglob(".staging-*"))
    assert not list(tmp_path.rglob("*.parquet"))
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)]
