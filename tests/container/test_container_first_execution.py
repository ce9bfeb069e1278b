"""The job side of a first real execution: arguments as the definition sends them,
output folders that are separate mounts, and start-time overrides a job must refuse.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conf.channel import write_channel
from conf.contract import SPLIT_FILE, SPLITS, UNSET, OptMl
from container import entrypoint, hyperparameters
from steps.runtime.io import extract_safely

REPO_ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ unset values


@pytest.mark.parametrize(
    "params",
    [
        {},  # the service drops hyperparameters whose value is empty
        {"overrides": "", "input_data_uri": ""},
        {"overrides": UNSET, "input_data_uri": UNSET},
        {"overrides": '"none"', "input_data_uri": '"none"'},  # JSON-encoded by the SDK
    ],
    ids=["missing", "empty", "unset", "json-unset"],
)
def test_unset_hyperparameters_mean_no_overrides(params: dict[str, str]) -> None:
    decoded = {k: hyperparameters.decode(v) for k, v in params.items()}
    assert hyperparameters.split(decoded) == ("", {})


def test_input_data_uri_hyperparameter_reads_that_file() -> None:
    text, keyed = hyperparameters.split({"input_data_uri": "s3://b/p/claims.csv"})
    assert text == "data=file data.path=s3://b/p/claims.csv" and keyed == {}


# ------------------------------------------------- start-time overrides in the jobs


@pytest.fixture(scope="module")
def tune_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tune") / "config"
    write_channel(folder, ["pipeline=tune"])
    return folder


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        ("model=glm_poisson", "cannot switch models"),
        ("model.learning_rate=0.05", "sets model.learning_rate itself"),
        ("tuning.max_jobs=2", "read only when the pipeline is built"),
    ],
)
def test_first_job_of_a_tuning_pipeline_refuses_what_tuning_cannot_honour(
    tmp_path: Path,
    tune_channel: Path,
    monkeypatch: pytest.MonkeyPatch,
    overrides: str,
    phrase: str,
) -> None:
    paths = OptMl(tmp_path / "opt-ml")
    (paths.processing_input("config")).parent.mkdir(parents=True)
    os.symlink(tune_channel, paths.processing_input("config"))
    monkeypatch.setenv("OPT_ML_ROOT", str(paths.root))
    code = entrypoint.main(["prepare", f"--overrides={overrides}", f"--input-data-uri={UNSET}"])
    assert code == 2
    reason = paths.failure.read_text()
    assert phrase in reason and "upsert" in reason.lower()
    assert paths.message.read_text() == reason
    assert not paths.processing_outputs.exists() or not any(paths.processing_outputs.iterdir())


# ---------------------------------------- output folders that are separate mounts


def _mount_namespaces_work() -> bool:
    if os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


SEPARATE_MOUNTS = """
set -u
out="$OPT_ML_ROOT/processing/output"
for split in train validation test; do
  mkdir -p "$out/$split" && mount -t tmpfs -o size=64m tmpfs "$out/$split" || exit 90
done
# Control: the folders really are separate filesystems.
"$PYTHON" -c "
import errno, os, sys
open(sys.argv[1], 'w').close()
try:
    os.rename(sys.argv[1], sys.argv[2])
except OSError as exc:
    print('rename across outputs:', errno.errorcode[exc.errno])
os.remove(sys.argv[1])
" "$out/train/probe" "$out/validation/probe"
"$PYTHON" -m container.entrypoint prepare "$@"
code=$?
mkdir -p "$PUBLISHED"
for split in train validation test; do cp -a "$out/$split" "$PUBLISHED/$split"; done
exit $code
"""


@pytest.mark.skipif(
    not _mount_namespaces_work(),
    reason="needs root and unshare(1) to give each output folder its own tmpfs",
)
def test_prepare_publishes_when_each_output_folder_is_its_own_filesystem(tmp_path: Path) -> None:
    """As in SageMaker's local mode: a rename from one declared folder to another fails."""
    root, published = tmp_path / "opt-ml", tmp_path / "published"
    write_channel(OptMl(root).processing_input("config"), [])
    env = {
        **os.environ,
        "OPT_ML_ROOT": str(root),
        "PYTHON": sys.executable,
        "PUBLISHED": str(published),
    }
    namespace = ["unshare", "--mount", "--propagation", "private"]
    job_args = ["--overrides=data.n_rows=2000", f"--input-data-uri={UNSET}"]
    result = subprocess.run(
        [*namespace, "sh", "-c", SEPARATE_MOUNTS, "sh", *job_args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "rename across outputs: EXDEV" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    rows = 0
    for split in SPLITS:
        names = sorted(p.name for p in (published / split).iterdir())
        assert names == ["config.yaml", SPLIT_FILE], names  # no staging folder left behind
        rows += len(pd.read_parquet(published / split / SPLIT_FILE))
    assert rows == 2000


# -------------------------------------------------------- model archives, any 3.11


@pytest.mark.parametrize("filters", [True, False], ids=["with-filters", "python-3.11.2"])
def test_model_archive_unpacks_safely_with_or_without_tar_filters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filters: bool
) -> None:
    import io
    import tarfile

    if not filters:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as tar:
        data = b"model"
        info = tarfile.TarInfo("model.joblib")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "out"
    out.mkdir()
    with tarfile.open(good) as tar:
        extract_safely(tar, out)
    assert (out / "model.joblib").read_bytes() == b"model"

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    target = tmp_path / "evil-out"
    target.mkdir()
    with tarfile.open(evil) as tar, pytest.raises(Exception, match="escape"):
        extract_safely(tar, target)
    assert not (tmp_path / "escape.txt").exists()


# ------------------------------------------------ secrets, old models, interruption


def test_job_failure_reason_never_holds_a_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    paths = OptMl(tmp_path / "opt-ml")
    write_channel(paths.processing_input("config"), [])
    monkeypatch.setenv("OPT_ML_ROOT", str(paths.root))
    code = entrypoint.main(["prepare", f"--overrides=data=file data.path=/nowhere/{secret}.csv"])
    assert code == 2
    reason = paths.failure.read_text()
    assert secret not in reason and "***" in reason


def test_a_model_saved_before_the_safe_format_says_how_to_retrain(tmp_path: Path) -> None:
    from conf.contract import LEGACY_MODEL_FILE

    model = tmp_path / "model"
    model.mkdir()
    (model / LEGACY_MODEL_FILE).write_bytes(b"not trusted")
    assert entrypoint.unpack_model(model, tmp_path / "scratch") == model
    from steps.train import load_model

    with pytest.raises(Exception, match=r"(?i)retrain"):
        load_model(model)
