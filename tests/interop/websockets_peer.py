#!/usr/bin/env python3
"""Interop peer for tidings' permessage-deflate (RFC 7692), on the Python `websockets` library.

    websockets_peer.py client ws://127.0.0.1:9041/   # checks a tidings echo server
    websockets_peer.py server 9043                   # an echo server for tidings' echo clients

client: runs the variants below against an echo server, one connection each: checks what was
negotiated, sends a set of messages (many 1 KiB JSON-like texts so context takeover matters,
texts under the 512 B threshold, a 1 MiB compressible binary, an incompressible 64 KiB binary,
empty messages, non-ASCII text, a fragmented message), checks every echo is identical, pings,
closes with 1000 and checks the server's close. With deflate negotiated it also checks that the
echoes of the compressible messages of 1 KiB and more came back compressed (RSV1). Then 15
concurrent connections with mixed settings check their echoes. Prints a summary; exits 1 on any
failure.

server: a websockets echo server with websockets' default compression (permessage-deflate,
server_max_window_bits=12, client_max_window_bits=12). Logs one line per connection (what was
negotiated, how many messages arrived compressed) and on SIGTERM/SIGINT prints a summary and
exits 1 if a connection's messages of 1 KiB or more all arrived uncompressed, or if there was no
connection at all.
"""

import asyncio
import json
import random
import signal
import sys
import time

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.frames import DATA_OPCODES, OP_BINARY, OP_TEXT

MAX_SIZE = 64 << 20
LARGE = 1024  # messages this long (and compressible) must be compressed by the peer


def log(*args):
    print(*args, flush=True)


# --- messages -------------------------------------------------------------------------------------


def json_text(i, rng):
    """About 1 KiB of JSON, the same shape every time: what context takeover is for."""
    doc = {
        "type": "event",
        "seq": i,
        "user": {"id": 1000 + i % 17, "name": f"user-{i % 17}", "roles": ["reader", "writer"]},
        "room": f"room-{i % 5}",
        "ts": 1_700_000_000 + i * 37,
        "tags": [f"tag{rng.randrange(50)}" for _ in range(8)],
        "body": "lorem ipsum dolor sit amet, consectetur adipiscing elit " * 4,
        "metrics": {f"m{k}": rng.randrange(10_000) for k in range(12)},
    }
    text = json.dumps(doc)
    return text + " " * max(0, 1024 - len(text))


def messages():
    """(name, payload, expect_compressed) in sending order; a list payload is sent fragmented."""
    rng = random.Random(7692)
    out = []
    for i in range(300):
        out.append((f"json-{i}", json_text(i, rng), True))
    for i in range(40):
        out.append((f"small-{i}", f'{{"seq":{i},"op":"ping","ok":true}}', False))
    out.append(("small-binary", bytes(range(200)), False))
    line = b"".join(b"%08d: the quick brown fox jumps over the lazy dog\n" % i for i in range(20000))
    out.append(("compressible-1MiB", line[: 1 << 20], True))
    out.append(("incompressible-64KiB", rng.randbytes(64 << 10), False))
    out.append(("empty-text", "", False))
    out.append(("empty-binary", b"", False))
    out.append(("non-ascii-small", "héllo wörld — 日本語 — 🎉🚀 — ¿qué?", False))
    out.append(("non-ascii-4KiB", "Grüße aus Köln, 東京から, привет 👋 " * 100, True))
    out.append(("fragmented-3x1KiB", [json_text(1000 + k, rng) for k in range(3)], True))
    return out


# --- frame accounting -----------------------------------------------------------------------------


class Wire:
    """Wraps the negotiated PerMessageDeflate of one connection to see the frames on the wire:
    whether each received data message was compressed (RSV1 on its first frame), and the payload
    bytes before and after inflating/deflating."""

    def __init__(self, ext):
        self.rsv1 = []  # one entry per received data message, in order
        self.in_wire = self.in_data = self.out_wire = self.out_data = 0
        decode, encode = ext.decode, ext.encode

        def counting_decode(frame, *, max_size=None):
            if frame.opcode in (OP_TEXT, OP_BINARY):
                self.rsv1.append(frame.rsv1)
            result = decode(frame, max_size=max_size)
            if frame.opcode in DATA_OPCODES:
                self.in_wire += len(frame.data)
                self.in_data += len(result.data)
            return result

        def counting_encode(frame):
            result = encode(frame)
            if frame.opcode in DATA_OPCODES:
                self.out_data += len(frame.data)
                self.out_wire += len(result.data)
            return result

        ext.decode, ext.encode = counting_decode, counting_encode

    @staticmethod
    def attach(protocol):
        for ext in protocol.extensions:
            if isinstance(ext, PerMessageDeflate):
                return ext, Wire(ext)
        return None, None


