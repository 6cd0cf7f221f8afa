"""The one error hierarchy of digest.

Every error a user can cause derives from :class:`DigestError`; the CLI turns it
into a one-line message and an exit code in one place (``digest.cli.main.main``).
"""

from __future__ import annotations


class DigestError(Exception):
    """Base class of every error digest reports to a user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class TokenError(DigestError):
    """A token is malformed, forged, for another purpose, or expired."""


class ConfigError(DigestError):
    """A setting is missing, malformed or inconsistent."""

    exit_code = 2

    def __init__(self, key: str, problem: str, source: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        where = f" (in {source})" if source else ""
        super().__init__(f"config error: {key}: {problem}{where}")


class InputError(DigestError):
    """A record of user input (a file line, a CSV row, a CLI argument) is invalid."""

    exit_code = 3

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


class UnreadableSourceError(InputError):
    """A whole import source (file, URL, stdin) could not be read; the others were imported."""

    exit_code = 7


class StoreError(DigestError):
    """The database refused a write (disk full, a constraint, unreachable); that write was rolled back whole."""

    exit_code = 8


class StoreUnavailableError(DigestError):
    """The database cannot be used just now (unreachable, timed out, disk full): try again later.

    75 is EX_TEMPFAIL of sysexits.h: a cron job or an MTA retries on it.
    """

    exit_code = 75


class DigestPaused(DigestError):
    """Sending this digest is paused (its complaint rate was too high) until ``digest resume``."""

    exit_code = 9


class NotFoundError(DigestError):
    """A named object (digest, subscriber, edition) does not exist."""

    exit_code = 4


class TemplateError(DigestError):
    """A template failed to render; carries the template file and line."""

    exit_code = 5

    def __init__(self, template: str, line: int | None, problem: str) -> None:
        self.template = template
        self.line = line
        where = f"{template}:{line}" if line else template
        super().__init__(f"template error: {where}: {problem}")


class DeliveryError(DigestError):
    """Sending failed in a way that stops the whole run (not one recipient)."""

    exit_code = 6


class SmtpUnavailableError(DeliveryError):
    """The SMTP server cannot be used just now (refused, down, login failed): try again later (EX_TEMPFAIL)."""

    exit_code = 75


class TemporaryFailure(DeliveryError):
    """A per-recipient failure worth retrying (4xx, timeout, dropped connection).

    ``connection_level`` marks failures of the server rather than of the recipient
    (cannot connect, 421, dropped or stalled connection): they feed the circuit breaker.
    ``throttled`` marks a relay's "slow down" (SES 454 4.7.0, Gmail 421 4.7.28, 451
    4.7.1): the message is put back without counting an attempt and the server rests.
    """

    def __init__(
        self,
        message: str,
        code: int | None = None,
        *,
        connection_level: bool = False,
        maybe_delivered: bool = False,
        throttled: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.connection_level = connection_level or code is None or code == 421
        # True when the connection died after the whole message was handed over:
        # the server may have accepted it, so it must not be re-sent at once elsewhere.
        self.maybe_delivered = maybe_delivered
        self.throttled = throttled


class PermanentFailure(DeliveryError):
    """A per-recipient failure not worth retrying (5xx)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.connection_level = False


class JournalError(DigestError):
    """The delivery journal cannot be written: sending stops before the next message.

    Without its journal a sender could not tell, after a crash or a failed database
    write, which messages the server already accepted: it would send them again.
    74 is EX_IOERR of sysexits.h.
    """

    exit_code = 74

    def __init__(self, directory: str | object, problem: str) -> None:
        self.directory = str(directory)
        self.problem = problem
        super().__init__(f"journal error: cannot write to {self.directory}: {problem}; sending stopped")


# ---------------------------------------------------------------- caught by their callers
#
# These never reach the user as such: a caller catches them and reports them its own
# way (a rejected source, a feed marked in error, EX_TEMPFAIL), so they are not
# DigestErrors and carry no exit code.


class FetchError(Exception):
    """A fetch failed; ``str()`` is one line for the user (no secrets)."""


class BlockedAddress(FetchError):
    """The host resolves to an address that is not public (and private ones are not allowed)."""


class FetchTimeout(FetchError):
    """The fetch did not finish within its overall deadline."""


class TooManyRedirects(FetchError):
    """More redirects than allowed."""


class TooLarge(FetchError):
    """The response body is larger than allowed."""


class FeedFetchError(Exception):
    """The feed could not be fetched (network, HTTP status, size, redirects)."""


class StoreUnavailable(Exception):
    """The database cannot be reached: an inbound message must be kept and tried again."""


class DnsFailure(Exception):
    """A DNS query could not be answered (timeout, SERVFAIL): the check cannot decide."""
