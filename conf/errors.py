"""Errors a user can fix: they are reported as one paragraph, without a traceback.

Every command of the project exits 2 on such an error (``run_command``), 1 on an
unexpected one, 0 on success.
"""

import sys
from collections.abc import Sequence

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from conf import compose
from conf.secrets import check_runtime_overrides, redact

USER_ERROR_EXIT = 2


class UserError(Exception):
    """Bad input: the message names what is wrong and how to fix it."""


class DataError(UserError):
    """The data cannot be read or breaks a validation rule."""


class ConfigError(UserError):
    """A config value is missing or inconsistent."""


class OutputExistsError(UserError):
    """An output would overwrite the result of an earlier run."""


class OutputWriteError(UserError):
    """An output folder cannot be written (read-only, no permission, disk full)."""


def compose_checked(overrides: Sequence[str]) -> DictConfig:
    """``conf.compose`` for a command line: a bad override becomes a ``ConfigError`` naming it.

    Overrides that read the environment or files are refused (``conf.secrets``).
    """
    try:
        check_runtime_overrides(overrides)
        return compose(list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"Invalid overrides {' '.join(overrides)!r}: {err}") from None


def require_complete(cfg: DictConfig) -> None:
    """Fail early, naming the overrides to set, when a required value is missing (``???``)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        hints = " ".join(f"{key}=..." for key in missing)
        raise ConfigError(f"Missing required config values: {', '.join(missing)}. Set {hints}")


def report(err: BaseException | str, exit_code: int = USER_ERROR_EXIT) -> int:
    """The one rule for every command: an error is one redacted line on stderr, exit code 2.

    Credential values from the environment never reach the line (``conf.secrets``).
    Returns ``exit_code`` for the command to exit with.
    """
    print(f"error: {redact(' '.join(str(err).split()))}", file=sys.stderr, flush=True)
    return exit_code