def size(message):
    return len(message.encode() if isinstance(message, str) else message)


def ratio(wire, data):
    return f"{wire} B on the wire for {data} B ({wire / data:.1%})" if data else "nothing"


# --- client ---------------------------------------------------------------------------------------

VARIANTS = [
    # name, connect() keyword arguments, expect permessage-deflate, checks on the extension
    ("default (websockets' offer)", {}, True, None),
    ("no compression", {"compression": None}, False, None),
    (
        "no context takeover, 10-bit windows",
        {
            "extensions": [
                ClientPerMessageDeflateFactory(
                    server_no_context_takeover=True,
                    client_no_context_takeover=True,
                    server_max_window_bits=10,
                    client_max_window_bits=10,
                )
            ]
        },
        True,
        lambda e: e.remote_no_context_takeover
        and e.local_no_context_takeover
        and e.remote_max_window_bits <= 10,
    ),
    (
        "context takeover, server window 8 bits, client 9",
        {
            "extensions": [
                ClientPerMessageDeflateFactory(server_max_window_bits=8, client_max_window_bits=9)
            ]
        },
        True,
        lambda e: not e.remote_no_context_takeover and e.remote_max_window_bits == 8,
    ),
]


async def run_variant(url, name, kwargs, want_deflate, check):
    """Returns a list of failure strings (empty: passed)."""
    failures = []
    t0 = time.monotonic()
    async with connect(url, max_size=MAX_SIZE, open_timeout=10, close_timeout=10, **kwargs) as ws:
        header = ws.response.headers.get("Sec-WebSocket-Extensions")
        ext, wire = Wire.attach(ws.protocol)
        log(f"  Sec-WebSocket-Extensions: {header}")
        log(f"  negotiated: {ext!r}")
        if want_deflate:
            if ext is None or header is None or "permessage-deflate" not in header:
                return [f"{name}: permessage-deflate not negotiated (header {header!r})"]
            if check is not None and not check(ext):
                failures.append(f"{name}: negotiated parameters not as offered: {ext!r}")
        elif ext is not None or header is not None:
            return [f"{name}: an extension was agreed without an offer: {header!r}"]

        plan = messages()
        # Everything pipelined: the server sees back-to-back messages, as a busy peer sends them.
        for _, payload, _ in plan:
            await ws.send(iter(payload) if isinstance(payload, list) else payload)
        compressed = 0
        for i, (label, payload, expect_compressed) in enumerate(plan):
            expected = "".join(payload) if isinstance(payload, list) else payload
            try:
                got = await asyncio.wait_for(ws.recv(), 20)
            except Exception as e:  # noqa: BLE001 - any failure is reported
                failures.append(f"{name}: no echo for {label}: {e!r}")
                break
            if type(got) is not type(expected) or got != expected:
                failures.append(
                    f"{name}: echo of {label} differs: sent {type(expected).__name__} of "
                    f"{len(expected)}, got {type(got).__name__} of {len(got)}"
                )
            if wire is not None:
                was = wire.rsv1[i] if i < len(wire.rsv1) else None
                compressed += bool(was)
                if expect_compressed and size(expected) >= LARGE and not was:
                    failures.append(f"{name}: echo of {label} ({size(expected)} B) came back uncompressed")
        latency = await ws.ping()
        await asyncio.wait_for(latency, 10)
        await ws.close(1000, "done")
        rcvd = ws.protocol.close_rcvd
        if rcvd is None or rcvd.code != 1000:
            failures.append(f"{name}: server's close was {rcvd!r}, expected 1000")
        summary = f"  {len(plan)} messages echoed"
        if wire is not None:
            summary += (
                f", {compressed} echoes compressed; client->server {ratio(wire.out_wire, wire.out_data)}"
                f", server->client {ratio(wire.in_wire, wire.in_data)}"
            )
        log(summary + f" ({time.monotonic() - t0:.2f} s)")
    return failures


CONCURRENT = "15 concurrent connections, mixed context takeover and windows"


