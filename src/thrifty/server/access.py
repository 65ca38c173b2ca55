"""Who is calling, and how much they may send: the one front door every route uses.

A request is authenticated once, into a :class:`Caller`: the key it sent, that
key's id (what the ledger and the stores record as the owner) and its role.

    admin   an ``api_keys`` entry: every route, every tenant's objects
    client  a ``{key, role: client}`` entry: the model routes and what it owns
    open    no keys are configured: everyone is trusted (loopback only)

A key is read from ``Authorization: Bearer``, ``x-api-key``, or the dashboard's
session cookie, and compared in constant time against every configured key.
Bodies are read through :func:`read_body` / :func:`read_json`, which stop at a
byte limit while the body streams in and refuse JSON nested too deeply.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..errors import AuthenticationError, NotFound, PayloadTooLarge, PermissionDenied
from ..validate import parse_json

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import Message, Receive

    from ..config import ServerConfig
    from ..tenancy.service import Tenancy

log = logging.getLogger("thrifty.server")
Role = Literal["admin", "client", "open"]
SESSION_COOKIE = "thrifty_session"
SESSION_TTL_S = 12 * 3600.0
MAX_SESSIONS = 1000
SESSION_RECHECK_S = 5.0  # with shared sessions: how long a process trusts its copy (logout elsewhere)


def key_id(key: str) -> str:
    """The short public id of a key: what ledger rows and stored objects name as the owner.

    The same digest as :meth:`thrifty.gateway.Gateway.key_hash`.
    """
    return hashlib.sha256(key.encode()).hexdigest()[:12] if key else ""


@dataclass(frozen=True)
class Caller:
    """The authenticated sender of one request."""

    key: str
    key_id: str
    role: Role
    principal: Any = None  # a virtual key's tenancy.Principal (budgets, limits, team)

    @property
    def is_admin(self) -> bool:
        """Admins (and everyone, when no keys are configured) see every tenant's objects."""
        return self.role != "client"

    def owns(self, owner: str | None) -> bool:
        return self.is_admin or owner == self.key_id

    def owner_filter(self) -> str | None:
        """The owner to restrict a listing to; None means every owner."""
        return None if self.is_admin else self.key_id

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PermissionDenied("This endpoint needs an admin key.", code="admin_key_required")

    def check_owner(self, owner: str | None, what: str) -> None:
        """404, not 403, for an object another key owns: its existence is not revealed."""
        if not self.owns(owner):
            raise NotFound(what)


OPEN = Caller("", "", "open")


