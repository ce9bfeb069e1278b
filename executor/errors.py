"""Errors of the local executor."""

from __future__ import annotations

from typing import Any


class ExecutorError(Exception):
    """A problem the user can fix before anything runs (exit status 2)."""


class DefinitionError(ExecutorError):
    """The definition is malformed or uses something the executor does not support."""


class ParameterError(ExecutorError):
    """A start parameter the service would refuse."""


class RequestRefused(Exception):
    """A job request the service would refuse; the message names the field and the rule."""


class StepFailed(Exception):
    """A step failed; the message is its FailureReason.

    ``properties``: the Describe* response of a job that ran and failed, where there is one.
    """

    def __init__(self, reason: str, properties: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.properties = properties


class JobInternalError(StepFailed):
    """A platform-side failure (staging, upload, spawning): retryable as JOB_INTERNAL_ERROR."""


class ServiceFault(StepFailed):
    """A server error of a call the step makes itself: retryable as Step.SERVICE_FAULT."""


class Throttled(StepFailed):
    """A throttling error of a call the step makes itself: retryable as Step.THROTTLING."""


class StepStopped(Exception):
    """The execution was stopped while the step ran."""
