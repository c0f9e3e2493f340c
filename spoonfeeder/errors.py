"""The one exception tree of Spoon Feeder.

Services raise these; the edges (Gradio callbacks, the CLI) turn them into one
readable message. Every message is written for the person reading it.
"""

from __future__ import annotations


class SpoonFeederError(Exception):
    """Base of every error that carries a message fit to show a user."""

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(SpoonFeederError):
    """The configuration (environment, flags, .env) is unusable."""


class ValidationError(SpoonFeederError):
    """A user-supplied value was rejected; nothing was stored."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(SpoonFeederError):
    """The requested record does not exist (or no longer does)."""


class Forbidden(SpoonFeederError):
    """The acting user may not do this (someone else's row, or an admin's task)."""


class SecretError(SpoonFeederError):
    """A stored secret cannot be encrypted or decrypted with the configured key."""


class ProviderError(SpoonFeederError):
    """A provider call failed. `retryable` tells a queue whether trying again may help;
    `status` is the HTTP status the server answered, when it answered one."""

    retryable = False

    def __init__(
        self, message: str, *, provider: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class ProviderUnavailable(ProviderError):
    """Cannot connect, timed out, or the connection broke mid-stream."""

    retryable = True


class ProviderAuthError(ProviderError):
    """The API key is missing, wrong, or lacks permission."""


class ProviderRateLimited(ProviderError):
    """Too many requests; `retry_after` is the server's hint in seconds, if it gave one."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        retry_after: float | None = None,
        status: int | None = 429,
    ) -> None:
        super().__init__(message, provider=provider, status=status)
        self.retry_after = retry_after


class ProviderRequestError(ProviderError):
    """The request itself is wrong: unknown model, bad parameter, too long a prompt."""


class ProviderServerError(ProviderError):
    """The provider failed on its side (HTTP 5xx, overloaded, an error event mid-stream)."""

    retryable = True


class ComfyUIPromptRejected(ProviderRequestError):
    """ComfyUI refused a workflow at `POST /prompt` (its `node_errors`, or a bad graph).

    `node_errors` is the server's own dict; `node_id` and `input_name` name the first
    offending node and input when the server said which.
    """

    def __init__(
        self,
        message: str,
        *,
        node_errors: dict[str, object] | None = None,
        node_id: str | None = None,
        input_name: str | None = None,
    ) -> None:
        super().__init__(message, provider="comfyui")
        self.node_errors = node_errors or {}
        self.node_id = node_id
        self.input_name = input_name


class TaskError(SpoonFeederError):
    """A task handler failed; the queue decides from the subclass whether to try again."""

    retryable = False


class RetryableTaskError(TaskError):
    """Worth trying again later (a flaky network, a busy server)."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentTaskError(TaskError):
    """Trying again cannot help (a bad payload, a rejected key): fail the task now."""


class TaskStopped(SpoonFeederError):
    """A task ended before its handler finished, without failing: the worker records
    the stop (or nothing) rather than an error."""


class TaskCancelled(TaskStopped):
    """Raised by `TaskContext.check_cancelled()`: the user asked this task to stop."""


class TaskInterrupted(TaskStopped):
    """Raised by `TaskContext.check_cancelled()`: this worker gave the task up (shutdown,
    a lost lease); whoever holds it now, or a later attempt, carries on."""


class RunAbandoned(TaskInterrupted):
    """A ComfyUI run given up by this process (shutdown, lost task lease) without
    touching ComfyUI: the row stays `running` with its prompt_id, and a later run
    resumes it."""