class Access:
    """The configured keys, the dashboard's sessions, and the one ``authenticate``."""

    def __init__(
        self,
        server: ServerConfig,
        *,
        tenancy: Tenancy | None = None,
        key_hash: Callable[[str], str] = key_id,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        self.clock = clock
        callers = [Caller(k, key_hash(k), "admin") for k in server.api_keys]
        callers += [Caller(k, key_hash(k), "client") for k in server.client_keys]
        self.keys: tuple[tuple[bytes, Caller], ...] = tuple((c.key.encode(), c) for c in callers)
        self.tenancy = tenancy  # virtual keys, looked up when no configured key matches
        self.required = bool(self.keys) or tenancy is not None
        self.sessions: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        # with tenancy, sessions live in its database too, so every process (``--workers``, other
        # hosts on the same database) knows them; this process keeps copies for SESSION_RECHECK_S
        self.shared = tenancy.store if tenancy is not None else None

    # -- keys --------------------------------------------------------------------

    def match(self, key: str) -> Caller | None:
        """The caller holding ``key``; every configured key is compared, in constant time."""
        raw = key.encode()
        found: Caller | None = None
        for candidate, caller in self.keys:
            if hmac.compare_digest(raw, candidate):
                found = caller
        return found

    async def authenticate(self, request: Request) -> Caller:
        """The caller of ``request``; 401 when keys are configured and none valid was sent."""
        headers = request.headers
        header = headers.get("authorization", "")
        key = header[7:].strip() if header[:7].lower() == "bearer " else headers.get("x-api-key", "")
        if not self.required:
            # open: nothing to check, and objects created now belong to no key (admins see them)
            return Caller(key, "", "open") if key else OPEN
        if key:
            caller = self.match(key)
            if caller is None and self.tenancy is not None:
                principal = await self.tenancy.identify(key)
                if principal is not None:
                    record = principal.key
                    return Caller(key, record.id, "admin" if record.role == "admin" else "client", principal)
            if caller is None:
                raise AuthenticationError("Incorrect API key provided.")
            return caller
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            caller = self.session(session)
            if caller is None and self.shared is not None:
                caller = await self._shared_session(session)
            if caller is not None:
                return caller
            raise AuthenticationError("The dashboard session expired; log in again.", code="session_expired")
        raise AuthenticationError(
            "Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key"
        )

    async def admin(self, request: Request) -> Caller:
        caller = await self.authenticate(request)
        caller.require_admin()
        return caller

    # -- dashboard sessions -------------------------------------------------------

    async def login(self, key: str) -> tuple[Caller, str]:
        """A new session for an admin key: (caller, random token for the cookie)."""
        caller = self.match(key) if self.required else OPEN
        if caller is None:
            raise AuthenticationError("Incorrect API key provided.")
        caller.require_admin()
        token = secrets.token_urlsafe(32)
        ttl = SESSION_TTL_S
        if self.shared is not None:
            try:
                await asyncio.to_thread(self.shared.add_session, token, caller.key_id, time.time() + ttl)
                ttl = SESSION_RECHECK_S
            except Exception as exc:  # the database is away: a session of this process only
                log.warning("dashboard session kept in this process only (%s)", exc)
        self._keep(token, caller, ttl)
        return caller, token

    async def logout(self, token: str) -> None:
        self.sessions.pop(token, None)
        if self.shared is not None:
            try:
                await asyncio.to_thread(self.shared.drop_session, token)
            except Exception as exc:
                log.warning("dashboard session not removed from the database (%s)", exc)

    def _keep(self, token: str, caller: Caller, ttl: float) -> None:
        now = self.clock()
        self._expire(now)
        self.sessions[token] = (caller, now + ttl)
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)

    async def _shared_session(self, token: str) -> Caller | None:
        """A session another process (or this one, earlier) stored in the database."""
        assert self.shared is not None
        try:
            found = await asyncio.to_thread(self.shared.find_session, token)
        except Exception as exc:
            log.warning("dashboard sessions cannot be read (%s)", exc)
            return None
        if found is None:
            return None
        key_id, expires_at = found
        caller = next((c for _, c in self.keys if c.key_id == key_id and c.is_admin), None)
        if caller is not None:
            self._keep(token, caller, min(SESSION_RECHECK_S, expires_at - time.time()))
        return caller

    def session(self, token: str) -> Caller | None:
        held = self.sessions.get(token)
        if held is None:
            return None
        caller, expires = held
        if expires <= self.clock():
            del self.sessions[token]
            return None
        return caller

    def _expire(self, now: float) -> None:
        while self.sessions:
            token, (_, expires) = next(iter(self.sessions.items()))
            if expires > now:
                return
            del self.sessions[token]


# -- bodies -------------------------------------------------------------------------


def too_large(limit: int, declared: str | None = None) -> PayloadTooLarge:
    if declared is not None:
        return PayloadTooLarge(f"The request body is {declared} bytes; the limit is {limit}.")
    return PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.")


def check_declared(request: Request, limit: int) -> None:
    """413 at once when Content-Length already says the body is over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit, declared)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes ``limit`` bytes."""
    check_declared(request, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int, depth: int) -> dict[str, Any]:
    """A JSON object body within ``limit`` bytes and ``depth`` levels, else OpenAI's error."""
    return parse_json(await read_body(request, limit), depth)


def bounded_receive(request: Request, limit: int) -> Receive:
    """``request``'s receive channel, raising 413 once more than ``limit`` body bytes arrived.

    For parsers that pull the body themselves (multipart forms) so the bound
    holds while the body streams, not after it was all read.
    """
    check_declared(request, limit)
    receive = request.receive
    size = 0

    async def bounded() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise too_large(limit)
        return message

    return bounded
