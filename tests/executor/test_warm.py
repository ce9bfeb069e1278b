"""Jobs forked from a warm image process (warm.py) behave as jobs started cold."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor import jobs
from executor.engine import Execution
from executor.errors import JobInternalError
from executor.images import LocalImage, LocalImages
from executor.warm import WarmImage, openmp_threads

from . import support

HERE = Path(__file__).resolve().parent
MODULE = "tiny_image"  # tests/executor/tiny_image.py, importable with HERE on the path


def start(folder: Path, preload: list[str]) -> WarmImage:
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": support.python_path(HERE)}
    return WarmImage(sys.executable, MODULE, preload, HERE, env, folder)


@pytest.fixture
def warm(tmp_path: Path) -> Iterator[WarmImage]:
    image = start(tmp_path / "warm", [MODULE])
    yield image
    image.close()


def warm_execution(tmp: Path, warm: WarmImage, spec: dict | None = None, **kw) -> Execution:
    """The tiny pipeline with its image as ``python -m MODULE``, run by ``warm``."""
    e = support.execution(tmp, spec, **kw)
    path = support.python_path(HERE)
    command = LocalImage(("python", "-m", MODULE), {"PYTHONPATH": path}, workdir=HERE)
    e.runner.images = LocalImages({support.IMAGE: command}, interpreter=sys.executable)
    e.runner.warm = warm
    return e


def step_log(e: Execution, name: str) -> str:
    return Path(e.record.data["Local"]["Steps"][name]["Log"]).read_text()


def ids(log: str) -> dict[str, int]:
    line = next(x for x in log.splitlines() if x.startswith("pid="))
    return {k: int(v) for k, v in (item.split("=") for item in line.split())}


def test_a_warm_job_is_forked_from_the_server_and_keeps_the_contract(tmp_path, warm) -> None:
    spec = support.definition()
    spec["Steps"][0]["Arguments"]["Environment"] = {"GREETING": "hello"}
    e = warm_execution(tmp_path, warm, spec, params={"X": "3.5"})
    assert e.run() == "Succeeded"
    fit = e.record.data["Local"]["Steps"]["Fit"]
    log = step_log(e, "Fit")
    assert "warm.py client" in log.splitlines()[0]
    assert ids(log)["grandparent"] == warm.process.pid  # server -> job's folders -> job
    # The same contract as a cold job: hyperparameters, metrics over the log, model.tar.gz.
    assert fit["Properties"]["FinalMetricDataList"][0]["Value"] == pytest.approx(6.25)
    assert "stray.txt" in fit["LostFiles"]
    assert "greeting=hello" in step_log(e, "Copy")  # the job's own environment


def test_warm_jobs_get_a_filesystem_per_declared_folder(tmp_path, warm) -> None:
    try:
        mode = jobs.isolation_mode("auto")
    except JobInternalError:
        mode = "plain"
    if mode != "tmpfs":
        pytest.skip("needs root and `unshare --mount` to give each folder its own filesystem")
    spec = support.definition()
    spec["Steps"][0]["Arguments"]["AppSpecification"]["ContainerEntrypoint"] = [
        "python",
        "-m",
        MODULE,
    ]
    e = warm_execution(tmp_path, warm, spec, isolation="tmpfs")
    assert e.run() == "Succeeded"
    log = step_log(e, "Copy")
    assert ids(log)["grandparent"] == warm.process.pid
    assert "rename across folders: errno 18" in log  # EXDEV, as with a cold sandbox


def test_stopping_a_warm_job_ends_the_forked_process(tmp_path, warm) -> None:
    spec = support.definition()
    app = spec["Steps"][0]["Arguments"]["AppSpecification"]
    app["ContainerEntrypoint"], app["ContainerArguments"] = ["python", "-m", MODULE], ["sleep"]
    e = warm_execution(tmp_path, warm, spec)
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(e.run()))
    thread.start()
    log = e.folder / "jobs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "pid=" not in "".join(
        p.read_text() for p in log.glob("*/log.txt")
    ):
        time.sleep(0.05)
    (job_log,) = log.glob("*/log.txt")
    job = ids(job_log.read_text())["pid"]
    e.stop()
    thread.join(30)
    assert result == ["Stopped"]
    deadline = time.monotonic() + 10
    while _alive(job) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(job)


def test_without_a_server_the_job_runs_cold(tmp_path: Path) -> None:
    broken = start(tmp_path / "warm", ["no_such_module_anywhere"])
    try:
        broken.process.wait(timeout=30)  # its import failed: it is gone
        e = warm_execution(tmp_path, broken)
        assert e.run() == "Succeeded"
        log = step_log(e, "Fit")
        assert "warm.py client" in log.splitlines()[0]
        assert ids(log)["grandparent"] != broken.process.pid
    finally:
        broken.close()


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_a_warm_job_gets_the_openmp_threads_its_environment_names() -> None:
    """The server loaded OpenMP with its own setting; the job's share applies again."""
    import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime)
    import threadpoolctl

    def openmp() -> list[int]:
        info = threadpoolctl.threadpool_info()
        return [i["num_threads"] for i in info if i["user_api"] == "openmp"]

    before = openmp()
    assert before
    share = 2 if before[0] == 1 else 1  # a value the runtime does not have yet
    try:
        openmp_threads(share)
        assert openmp() == [share] * len(before)
    finally:
        openmp_threads(before[0])
