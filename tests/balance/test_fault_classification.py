"""Breakers count only what the upstream did: each error declares whether it is the deployment's fault."""

from __future__ import annotations

import pytest

from thrifty import errors
from thrifty.errors import (
    ContextWindowExceeded,
    InvalidRequest,
    NoDeploymentAvailable,
    RateLimited,
    RequestTimeout,
    ThriftyError,
    UpstreamConnectionError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from thrifty.testing import FakeBackend, chat

from .conftest import MakeGroup

NOT_THE_DEPLOYMENT = [
    InvalidRequest("'metadata' cannot be sent to the model", param="metadata"),
    ContextWindowExceeded("too long"),
    RequestTimeout("the client's deadline ran out"),
    UpstreamStatusError("upstream returned 400: bad field", upstream_status=400),
    UpstreamStatusError("upstream returned 404: no such model", upstream_status=404),
    NoDeploymentAvailable("nothing to ask"),
    RateLimited("slow down"),
    TypeError("a bug of ours, not the upstream's"),
]
THE_DEPLOYMENTS = [
    UpstreamConnectionError("refused"),
    UpstreamTimeout("hung past its own timeout"),
    UpstreamStatusError("upstream returned 503", upstream_status=503),
    UpstreamStatusError("upstream returned 401: our key was refused", upstream_status=401),
]


@pytest.mark.parametrize("error", NOT_THE_DEPLOYMENT, ids=lambda e: type(e).__name__)
async def test_errors_that_are_not_the_deployments_fault_never_open_its_breaker(
    make_group: MakeGroup, error: Exception
) -> None:
    backend = FakeBackend(lambda r: error, name="a")
    group = make_group([backend], retries=0)
    for _ in range(10):  # twice the consecutive-failure limit
        with pytest.raises(type(error)):
            await group.complete(chat("hi"))
    member = group.members[0]
    assert member.failed == 0 and member.breaker.state == "closed"


@pytest.mark.parametrize("error", THE_DEPLOYMENTS, ids=lambda e: f"{type(e).__name__}-{e}")
async def test_the_deployments_own_faults_open_its_breaker(make_group: MakeGroup, error: Exception) -> None:
    backend = FakeBackend(lambda r: error, name="a")
    group = make_group([backend], retries=0)
    for _ in range(5):
        with pytest.raises(type(error)):
            await group.complete(chat("hi"))
    assert group.members[0].breaker.state == "open"


def test_every_error_class_declares_whether_it_is_the_deployments_fault() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, ThriftyError)]
    faults = {c.__name__ for c in classes if c.deployment_fault}
    assert faults == {"UpstreamError", "UpstreamStatusError", "UpstreamConnectionError", "UpstreamTimeout"}
