"""Real server processes for tests: ``intake serve`` on a free loopback port, and the port
finder the tests that start their own servers share."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import UNIT

INTAKE = str(Path(sys.executable).parent / "intake")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``intake serve`` on its own data dir; ``extra_env`` adds INTAKE_* settings (the test
    process's own INTAKE_* variables are not passed on)."""

    def __init__(self, data_dir: Path, port: int, log_path: Path) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_env: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
        env.update(self.extra_env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [INTAKE, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                if self.process.poll() is not None:
                    raise AssertionError(f"server died:\n{self.log_path.read_text()[-3000:]}")
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"server never became ready:\n{self.log_path.read_text()[-3000:]}")

    async def stop(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        await asyncio.to_thread(self.process.wait, 30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def token(self, *scopes: str, subject: str | None = None, orgnr: str = UNIT) -> str:
        command = [INTAKE, "dev-token", "--orgnr", orgnr, "--data-dir", str(self.data_dir)]
        for scope in scopes:
            command += ["--scope", scope]
        if subject:
            command += ["--subject", subject]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@asynccontextmanager
async def webhook_endpoint(
    handle: Callable[[Request], Awaitable[Response]],
) -> AsyncIterator[str]:
    """A webhook receiver on a free loopback port, in this event loop: ``handle`` answers
    ``POST /hook``; yields the URL to register."""
    port = free_port()
    app = Starlette(routes=[Route("/hook", handle, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        await task


@dataclass
class Receiver:
    """A webhook receiver: answers with ``statuses`` in turn (then 200), or hangs."""

    statuses: list[int] = field(default_factory=list)
    hang_seconds: float = 0.0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.received.append((dict(request.headers), body))
        if self.hang_seconds:
            await asyncio.sleep(self.hang_seconds)
        status = self.statuses.pop(0) if self.statuses else 200
        return Response(status_code=status)
