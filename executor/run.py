"""``python -m executor``: run a SageMaker Pipeline definition JSON on this machine.

    python -m executor --definition FILE.json [--image URI=COMMAND ...] [--param Name=Value ...]
                       [--name PIPELINE] [--container docker|podman|finch [--container-flag F]]
                       [--s3 folder|aws] [--outputs DIR] [--mounts auto|tmpfs|plain]
    python -m executor clean [--keep N] [--outputs DIR]

``--image URI=COMMAND`` runs image URI as a local process whose ENTRYPOINT is COMMAND
(``python`` there is this interpreter); ``--container`` runs the images themselves.
Outputs go to ``<outputs>/s3/<bucket>/<key>`` and the execution record to
``<outputs>/<execution id>/execution.json``. Exit status: 0 when the execution
succeeded, 1 when it did not, 2 when it could not start.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from executor.api import OUTPUTS, Options, clean, run_definition
from executor.errors import ExecutorError
from executor.images import ContainerEngine, LocalImage, LocalImages


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m executor", description=__doc__)
    parser.add_argument("--definition", type=Path, required=True, help="the definition JSON")
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="URI=COMMAND",
        help="run image URI as this local command (repeatable)",
    )
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--name", default="local-pipeline", help="the pipeline's name")
    parser.add_argument("--container", choices=("docker", "podman", "finch"), default=None)
    parser.add_argument(
        "--container-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra flag for `<engine> run` (repeatable; write --container-flag=--runtime)",
    )
    parser.add_argument("--s3", choices=("folder", "aws"), default="folder")
    parser.add_argument("--outputs", type=Path, default=OUTPUTS, help=f"default: {OUTPUTS}")
    parser.add_argument("--mounts", choices=("auto", "tmpfs", "plain"), default="auto")
    return parser.parse_args(argv)


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``Name=Value`` items as a dict."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ExecutorError(f"--param {item!r}: write it as Name=Value.")
        out[name.strip()] = value
    return out


def parse_images(items: Sequence[str]) -> LocalImages:
    """``URI=COMMAND`` items as local images."""
    images = LocalImages({})
    for item in items:
        uri, sep, command = item.partition("=")
        if not sep or not uri or not command.strip():
            raise ExecutorError(f"--image {item!r}: write it as URI=COMMAND.")
        images.images[uri] = LocalImage(tuple(shlex.split(command)))
    return images


def execute(args: argparse.Namespace) -> int:
    try:
        text = args.definition.read_text()
    except OSError as exc:
        raise ExecutorError(f"--definition {args.definition}: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise ExecutorError(f"--definition {args.definition}: not UTF-8 text (not JSON).") from None
    engine = ContainerEngine(args.container, tuple(args.container_flag)) if args.container else None
    options = Options(
        outputs=args.outputs,
        store=args.s3,
        engine=engine,
        mounts=args.mounts,
        progress=sys.stdout,
    )
    result = run_definition(
        text, parse_params(args.param), parse_images(args.image), options, name=args.name
    )
    print(f"\nExecution {result.status}: {result.record_path}", flush=True)
    if result.signal is not None:
        raise Interrupted(result.signal)
    lines = result.output_lines()
    if lines:
        print("Outputs:\n" + "\n".join(lines))
    return 0 if result.status == "Succeeded" else 1


def clean_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m executor clean")
    parser.add_argument("--keep", type=int, default=0, help="keep the newest N executions (N >= 0)")
    parser.add_argument("--outputs", type=Path, default=OUTPUTS, help=f"default: {OUTPUTS}")
    args = parser.parse_args(argv)
    removed, kept = clean(args.outputs, args.keep)
    print(f"Removed {removed} local execution(s) and their stored outputs; kept {kept}.")
    return 0


class Interrupted(BaseException):
    """SIGINT or SIGTERM ended the command."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, _frame: object) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # later ones must not break the cleanup
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """The command; SIGINT or SIGTERM end it with ``interrupted`` (130 or 143).

    While jobs run, the first signal stops them (``run_definition``); the command
    then ends the same way.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if argv[:1] == ["clean"]:
            return clean_command(argv[1:])
        return execute(parse_args(argv))
    except ExecutorError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr, flush=True)
        return 2
    except Interrupted as err:
        previous = dict.fromkeys(previous, signal.SIG_IGN)  # the command is ending
        print("interrupted", file=sys.stderr, flush=True)
        return 128 + err.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
