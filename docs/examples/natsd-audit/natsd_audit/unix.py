"""A transport: NATS clients on a Unix socket, beside the TCP client port."""

from __future__ import annotations

import asyncio
import os
import stat
from typing import Any

from .observer import log


class UnixSocketListener:
    """A ``natsd.plugin.contracts.Listener``: ``async start()`` and ``async stop()``.

    Each accepted connection gets ``server.client_protocol("unix")``, the same
    protocol object TCP clients get, so Unix-socket clients speak plain NATS,
    authenticate, and share subjects with everyone else in their account.
    """

    def __init__(self, server: Any, path: str) -> None:
        self.server = server
        self.path = path
        self._unix_server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._remove_stale_socket()
        loop = asyncio.get_running_loop()
        self._unix_server = await loop.create_unix_server(
            lambda: self.server.client_protocol("unix"), self.path)
        os.chmod(self.path, 0o660)  # who may connect is a file-permission question
        log.info("audit: listening for client connections on unix:%s", self.path)

    async def stop(self) -> None:
        # natsd has already closed every client when listeners are stopped.
        if self._unix_server is not None:
            self._unix_server.close()
            await self._unix_server.wait_closed()
            self._unix_server = None
        self._remove_stale_socket()

    def _remove_stale_socket(self) -> None:
        try:
            if stat.S_ISSOCK(os.stat(self.path).st_mode):
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __repr__(self) -> str:
        return f"<UnixSocketListener {self.path}>"
