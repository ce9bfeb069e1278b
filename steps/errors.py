"""Errors a user can fix: they are reported as one paragraph, without a traceback."""


class UserError(Exception):
    """Bad input: the message names what is wrong and how to fix it."""


class DataError(UserError):
    """The data cannot be read or breaks a validation rule."""


class ConfigError(UserError):
    """A config value is missing or inconsistent."""


class OutputExistsError(UserError):
    """An output would overwrite the result of an earlier run."""
