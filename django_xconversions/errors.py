"""Exceptions raised by django-xconversions.

One root, ``XConversionsError``, for everything raised on purpose. A problem with one
account's configuration (missing credentials, a secret no configured key opens) is also an
``ImproperlyConfigured``, so "fail quietly" code never swallows a broken set-up, while
delivery can catch it and pause just that account.

Every API error carries the HTTP status, X's error code, message and parameter, the whole
list of errors X returned and the raw response, and prints X's own message, so a log line
or an admin page shows what X said rather than a bare status code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    import requests

    from django_xconversions.ratelimit import RateLimit


@dataclass(frozen=True)
class APIErrorDetail:
    """One entry of X's ``errors`` list."""

    code: str
    message: str
    parameter: str | None = None


class XConversionsError(Exception):
    """Base class of everything this package raises on purpose."""


class ImproperlyConfiguredAccount(XConversionsError, ImproperlyConfigured):
    """An account or pixel lacks what a request needs (names the missing field)."""


class UnreadableSecret(ImproperlyConfiguredAccount):
    """A stored secret no key in XCONVERSIONS["ENCRYPTION_KEY"] opens."""


class EncryptionKeyError(XConversionsError, ImproperlyConfigured):
    """XCONVERSIONS["ENCRYPTION_KEY"] itself is unusable: no secret can be read or written,
    so this is the whole site's configuration, not one account's."""


class EncryptionKeyMissing(EncryptionKeyError):
    """No key is configured (and DEBUG is off)."""


class EncryptionKeyInvalid(EncryptionKeyError):
    """The setting has the wrong type, or an entry is not a Fernet key."""


class XAdsError(XConversionsError):
    """An error answer from the X Ads API (or a failure to get one)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        parameter: str | None = None,
        errors: tuple[APIErrorDetail, ...] = (),
        response: requests.Response | None = None,
        retry_after: float | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.parameter = parameter
        self.errors = errors
        self.response = response
        self.retry_after = retry_after
        self.rate_limit = rate_limit

    @property
    def messages(self) -> list[str]:
        """Every message X gave, in order (the first is ``message``)."""
        return [e.message for e in self.errors] or [self.message]

    def __str__(self) -> str:
        text = "; ".join(self.messages)
        if self.status is not None:
            return f"{text} (HTTP {self.status}{', ' + self.code if self.code else ''})"
        return text

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(status={self.status!r}, code={self.code!r}, message={self.message!r})"

    @property
    def body(self) -> Any:
        """The response body: parsed JSON when it was JSON, else text, else None."""
        if self.response is None:
            return None
        try:
            return self.response.json()
        except ValueError:
            return self.response.text


class BadRequest(XAdsError):
    """400: the request (for conversions: the whole batch) was rejected. Permanent."""


class Unauthorized(XAdsError):
    """401: credentials missing or wrong. Stop sending for that account."""


class Forbidden(XAdsError):
    """403: the app or account has no Ads API access. Stop sending for that account."""


class NotFound(XAdsError):
    """404: route, account, pixel or event not found. Permanent for those events."""


class RateLimited(XAdsError):
    """429: wait until ``reset_at`` (epoch seconds). Not a failed attempt."""

    def __init__(self, message: str, *, reset_at: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reset_at = reset_at


class ServerError(XAdsError):
    """5xx: transient; retry with backoff, honouring ``retry_after`` when given."""


class TransportError(XAdsError):
    """No HTTP answer: connection refused or reset, DNS failure. Transient."""


class RequestTimeout(TransportError):
    """The connect or read timeout passed. Transient."""


class ClientError(XAdsError):
    """Any other 4xx status."""


STATUS_ERRORS: dict[int, type[XAdsError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    429: RateLimited,
}


def error_class_for_status(status: int) -> type[XAdsError]:
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    if status >= 500:
        return ServerError
    return ClientError
