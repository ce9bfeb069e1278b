"""A tiny stand-in image for the executor's tests: one script, SageMaker's job contract.

``train``: reads the ``numbers`` channel and ``hyperparameters.json``, prints
``loss=<value>``, writes ``model/model.json``. ``score IN OUT``: reads a model
archive from processing input IN and writes ``metrics.json`` to OUT.
``copy IN OUT`` copies. ``sleep`` waits a minute. Each prints its process ids (a warm
image process, ``warm.py``, forks its jobs). A ``fail`` hyperparameter or ``--fail`` argument writes
the failure file and exits 1. Standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(os.environ.get("OPT_ML_ROOT") or "/opt/ml")


def local(path: str) -> Path:
    """A /opt/ml path of an argument, under the job's moved root."""
    return ROOT / Path(path).relative_to("/opt/ml") if path.startswith("/opt/ml") else Path(path)


def fail(reason: str) -> None:
    (ROOT / "output").mkdir(parents=True, exist_ok=True)
    for name in ("failure", "message"):
        (ROOT / "output" / name).write_text(reason)
    sys.exit(1)


def train() -> None:
    hp = json.loads((ROOT / "input/config/hyperparameters.json").read_text())
    if hp.get("fail"):
        fail(f"bad hyperparameter fail={hp['fail']}")
    numbers = [
        float(x)
        for f in (ROOT / "input/data/numbers").rglob("*.txt")
        for x in f.read_text().split()
    ]
    x = float(hp.get("x", "0"))
    loss = (x - 3.0) ** 2 + sum(numbers)
    print(f"loss={loss}")
    print(f"hyperparameters={json.dumps(hp, sort_keys=True)}")
    print(f"omp_threads={os.environ.get('OMP_NUM_THREADS')}")
    (ROOT / "model" / "model.json").write_text(json.dumps({"x": x, "loss": loss}))
    (ROOT / "stray.txt").write_text("not in a declared folder")


def score(src: str, out: str) -> None:
    src, out = str(local(src)), str(local(out))
    archives = list(Path(src).rglob("model.tar.gz"))
    with tarfile.open(archives[0]) as tar:
        model = json.load(tar.extractfile("model.json"))
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "metrics.json").write_text(json.dumps({"test": {"loss": model["loss"]}}))


def copy(src: str, out: str) -> None:
    src, out = str(local(src)), str(local(out))
    for path in Path(src).rglob("*"):
        if path.is_file():
            shutil.copy(path, Path(out) / path.name)
    print(f"greeting={os.environ.get('GREETING')}")
    # A rename across declared folders: fails where each is its own filesystem.
    probe = Path(src) / ".probe"
    try:
        probe.write_text("x")
        os.rename(probe, Path(out) / ".probe-renamed")
        print("rename across folders: ok")
    except OSError as exc:
        print(f"rename across folders: errno {exc.errno}")
        probe.unlink(missing_ok=True)


def process_ids() -> None:
    """This process, its parent and its parent's parent (read from /proc where there is one)."""
    stat = Path(f"/proc/{os.getppid()}/stat")
    grandparent = stat.read_text().rsplit(")", 1)[1].split()[1] if stat.exists() else "?"
    print(f"pid={os.getpid()} parent={os.getppid()} grandparent={grandparent}", flush=True)


def sleep() -> None:
    import time

    time.sleep(60)


def main(argv: list[str]) -> None:
    process_ids()
    if "--fail" in argv:
        fail("asked to fail by --fail")
    {
        "train": lambda: train(),
        "score": lambda: score(*argv[1:3]),
        "copy": lambda: copy(*argv[1:3]),
        "sleep": sleep,
    }[argv[0]]()


if __name__ == "__main__":
    main(sys.argv[1:])