async def run_concurrent(url):
    """Connections at once, each with its own settings (server window 8 to 15, with and without
    context takeover), each sending its own messages and checking their echoes one by one, so
    the server's connections interleave (they may share state per thread)."""
    t0 = time.monotonic()

    async def one(k):
        bits, nct = (8, 9, 10, 12, 15)[k % 5], k % 3 != 0
        factory = ClientPerMessageDeflateFactory(
            server_no_context_takeover=nct,
            client_no_context_takeover=nct,
            server_max_window_bits=bits,
        )
        rng = random.Random(k)
        failures = []
        async with connect(url, max_size=MAX_SIZE, extensions=[factory]) as ws:
            ext, _ = Wire.attach(ws.protocol)
            if ext is None or ext.remote_max_window_bits > bits:
                return [f"{CONCURRENT}: connection {k}: not negotiated as offered: {ext!r}"]
            for i in range(150):
                if i % 7 == 0:
                    message = rng.randbytes(rng.randrange(600, 5000))
                else:
                    message = f"connection {k} message {i} " * rng.randrange(1, 3000)
                await ws.send(message)
                if await ws.recv() != message:
                    failures.append(f"{CONCURRENT}: connection {k}: echo of message {i} differs")
                await asyncio.sleep(0)
        return failures

    results = await asyncio.gather(*(one(k) for k in range(15)), return_exceptions=True)
    failures = []
    for k, r in enumerate(results):
        if isinstance(r, BaseException):
            failures.append(f"{CONCURRENT}: connection {k}: {type(r).__name__}: {r}")
        else:
            failures += r
    log(f"  15 x 150 messages echoed ({time.monotonic() - t0:.2f} s)")
    return failures


async def client(url):
    failures, failed = [], 0
    runs = [(name, run_variant(url, name, *rest)) for name, *rest in VARIANTS]
    runs.append((CONCURRENT, run_concurrent(url)))
    for name, run in runs:
        log(f"variant: {name}")
        try:
            got = await asyncio.wait_for(run, 60)
        except Exception as e:  # noqa: BLE001
            got = [f"{name}: {type(e).__name__}: {e}"]
        for f in got:
            log(f"  FAIL {f}")
        log(f"  {'PASS' if not got else 'FAIL'} {name}")
        failures += got
        failed += bool(got)
    log(f"websockets client against {url}: {len(runs) - failed} passed, {failed} failed")
    return 1 if failures else 0


# --- server ---------------------------------------------------------------------------------------


async def server(port):
    conns = []  # (peer, header, messages, large, large_compressed, wire)

    async def echo(ws):
        header = ws.response.headers.get("Sec-WebSocket-Extensions")
        ext, wire = Wire.attach(ws.protocol)
        n = large = large_compressed = 0
        try:
            async for message in ws:
                if size(message) >= LARGE:
                    large += 1
                    large_compressed += wire is not None and wire.rsv1[n]
                n += 1
                await ws.send(message)
        finally:
            peer = ws.remote_address
            conns.append((peer, header, n, large, large_compressed, wire))
            line = f"server: {peer[0]}:{peer[1]} extensions={header!r} messages={n} "
            line += f"large={large} large_compressed={large_compressed}"
            if wire is not None:
                line += f"; client->server {ratio(wire.in_wire, wire.in_data)}"
            log(line + f"; close={ws.close_code}")

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(echo, "127.0.0.1", port, max_size=MAX_SIZE):
        log(f"websockets {__import__('websockets').__version__} echo server on ws://127.0.0.1:{port}/")
        await stop
    failed = 0
    for peer, header, _, large, large_compressed, _ in conns:
        if header is None or "permessage-deflate" not in header:
            log(f"server: FAIL {peer[0]}:{peer[1]}: permessage-deflate was not negotiated")
        elif large and not large_compressed:
            log(f"server: FAIL {peer[0]}:{peer[1]}: all {large} messages of 1 KiB+ came uncompressed")
        else:
            continue
        failed += 1
    if not conns:
        log("server: FAIL no connection arrived")
    log(f"websockets server: {len(conns) - failed} passed, {failed} failed")
    return 1 if failed or not conns else 0


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("client", "server"):
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "client":
        return asyncio.run(client(sys.argv[2]))
    return asyncio.run(server(int(sys.argv[2])))


if __name__ == "__main__":
    sys.exit(main())
