"""The SSE examples (release binaries) driven by independent clients: Python `websockets` for the
WebSockets, and for HTTP and Server-Sent Events `urllib` and a raw asyncio socket with an
event-stream parser written from the WHATWG HTML spec (chunked transfer decoded by hand).

    python hub_sse_examples.py notifications|live_feed PORT

Each check exits non-zero with a message on the first difference from the documented wire
format (examples/src/notifications.rs, examples/src/live_feed.rs). Every wait is bounded;
nothing sleeps to synchronise: a WebSocket subscriber is known to be subscribed once its `ping`
is answered, an SSE one once its response head arrived, and a client that must not receive
something is fenced by a later message that must come next.
"""

import asyncio
import datetime
import json
import sys
import urllib.error
import urllib.request

import websockets
from websockets.asyncio.client import connect

TIMEOUT = 5.0


def fail(why):
    print(f"FAIL: {why}")
    sys.exit(1)


def expect(got, want, what):
    if got != want:
        fail(f"{what}: got {got!r}, want {want!r}")


def check_time(stamp, what):
    try:
        at = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except (AttributeError, ValueError) as e:
        fail(f"{what}: {stamp!r} is not RFC 3339: {e}")
    if at.tzinfo is None:
        fail(f"{what}: {stamp!r} has no offset")
    skew = abs((at - datetime.datetime.now(datetime.timezone.utc)).total_seconds())
    if skew > 300:
        fail(f"{what}: {stamp!r} is not now")


# ---- HTTP with urllib ---------------------------------------------------------------------------


