"""Several uvicorn listeners in one process and one event loop (the API on TCP, optionally
on a unix socket; the metadata service joins them), stopped together by one signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Generator

import uvicorn


class _Listener(uvicorn.Server):
    # uvicorn installs its own signal handlers per server; with several servers only the
    # last would hear SIGTERM. run_listeners() handles signals for all of them instead.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def run_listeners(configs: list[uvicorn.Config]) -> None:
    try:
        import uvloop  # what uvicorn itself picks when it makes the loop (we make it here)

        uvloop.install()
    except ImportError:  # pragma: no cover - a dependency; plain asyncio still works
        pass
    asyncio.run(_serve_all(configs))


async def _serve_all(configs: list[uvicorn.Config]) -> None:
    servers = [_Listener(config) for config in configs]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    # One listener failing (a port in use) takes the others down: half a server is worse.
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    if any(not server.started for server in servers):
        raise SystemExit(1)
