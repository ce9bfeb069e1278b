"""How Hydra will read the local run's command line, before it runs.

The local run checks every run's config and its output folder before Hydra writes
anything (``pipelines.local.run.preflight``), so it must read the command line as
Hydra's ``@hydra.main`` will: which flags are set, single run or multirun, and the
jobs a sweep expands to. Everything the runner needs of Hydra's internals is here.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

MULTIRUN_OVERRIDE = "hydra.mode=MULTIRUN"


@dataclass(frozen=True)
class CommandLine:
    """What ``@hydra.main`` will do with a command line."""

    overrides: tuple[str, ...]
    multirun: bool
    # --help, --hydra-help, --cfg, --info or --shell-completion: Hydra prints, runs nothing.
    informational: bool
    # --config-name, --config-dir or --config-path: another config than the packaged one.
    other_config: bool


def read_command_line(argv: Sequence[str]) -> CommandLine:
    """``argv`` (without the program) as ``@hydra.main`` reads it.

    Private API: Hydra has no public way to parse its command line, and a copy of its
    flags would drift from it; ``hydra._internal.utils.get_args_parser`` is the parser
    ``@hydra.main`` itself uses. Checked against hydra-core 1.3.8.
    """
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(list(argv))
    overrides = tuple(args.overrides)
    return CommandLine(
        overrides=overrides,
        multirun=bool(args.multirun) or MULTIRUN_OVERRIDE in overrides,
        informational=any((args.help, args.hydra_help, args.cfg, args.info, args.shell_completion)),
        other_config=any((args.config_name, args.config_dir, args.config_path)),
    )


def sweep_jobs(overrides: Sequence[str]) -> list[list[str]]:
    """Each job's overrides in a multirun over ``overrides``, in Hydra's job order.

    The basic sweeper's expansion, on Hydra's public override parser: the product of
    every key's values (a choice or range sweep, or one value), keys in the order they
    first appear, a later override of a key replacing the earlier. Raises
    ``HydraException`` for an override that does not parse or a sweep it cannot list.
    """
    values: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        if not override.is_sweep_override():
            values[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            values[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            kind = override.value_type.name if override.value_type else "sweep"
            raise HydraException(f"A multirun cannot list the values of {kind} '{key}'.")
    return [list(job) for job in itertools.product(*values.values())]
