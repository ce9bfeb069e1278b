"""Run one job with each declared folder on its own filesystem (inside ``unshare --mount``).

``python -m pipelines.executor.sandbox SPEC.json``: mounts a tmpfs at every declared
folder, copies each input in, runs the job command, copies each output out, and
exits with the job's status. The mounts vanish with the mount namespace, so a
rename across declared folders fails with EXDEV as it does where SageMaker mounts
each folder separately. Standard library only: this runs before every job.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        for mount in spec["mounts"]:
            path = Path(mount["path"])
            path.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "mode=0777", "tmpfs", str(path)],
                check=True,
                capture_output=True,
            )
            if mount.get("source"):
                shutil.copytree(mount["source"], path, dirs_exist_ok=True)
        child = subprocess.Popen(spec["command"], cwd=spec["cwd"])
    except (OSError, subprocess.CalledProcessError) as exc:
        # The platform failed, not the job: the runner reports it as an internal error.
        Path(spec["error"]).write_text(f"{type(exc).__name__}: {exc}")
        return 125

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = child.wait()
    for mount in spec["mounts"]:
        if mount.get("collect"):
            shutil.copytree(mount["path"], mount["collect"], dirs_exist_ok=True)
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
