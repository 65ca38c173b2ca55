"""One error tree for the whole of thrifty.

Every error a caller can see is a :class:`ThriftyError`. Each class knows the
HTTP status it maps to, the OpenAI error ``type`` it reports, whether a retry
against another (or the same) deployment could succeed (``retryable``), and
whether it is the deployment's fault (``deployment_fault``): only those count
against a deployment's circuit breaker and health. A request thrifty could not
build, a client's deadline running out or a rate limit never does. The server
maps any of them to OpenAI's error JSON in one place (``thrifty.server.app``).

    ThriftyError
    ├── ConfigError                     startup only, never sent to a client
    ├── InvalidRequest            400   malformed JSON, bad types, out of range
    │   └── ContextWindowExceeded 400   prompt too long for the model
    ├── AuthenticationError       401
    ├── PermissionDenied          403
    ├── NotFound                  404   unknown model, batch, response id
    ├── PayloadTooLarge           413
    ├── RateLimited               429   carries retry_after seconds  (retryable)
    │   └── Overloaded            429   admission queue full          (retryable)
    ├── RequestTimeout            504   the request's own deadline passed
    ├── StorageUnavailable        503   a store (batches, ledger, cache) cannot open now
    └── UpstreamError             502   the model's server failed      (retryable, fault)
        ├── UpstreamStatusError   5xx/4xx answered by the upstream     (fault for 5xx/408/401/403)
        ├── UpstreamConnectionError 502 refused, reset, DNS            (retryable, fault)
        ├── UpstreamTimeout       504   the deployment's own timeout   (retryable, fault)
        └── NoDeploymentAvailable 503  all deployments down/open       (retryable)

Foreign exceptions (aiohttp, llama.cpp, sqlite) are translated by type at the
boundary where they happen, never by matching substrings of messages.
"""

from __future__ import annotations

from typing import Any


class ThriftyError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None
    retryable: bool = False
    # The deployment did something wrong (failed, hung, refused our credentials):
    # counts against its breaker and health. Never true for a client's mistake.
    deployment_fault: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def to_json(self) -> dict[str, Any]:
        """OpenAI's error body: ``{"error": {message, type, param, code}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        return {}


class ConfigError(ThriftyError):
    """The configuration is invalid; raised at startup, names file and key."""

    type = "config_error"


class InvalidRequest(ThriftyError):
    status = 400
    type = "invalid_request_error"


class ContextWindowExceeded(InvalidRequest):
    code = "context_length_exceeded"


class AuthenticationError(ThriftyError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ThriftyError):
    status = 403
    type = "permission_error"


class NotFound(ThriftyError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class PayloadTooLarge(ThriftyError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class RateLimited(ThriftyError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, round(self.retry_after)))}


class Overloaded(RateLimited):
    code = "overloaded"


class RequestTimeout(ThriftyError):
    """One request's overall deadline (``server.request_timeout`` or the client's
    ``timeout`` option) ran out, across every retry, hedge and fallback."""

    status = 504
    type = "timeout_error"
    code = "request_timeout"


class UpstreamError(ThriftyError):
    status = 502
    type = "upstream_error"
    retryable = True
    deployment_fault = True


class UpstreamStatusError(UpstreamError):
    """The upstream answered with an error status; retryable only for 5xx/408."""

    def __init__(self, message: str, *, upstream_status: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.upstream_status = upstream_status
        self.retryable = upstream_status >= 500 or upstream_status == 408
        self.deployment_fault = self.retryable
        if upstream_status in (401, 403):
            # thrifty's own credentials for the upstream were refused: the
            # client's key is fine, so this is a gateway failure, not a 401.
            # Another deployment (another key) may still work.
            self.status = 502
            self.code = "upstream_auth_failed"
            self.retryable = True
            self.deployment_fault = True
        elif 400 <= upstream_status < 500 and upstream_status != 408:
            # The request itself was refused: report it as the client's error.
            self.status = upstream_status
            self.type = "invalid_request_error"


class UpstreamConnectionError(UpstreamError):
    code = "upstream_connection_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class NoDeploymentAvailable(UpstreamError):
    """Raised by thrifty itself before any upstream was asked: nobody's fault."""

    status = 503
    code = "no_deployment_available"
    deployment_fault = False


class StorageUnavailable(ThriftyError):
    """A file thrifty keeps (batch store, ledger, cache) cannot be opened now; the message says why."""

    status = 503
    code = "storage_unavailable"
