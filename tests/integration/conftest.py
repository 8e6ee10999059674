"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.servers import Receiver, webhook_endpoint


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    async with webhook_endpoint(hook.handle) as url:
        hook.url = url
        yield hook
