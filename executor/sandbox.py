"""Run one job with each declared folder on its own filesystem (inside ``unshare --mount``).

``python -m executor.sandbox SPEC.json``: mounts a tmpfs at every declared
folder, copies each input in, runs the job command, copies each output out, and
exits with the job's status. The mounts vanish with the mount namespace, so a
rename across declared folders fails with EXDEV as it does where SageMaker mounts
each folder separately. Standard library only: this runs before every job (and a
warm image process, ``warm.py``, uses ``mount_folders`` and ``collect`` the same way).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

# Exit status of a job whose folders could not be set up (the platform failed, not the job).
SETUP_FAILED = 125


def mount_folders(mounts: list[dict[str, Any]]) -> None:
    """A tmpfs at every declared folder, each input copied in (this mount namespace only)."""
    for mount in mounts:
        path = Path(mount["path"])
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "mode=0777", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )
        if mount.get("source"):
            shutil.copytree(mount["source"], path, dirs_exist_ok=True)


def collect(mounts: list[dict[str, Any]]) -> None:
    """Copy every output folder out of its tmpfs, to where the runner uploads it from."""
    for mount in mounts:
        if mount.get("collect"):
            shutil.copytree(mount["path"], mount["collect"], dirs_exist_ok=True)


def exit_status(returncode: int) -> int:
    """A process's return code as a shell reports it (128 + the signal for a signal)."""
    return returncode if returncode >= 0 else 128 - returncode


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        mount_folders(spec["mounts"])
        child = subprocess.Popen(spec["command"], cwd=spec["cwd"])
    except (OSError, subprocess.CalledProcessError) as exc:
        # The platform failed, not the job: the runner reports it as an internal error.
        Path(spec["error"]).write_text(f"{type(exc).__name__}: {exc}")
        return SETUP_FAILED

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = child.wait()
    collect(spec["mounts"])
    return exit_status(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
