"""HTTP GET, only to hosts on the allow-list, no redirects, size-capped."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..tools import ToolContext, ToolError


def allowed(url: str, allow: tuple[str, ...]) -> bool:
    """Whether ``url``'s host (or host:port) is on the allow-list (``*.example.org`` works)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname.lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    for entry in allow:
        entry = entry.lower()
        if entry in (host, netloc) or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
    return False


async def http_get(ctx: ToolContext, url: str) -> str:
    if not allowed(url, ctx.http_allow):
        raise ToolError(f"{url!r} is not on the allow-list ({', '.join(ctx.http_allow) or 'empty'})")
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=ctx.http_timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            body = await response.content.read(ctx.max_bytes)
            status = response.status
    except aiohttp.ClientError as exc:
        raise ToolError(f"GET {url} failed: {type(exc).__name__}", retryable=True) from None
    if 300 <= status < 400:
        raise ToolError(f"GET {url} answered {status}: redirects are not followed")
    if status >= 400:
        raise ToolError(f"GET {url} answered {status}", retryable=status >= 500)
    return body.decode("utf-8", errors="replace")
