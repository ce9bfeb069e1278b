"""Jobs in a real container engine, where one and a Python image exist (CI has neither).

The command lines themselves are tested in test_contract.py without an engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from executor.engine import Execution, Registry
from executor.images import ContainerEngine, LocalImages
from executor.jobs import Runner
from executor.storage import FolderStore

from . import support

IMAGE = os.environ.get("EXECUTOR_TEST_IMAGE", "localhost/claim-frequency-base:bookworm")
# podman as root on these machines: runc, and limits the kernel lets the container keep.
PODMAN_FLAGS = ("--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")

PROCESS = """
import os, json
src, out = '/opt/ml/processing/input/data', '/opt/ml/processing/output/data'
total = sum(float(x) for f in os.listdir(src) for x in open(os.path.join(src, f)).read().split())
json.dump({'total': total}, open(os.path.join(out, 'total.json'), 'w'))
open(os.path.join(src, 'probe'), 'w').write('x')
try:
    os.rename(os.path.join(src, 'probe'), os.path.join(out, 'probe'))
    print('rename: ok')
except OSError as exc:
    print('rename: errno', exc.errno)
print('greeting', os.environ['GREETING'])
"""
# Each argument is at most 256 characters: the script goes line by line.
RUN_LINES = ["python3", "-c", "import sys; exec(chr(10).join(sys.argv[1:]))"]
TRAIN = """
import json, sys
hp = json.load(open('/opt/ml/input/config/hyperparameters.json'))
print('args', sys.argv[1:], 'loss=' + str(float(hp['x']) ** 2))
open('/opt/ml/model/model.json', 'w').write(json.dumps(hp))
"""


def engine() -> ContainerEngine | None:
    tool = shutil.which("podman")
    if tool is None:
        return None
    exists = subprocess.run(["podman", "image", "exists", IMAGE], capture_output=True)
    return ContainerEngine("podman", PODMAN_FLAGS) if exists.returncode == 0 else None


@pytest.mark.slow
def test_jobs_run_in_the_image_with_opt_ml_mounted(tmp_path: Path) -> None:
    tool = engine()
    if tool is None:
        pytest.skip(f"needs podman and the image {IMAGE} (set EXECUTOR_TEST_IMAGE)")
    copy_step = support.processing(
        "Copy",
        PROCESS.strip().splitlines(),
        {"data": f"s3://{support.BUCKET}/input/numbers/"},
        ["data"],
    )
    copy_step["Arguments"]["AppSpecification"].update(
        {"ImageUri": IMAGE, "ContainerEntrypoint": RUN_LINES}
    )
    copy_step["Arguments"]["Environment"] = {"GREETING": "hello"}
    train = support.training_definition()
    train["AlgorithmSpecification"].update(
        {
            "TrainingImage": IMAGE,
            "ContainerEntrypoint": RUN_LINES,
            "ContainerArguments": TRAIN.strip().splitlines(),
        }
    )
    train["HyperParameters"] = {"x": "3"}
    spec = {
        "Version": "2020-12-01",
        "Parameters": [],
        "Steps": [copy_step, {"Name": "Fit", "Type": "Training", "Arguments": train}],
    }
    store = FolderStore(tmp_path / "s3")
    store.write(f"s3://{support.BUCKET}/input/numbers/n.txt", b"1 2 3")
    folder = tmp_path / "exec"
    runner = Runner(
        store=store,
        images=LocalImages({}),
        jobs_dir=folder / "jobs",
        engine=tool,
        isolation="bind mounts",
    )
    e = Execution(
        spec,
        {},
        runner,
        folder,
        pipeline_name="tiny",
        execution_id="cont00000001",
        store=store,
        registry=Registry(folder / "registry"),
    )
    assert e.run() == "Succeeded", json.dumps(e.record.data["PipelineExecutionSteps"], indent=1)
    steps = e.record.data["Local"]["Steps"]
    out = steps["Copy"]["Properties"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert json.loads(store.read(f"{out}/total.json")) == {"total": 6.0}
    log = Path(steps["Copy"]["Log"]).read_text()
    assert "rename: errno 18" in log and "greeting hello" in log
    assert steps["Fit"]["Properties"]["FinalMetricDataList"][0]["Value"] == 9.0
    assert steps["Fit"]["RunsAs"] == f"image {IMAGE.rsplit('/', 1)[-1]}"