def http(method, url, body=None, headers=None):
    """(status, headers, body bytes) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


async def ahttp(*args, **kwargs):
    return await asyncio.to_thread(http, *args, **kwargs)


# ---- SSE over a raw socket ----------------------------------------------------------------------


class Sse:
    """One event-stream response: `await Sse.open(port, target)`, then `await sse.event()`."""

    def __init__(self, reader, writer, status, headers):
        self.reader, self.writer = reader, writer
        self.status, self.headers = status, headers
        self.chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        self.buf = b""
        self.retry = None
        self.comments = 0

    @classmethod
    async def open(cls, port, target, headers=None):
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
        lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        fields = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                fields[name.strip().lower()] = value.strip()
        return cls(reader, writer, status, fields)

    async def _more(self):
        """Appends the next piece of the body to the buffer; False at its end."""
        if not self.chunked:
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            self.buf += data
            return bool(data)
        size_line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), TIMEOUT)
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            return False
        chunk = await asyncio.wait_for(self.reader.readexactly(size + 2), TIMEOUT)
        if chunk[-2:] != b"\r\n":
            fail(f"a chunk not ended by CRLF: {chunk[-8:]!r}")
        self.buf += chunk[:-2]
        return True

    async def _line(self):
        """The next line (ended by CRLF, LF or CR); None at the end of the body."""
        while True:
            at = min((i for i in (self.buf.find(b"\n"), self.buf.find(b"\r")) if i >= 0), default=-1)
            # A CR at the end of what arrived may be the first half of a CRLF: wait.
            if at >= 0 and not (self.buf[at:at + 1] == b"\r" and at + 1 == len(self.buf)):
                line = self.buf[:at]
                skip = 2 if self.buf[at:at + 2] == b"\r\n" else 1
                self.buf = self.buf[at + skip:]
                return line.decode("utf-8")
            if not await self._more():
                return None

    async def event(self):
        """The next dispatched event as (type, data, id-field-or-None); fails if the stream ends."""
        kind, data, has_data, event_id = "", [], False, None
        while True:
            line = await self._line()
            if line is None:
                fail("the event stream ended")
            if line == "":
                if has_data:
                    return (kind or "message", "\n".join(data), event_id)
                kind, data, has_data, event_id = "", [], False, None
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "event":
                kind = value
            elif field == "data":
                data.append(value)
                has_data = True
            elif field == "id" and "\0" not in value:
                event_id = value
            elif field == "retry" and value.isdigit():
                self.retry = int(value)

    def close(self):
        self.writer.close()


def expect_event_stream(sse, what):
    expect(sse.status, 200, f"{what} status")
    expect(sse.headers.get("content-type", "").split(";")[0].strip(), "text/event-stream", f"{what} content type")


# ---- notifications ------------------------------------------------------------------------------


async def subscribed_ws(base, user, tag):
    ws = await connect(f"ws://{base}/ws/notifications?user_id={user}")
    await ws.send(json.dumps({"type": "ping", "id": tag}))
    expect(json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)), {"type": "pong", "id": tag}, f"{tag} pong")
    return ws


async def fence(ws, tag):
    """The next message must be the error answering an unknown request of our own."""
    await ws.send(json.dumps({"type": f"fence-{tag}", "id": tag}))
    got = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    if got.get("type") != "error" or got.get("id") != tag:
        fail(f"something arrived before the fence {tag}: {got!r}")


async def notify(port, user, title, body):
    payload = json.dumps({"user_id": user, "title": title, "body": body}).encode()
    status, headers, answer = await ahttp("POST", f"http://127.0.0.1:{port}/api/notify", payload,
                                          {"Content-Type": "application/json"})
    expect(status, 200, f"POST for {user!r}")
    expect(headers.get_content_type(), "application/json", "POST answer type")
    answer = json.loads(answer)
    if not isinstance(answer.get("id"), str) or not isinstance(answer.get("delivered"), int):
        fail(f"POST answer {answer!r}")
    return answer["id"], answer["delivered"]


def check_notification(data, nid, title, body, what):
    if not isinstance(data, dict):
        fail(f"{what}: {data!r}")
    check_time(data.get("timestamp"), f"{what} timestamp")
    expect({k: v for k, v in data.items() if k != "timestamp"}, {"id": nid, "title": title, "body": body}, what)


async def ws_notification(ws, nid, title, body, what):
    msg = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    expect(sorted(msg), ["data", "type"], f"{what} keys")
    expect(msg["type"], "notification", f"{what} type")
    check_notification(msg["data"], nid, title, body, what)
    return msg["data"]


async def sse_notification(sse, nid, title, body, what):
    kind, data, event_id = await sse.event()
    expect(kind, "notification", f"{what} event type")
    if event_id is None or not event_id.isdigit():
        fail(f"{what}: id {event_id!r}")
    data = json.loads(data)
    check_notification(data, nid, title, body, what)
    return data, int(event_id)


async def notifications(port):
    base = f"127.0.0.1:{port}"
    # Refusals.
    try:
        async with connect(f"ws://{base}/ws/notifications"):
            fail("a WebSocket without user_id was upgraded")
    except websockets.exceptions.InvalidStatus as e:
        expect(e.response.status_code, 400, "WebSocket without user_id")
    expect((await ahttp("GET", f"http://{base}/events"))[0], 400, "SSE without user_id")
    expect((await ahttp("GET", f"http://{base}/events?user_id={'u' * 65}"))[0], 400, "SSE user_id too long")
    for bad in (b"not json", b"{}", b'{"user_id":"alice","title":"t"}', b'["alice","t","b"]'):
        status, _, answer = await ahttp("POST", f"http://{base}/api/notify", bad)
        expect(status, 400, f"POST {bad!r}")
        if not isinstance(json.loads(answer).get("error"), str):
            fail(f"POST {bad!r} answered {answer!r}")
    status, headers, _ = await ahttp("GET", f"http://{base}/api/notify")
    expect((status, headers.get("Allow")), (405, "POST"), "GET /api/notify")

    alice_ws = await subscribed_ws(base, "alice", "a")
    bob_ws = await subscribed_ws(base, "bob", "b")
    alice_sse = await Sse.open(port, "/events?user_id=alice")
    bob_sse = await Sse.open(port, "/events?user_id=bob")
    expect_event_stream(alice_sse, "alice's stream")

    # To alice only: both her connections, the same data.
    nid, delivered = await notify(port, "alice", "Hello", "for alice")
    expect(delivered, 2, "delivered to alice's connections")
    over_ws = await ws_notification(alice_ws, nid, "Hello", "for alice", "alice ws")
    over_sse, first_id = await sse_notification(alice_sse, nid, "Hello", "for alice", "alice sse")
    expect(over_sse, over_ws, "the same notification over SSE and WebSocket")
    await fence(bob_ws, "b1")
    bob_id, _ = await notify(port, "bob", "Hi", "for bob")
    await sse_notification(bob_sse, bob_id, "Hi", "for bob", "bob sse (nothing of alice's before)")
    await ws_notification(bob_ws, bob_id, "Hi", "for bob", "bob ws")
    await fence(alice_ws, "a1")

    # To everyone.
    all_id, delivered = await notify(port, "", "Maintenance", "at noon")
    expect(delivered, 4, "delivered to everyone")
    for ws, who in ((alice_ws, "alice"), (bob_ws, "bob")):
        await ws_notification(ws, all_id, "Maintenance", "at noon", f"{who} ws, everyone")
    _, seen_id = await sse_notification(alice_sse, all_id, "Maintenance", "at noon", "alice sse, everyone")
    await sse_notification(bob_sse, all_id, "Maintenance", "at noon", "bob sse, everyone")
    if len({nid, bob_id, all_id}) != 3 or seen_id <= first_id:
        fail(f"ids: {nid!r} {bob_id!r} {all_id!r}, event ids {first_id} {seen_id}")

    # alice's stream goes; she reconnects with Last-Event-ID and gets what she missed.
    alice_sse.close()
    missed_id, _ = await notify(port, "alice", "While away", "missed")
    await notify(port, "bob", "Not yours", "")
    back = await Sse.open(port, "/events?user_id=alice", {"Last-Event-ID": str(seen_id)})
    expect_event_stream(back, "alice's reconnected stream")
    await sse_notification(back, missed_id, "While away", "missed", "replayed after Last-Event-ID")
    live_id, _ = await notify(port, "alice", "Live", "")
    await sse_notification(back, live_id, "Live", "", "live after the replay (bob's not replayed)")
    expect(back.retry, 3000, "retry")

    for s in (back, bob_sse):
        s.close()
    await alice_ws.close()
    await bob_ws.close()
    print("notifications: refusals, per-user and everyone delivery over WebSocket and SSE, ids, Last-Event-ID replay as documented")


# ---- live_feed ----------------------------------------------------------------------------------


async def tick(sse, what):
    kind, data, event_id = await sse.event()
    expect(kind, "tick", f"{what} event type")
    if event_id is None or not event_id.isdigit():
        fail(f"{what}: id {event_id!r}")
    data = json.loads(data)
    if not isinstance(data.get("seq"), int) or not isinstance(data.get("clients"), int):
        fail(f"{what}: {data!r}")
    check_time(data.get("time"), f"{what} time")
    return data


async def tick_until(sse, ticks, what, until):
    seen = []
    for _ in range(ticks):
        t = await tick(sse, what)
        if until(t):
            return t
        seen.append(t)
    fail(f"{what}: not within {ticks} ticks: {seen!r}")


async def live_feed(port):
    base = f"127.0.0.1:{port}"
    status, headers, page = await ahttp("GET", f"http://{base}/")
    expect((status, headers.get_content_type()), (200, "text/html"), "the page")
    page = page.decode()
    for needle in ('new EventSource("/feed")', 'id="clients"'):
        if needle not in page:
            fail(f"the page lacks {needle}")

    a = await Sse.open(port, "/feed")
    expect_event_stream(a, "/feed")
    first = await tick(a, "a's first tick")
    if first["clients"] < 1:
        fail(f"a subscriber counts itself: {first!r}")
    second = await tick(a, "a's second tick")
    expect(second["seq"], first["seq"] + 1, "ticks in order")

    b = await Sse.open(port, "/feed")
    expect_event_stream(b, "b's /feed")
    both = await tick_until(a, 3, "the count grows", lambda t: t["clients"] > second["clients"])
    await tick(b, "b's first tick")
    b.close()
    await tick_until(a, 10, "the count drops", lambda t: t["clients"] < both["clients"])
    expect(a.retry, 2000, "retry")
    a.close()
    print("live_feed: page with EventSource, ticks every second, client count grows and drops")


async def main():
    which, port = sys.argv[1], int(sys.argv[2])
    await asyncio.wait_for({"notifications": notifications, "live_feed": live_feed}[which](port), 60)


asyncio.run(main())
