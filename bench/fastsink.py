"""A minimal SMTP sink for benchmarks: accepts everything, keeps only the Message-IDs.

aiosmtpd (opsdash/smtp_sink.py, used by the tests) parses every command and message and tops
out near the rate one sender reaches, so measuring with it would mostly measure it. This sink
speaks just enough SMTP for smtplib (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, and
PIPELINING as relays offer it), runs one asyncio server per process on a shared port
(SO_REUSEPORT, the kernel spreads connections) and on a port of each process's own (``ports``:
a sender that must not share a process with another, as each raw sender, connects there),
and appends each message's Message-ID to a per-process file, flushed when the process stops.
With ``latency_ms`` it answers each DATA that much later, as a distant relay does; the wait
is a timer on the event loop, so every connection waits at the same time.

    sink = FastSink(processes=2).start(); ...; ids = sink.stop()  # list of Message-IDs
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing as mp
import os
import signal
import socket
import tempfile
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Self

_END = b"\r\n.\r\n"


class _Session(asyncio.Protocol):
    def __init__(self, ids: list[bytes], latency: float = 0.0) -> None:
        self.ids = ids
        self.latency = latency
        self.buffer = b""
        self.in_data = False
        self.transport: asyncio.Transport | None = None
        self.replies: list[bytes] | None = None  # gathered while one read is handled
        self.quitting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 fastsink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        # The replies to what one read held go out in one write, as Postfix's smtpd flushes
        # them: written one by one, a pipelining client would wait on Nagle's algorithm.
        self.replies = []
        try:
            self._consume(data)
        finally:
            replies, self.replies = self.replies, None
            if replies:
                self._write(b"".join(replies))
            if self.quitting and self.transport is not None:
                self.transport.close()

    def _consume(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(_END)
                if end < 0:
                    return
                self._message(self.buffer[: end + 2])
                self.buffer = self.buffer[end + len(_END) :]
                self.in_data = False
                if self.latency:
                    loop = asyncio.get_running_loop()
                    loop.call_later(self.latency, self._reply, b"250 2.0.0 Ok: queued\r\n")
                else:
                    self._reply(b"250 2.0.0 Ok: queued\r\n")
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            line, self.buffer = self.buffer[:line_end], self.buffer[line_end + 2 :]
            self._command(line)

    def _reply(self, text: bytes) -> None:
        if self.replies is not None:
            self.replies.append(text)
        else:  # a late answer (the latency timer): on its own
            self._write(text)

    def _write(self, text: bytes) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(text)

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        if verb == b"EHLO":
            self._reply(b"250-fastsink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n")
        elif verb == b"DATA":
            self.in_data = True
            self._reply(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"QUIT":
            self._reply(b"221 Bye\r\n")
            self.quitting = True  # closed once the replies are written
        else:  # HELO, MAIL, RCPT, RSET, NOOP
            self._reply(b"250 Ok\r\n")

    def _message(self, raw: bytes) -> None:
        header_end = raw.find(b"\r\n\r\n")
        head = b"\r\n" + raw[: header_end if header_end >= 0 else len(raw)]
        start = head.find(b"\r\nMessage-ID:")
        if start < 0:
            self.ids.append(b"<none>")
            return
        start += len(b"\r\nMessage-ID:")
        end = head.find(b"\r\n", start)
        self.ids.append(head[start : end if end >= 0 else len(head)].strip())


def serve_until_stopped(
    ports: tuple[int, int], protocol: Callable[[], asyncio.Protocol], ready: mp.synchronize.Event
) -> None:
    """Serves ``protocol`` on the shared port (SO_REUSEPORT) and this process's own port until
    SIGTERM; ``ready`` is set once it listens."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        servers = [
            await loop.create_server(protocol, sock=_listening(port), backlog=512) for port in ports
        ]
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        ready.set()
        await stop.wait()
        for server in servers:
            server.close()

    asyncio.run(main())


def _listening(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def _serve(
    ports: tuple[int, int], out: str, ready: mp.synchronize.Event, latency: float = 0.0
) -> None:
    ids: list[bytes] = []
    serve_until_stopped(ports, lambda: _Session(ids, latency), ready)
    Path(out).write_bytes(b"\n".join(ids) + (b"\n" if ids else b""))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcesses:
    """A fake server as several processes sharing one port (SO_REUSEPORT), each writing the
    ids it accepted to its own file when stopped: the benchmarks' SMTP sink and ESP API."""

    what = "the server"
    prefix = "servers-"

    def __init__(self, *, processes: int = 2, port: int = 0) -> None:
        self.port = port or free_port()
        self.ports = [free_port() for _ in range(processes)]  # each process's own
        self.processes = processes
        self.dir = Path(tempfile.mkdtemp(prefix=self.prefix))
        self.procs: list[BaseProcess] = []
        self.counts: list[int] = []  # ids each process accepted, once stopped

    def serve(self) -> Callable[[tuple[int, int], str, Any], None]:
        """The function each process runs: ((shared port, own port), file for the ids, event
        set when ready)."""
        raise NotImplementedError

    def start(self) -> Self:
        ctx = mp.get_context("spawn")
        for index in range(self.processes):
            ready = ctx.Event()
            proc = ctx.Process(
                target=self.serve(),
                args=((self.port, self.ports[index]), str(self.dir / f"{index}.ids"), ready),
                daemon=True,
            )
            proc.start()
            if not ready.wait(30):
                raise RuntimeError(f"{self.what} did not start")
            self.procs.append(proc)
        return self

    def stop(self) -> list[str]:
        """Stops every process and returns every id accepted, duplicates included."""
        for proc in self.procs:
            if proc.pid:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            proc.join(60)
        ids: list[str] = []
        self.counts = []
        for path in sorted(self.dir.glob("*.ids")):
            lines = [line for line in path.read_text().splitlines() if line]
            self.counts.append(len(lines))
            ids += lines
        return ids


class FastSink(ServerProcesses):
    what = "the sink"
    prefix = "fastsink-"

    def __init__(self, *, processes: int = 2, port: int = 0, latency_ms: float = 0.0) -> None:
        super().__init__(processes=processes, port=port)
        self.latency = latency_ms / 1000

    def serve(self) -> Callable[[tuple[int, int], str, Any], None]:
        return functools.partial(_serve, latency=self.latency)
