"""The secure_chat example (release binary) driven by independent clients: Python's `ssl` and
`http.client` for HTTPS, and `websockets` for `wss://`.

    python hub_secure_examples.py secure_chat PORT

The server makes a self-signed development certificate at start, so the clients do not verify
it (check_hostname off, CERT_NONE): what is checked is the documented behaviour behind TLS
(examples/src/secure_chat.rs for the routes, statuses and limits, examples/src/chat.rs for the
chat's wire protocol), run with the development credentials alice / wonderland (no --user).

Each check exits non-zero with a message on the first difference. Every wait is bounded;
nothing sleeps to synchronise. Every POST /login counts against the per-IP login limit
(LOGIN_BURST at once, then LOGIN_REFILL_PER_SEC), so the driver counts its attempts and checks
the limit last.
"""

import asyncio
import datetime
import http.client
import json
import math
import socket
import ssl
import sys
import time
import warnings

import websockets
import websockets.exceptions

try:  # websockets >= 13: the new asyncio implementation
    from websockets.asyncio.client import connect
except ImportError:  # older: the legacy one
    from websockets import connect

TIMEOUT = 5.0
USER, PASSWORD = "alice", "wonderland"
LOGIN_BURST = 5  # attempts an IP may make at once
LOGIN_REFILL_PER_SEC = 0.5  # then one every 2 s
MAX_MESSAGE_BYTES = 512  # a larger WebSocket message closes with 1009
TICKET_LEN = 43  # base64url of 32 bytes

# The refusal before the upgrade: `InvalidStatus` (websockets >= 14, new API) or the legacy
# `InvalidStatusCode` (older, or the legacy client).
with warnings.catch_warnings():  # websockets >= 14 deprecates the legacy name
    warnings.simplefilter("ignore", DeprecationWarning)
    REFUSALS = tuple(
        cls
        for cls in (
            getattr(websockets.exceptions, "InvalidStatus", None),
            getattr(websockets.exceptions, "InvalidStatusCode", None),
        )
        if cls is not None
    )


class Failure(Exception):
    """A difference from the documented behaviour: reported by main, exit status 1."""


def fail(why):
    raise Failure(why)


def expect(got, want, what):
    if got != want:
        fail(f"{what}: got {got!r}, want {want!r}")


def tls_context():
    """A client context that accepts the development certificate (self-signed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---- HTTPS with http.client ---------------------------------------------------------------------


class Https:
    """One fresh HTTPS connection per request; counts the POSTs to /login (the login limit)."""

    def __init__(self, port):
        self.port = port
        self.ctx = tls_context()
        self.login_posts = 0
        self.first_login_at = None

    def request(self, method, path, body=None, headers=None):
        """(status, headers, body bytes) of one request."""
        if method == "POST" and path == "/login":
            self.login_posts += 1
            if self.first_login_at is None:
                self.first_login_at = time.monotonic()
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=TIMEOUT, context=self.ctx)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        except (OSError, http.client.HTTPException) as e:
            fail(f"{method} {path}: {type(e).__name__}: {e}")
        finally:
            conn.close()

    def login(self, username, password, what):
        """POST /login with the JSON credentials: (status, headers, parsed JSON body)."""
        body = json.dumps({"username": username, "password": password}).encode()
        status, headers, raw = self.request("POST", "/login", body, {"Content-Type": "application/json"})
        return status, headers, login_json(headers, raw, what)

    def ticket(self, what):
        """A fresh one-time ticket for alice."""
        status, _, body = self.login(USER, PASSWORD, what)
        expect(status, 200, f"{what}: status of a right login")
        otp = body.get("otp")
        if not isinstance(otp, str) or not otp:
            fail(f"{what}: no ticket in {body!r}")
        return otp


def login_json(headers, raw, what):
    """The JSON object of a /login answer, checking its documented headers."""
    expect(headers.get_content_type(), "application/json", f"{what}: content type")
    expect(headers.get("Cache-Control"), "no-store", f"{what}: Cache-Control")
    try:
        body = json.loads(raw)
    except ValueError as e:
        fail(f"{what}: the body is not JSON ({e}): {raw!r}")
    if not isinstance(body, dict):
        fail(f"{what}: the body is not a JSON object: {body!r}")
    return body


# ---- the checks ---------------------------------------------------------------------------------


def check_plain_http_refused(port):
    """TLS only: a plaintext HTTP request gets no HTTP answer."""
    answer = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            while len(answer) < 5 and (chunk := s.recv(1024)):
                answer += chunk
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass  # no answer, or the connection dropped: not HTTP either way
    except OSError as e:
        fail(f"plaintext connection to port {port}: {e}")
    if answer.startswith(b"HTTP/"):
        fail(f"a plaintext HTTP request was answered in plaintext: {answer[:60]!r}")


def check_page(https):
    status, headers, body = https.request("GET", "/")
    expect(status, 200, "GET / status")
    expect(headers.get("Content-Type"), "text/html; charset=utf-8", "GET / content type")
    page = body.decode()
    for needle in ('id="login-form"', 'id="username"', 'id="password"', 'id="login-button"',
                   'id="login-error"', 'id="messages"', "/chat.js", "/login"):
        if needle not in page:
            fail(f"the page lacks {needle}")
    status, headers, body = https.request("HEAD", "/")
    expect((status, body), (200, b""), "HEAD / answered without a body")
    status, headers, _ = https.request("POST", "/")
    expect((status, headers.get("Allow")), (405, "GET, HEAD"), "POST / refused")
    status, headers, body = https.request("GET", "/chat.js")
    expect(status, 200, "GET /chat.js status")
    expect(headers.get("Content-Type"), "application/javascript; charset=utf-8", "script content type")
    if b"startChat" not in body:
        fail("the script does not define startChat")


def check_login(https):
    """A right and a wrong login (2 attempts); the right one's ticket, for the chat."""
    # Not a POST: 405 without counting (the method is checked before the limit).
    status, headers, raw = https.request("GET", "/login")
    body = login_json(headers, raw, "GET /login")
    expect((status, headers.get("Allow"), body), (405, "POST", {"error": "use POST"}), "GET /login")

    status, _, body = https.login(USER, PASSWORD, "right login")
    expect(status, 200, "right login status")
    otp = body.get("otp")
    if not isinstance(otp, str) or not otp:
        fail(f"right login: no non-empty string otp in {body!r}")
    if len(otp) != TICKET_LEN or not all(c.isalnum() or c in "-_" for c in otp):
        fail(f"right login: the ticket {otp!r} is not {TICKET_LEN} characters of base64url")

    status, _, body = https.login(USER, "not the password", "wrong password")
    expect((status, body), (401, {"error": "invalid username or password"}), "wrong password")
    return otp


def check_bad_logins(https):
    """An unknown user and a body that is not JSON (2 attempts)."""
    status, _, body = https.login("mallory", PASSWORD, "unknown user")
    expect((status, body), (401, {"error": "invalid username or password"}), "unknown user (same answer)")

    status, headers, raw = https.request("POST", "/login", b"username=alice&password=wonderland")
    body = login_json(headers, raw, "form-encoded login")
    expect(status, 400, "a body that is not JSON")
    if not isinstance(body.get("error"), str):
        fail(f"400 without an error message: {body!r}")


async def recv_json(ws, what):
    try:
        text = await asyncio.wait_for(ws.recv(), TIMEOUT)
    except asyncio.TimeoutError:
        fail(f"{what}: nothing within {TIMEOUT} s")
    except websockets.exceptions.ConnectionClosed as e:
        fail(f"{what}: the connection closed ({e})")
    if not isinstance(text, str):
        fail(f"{what}: expected text, got {text!r}")
    return json.loads(text)


def rooms(*counts):
    """The chat's `rooms` event with these (name, members) pairs, in order."""
    return {"type": "rooms", "data": {"rooms": [{"name": n, "members": m} for n, m in counts]}}


def refusal_status(e):
    """The HTTP status of a refused upgrade, from the new or the legacy exception."""
    response = getattr(e, "response", None)
    if response is not None:
        return getattr(response, "status_code", None) or getattr(response, "status", None)
    return getattr(e, "status_code", None)


async def expect_refused(url, ctx, status, what):
    try:
        async with connect(url, ssl=ctx, open_timeout=TIMEOUT):
            fail(f"{what}: upgraded, want {status} before the upgrade")
    except REFUSALS as e:
        expect(refusal_status(e), status, f"{what}: status")
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
        fail(f"{what}: want HTTP {status}, got {type(e).__name__}: {e}")


async def joined(ws, what):
    """A new client's first messages: its own user_joined for general, then the rooms."""
    expect(await recv_json(ws, what), {"type": "user_joined", "data": {"user": USER, "room": "general"}},
           f"{what}: first message")
    expect(await recv_json(ws, what), rooms(("general", 1)), f"{what}: rooms after the join")


def chat_envelope(total_bytes):
    """A chat to general whose envelope is exactly total_bytes long (ASCII)."""
    empty = json.dumps({"type": "chat", "payload": {"room": "general", "text": ""}}, separators=(",", ":"))
    text = "x" * (total_bytes - len(empty))
    msg = json.dumps({"type": "chat", "payload": {"room": "general", "text": text}}, separators=(",", ":"))
    assert len(msg.encode()) == total_bytes
    return msg, text


async def expect_chat(ws, text, what):
    msg = await recv_json(ws, what)
    expect(msg.get("type"), "chat", f"{what}: type")
    p = msg.get("payload") or {}
    expect((p.get("room"), p.get("user"), p.get("text")), ("general", USER, text), f"{what}: payload")
    try:
        datetime.datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00"))
    except (KeyError, AttributeError, ValueError) as e:
        fail(f"{what}: bad timestamp in {p!r}: {e}")


async def check_websocket(otp, port):
    """The ticket of the first login (good for TICKET_LIFETIME = 5 s: used at once)."""
    ctx = tls_context()
    base = f"wss://127.0.0.1:{port}/ws"
    await expect_refused(base, ctx, 401, "/ws without otp")
    await expect_refused(f"{base}?otp=", ctx, 401, "/ws with an empty otp")
    await expect_refused(f"{base}?otp=not-a-ticket-{'A' * 30}", ctx, 401, "/ws with a garbage otp")

    async with connect(f"{base}?otp={otp}", ssl=ctx, open_timeout=TIMEOUT) as ws:
        await joined(ws, "alice's connection")
        await ws.send(json.dumps({"type": "chat", "payload": {"room": "general", "text": "hi"}}))
        await expect_chat(ws, "hi", "alice's chat back")
        # One upgrade per ticket, even while its first connection is open.
        await expect_refused(f"{base}?otp={otp}", ctx, 401, "the same otp a second time")
        await ws.send(json.dumps({"type": "list_rooms"}))
        expect(await recv_json(ws, "list_rooms"), rooms(("general", 1)), "list_rooms (only alice)")
    await expect_refused(f"{base}?otp={otp}", ctx, 401, "the same otp after its connection closed")


async def check_message_limit(https, port):
    ctx = tls_context()
    otp = https.ticket("login for the size limit")
    async with connect(f"wss://127.0.0.1:{port}/ws?otp={otp}", ssl=ctx, open_timeout=TIMEOUT) as ws:
        await joined(ws, "the size-limit connection")
        # Exactly the limit passes ("larger than" closes).
        msg, text = chat_envelope(MAX_MESSAGE_BYTES)
        await ws.send(msg)
        await expect_chat(ws, text, f"a {MAX_MESSAGE_BYTES}-byte message")
        msg, _ = chat_envelope(MAX_MESSAGE_BYTES + 1)
        try:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), TIMEOUT)
            fail(f"a {MAX_MESSAGE_BYTES + 1}-byte message was answered: {got!r}, want close 1009")
        except asyncio.TimeoutError:
            fail(f"a {MAX_MESSAGE_BYTES + 1}-byte message: no close within {TIMEOUT} s")
        except websockets.exceptions.ConnectionClosed as e:
            rcvd = e.rcvd
            expect(rcvd.code if rcvd is not None else None, 1009, "close code of a too big message")


def check_login_limit(https):
    """Last: wrong logins until 429, within what the bucket allows since the first attempt."""
    for round_ in range(3):
        while True:
            status, headers, body = https.login(USER, "wrong", f"wrong login #{https.login_posts + 1}")
            if status == 429:
                break
            expect(status, 401, f"wrong login #{https.login_posts} before the limit")
            elapsed = time.monotonic() - https.first_login_at
            allowed = LOGIN_BURST + math.floor(elapsed * LOGIN_REFILL_PER_SEC) + 1
            if https.login_posts > allowed:
                fail(f"{https.login_posts} login attempts in {elapsed:.1f} s without 429 "
                     f"(burst {LOGIN_BURST}, {LOGIN_REFILL_PER_SEC}/s)")
        n = https.login_posts
        if round_ == 0 and n <= LOGIN_BURST:
            fail(f"429 at login attempt #{n}, within the burst of {LOGIN_BURST}")
        retry_after = headers.get("Retry-After")
        if retry_after is None or not retry_after.isdigit():
            fail(f"429 with Retry-After {retry_after!r}, want whole seconds")
        if not 1 <= int(retry_after) <= math.ceil(1 / LOGIN_REFILL_PER_SEC):
            fail(f"429 with Retry-After {retry_after}, want 1..{math.ceil(1 / LOGIN_REFILL_PER_SEC)}")
        expect(body, {"error": f"too many attempts, try again in {retry_after} s"}, "429 body")
        # The limit is checked first: right credentials learn nothing either. (Right after a
        # 429 the bucket holds less than one attempt; it may just refill one: then drain again.)
        status, _, body = https.login(USER, PASSWORD, "right login over the limit")
        if status == 429:
            return n
        expect(status, 200, "right login over the limit (429, or 200 after a refill)")
    fail("right credentials over the limit were never refused with 429")


async def secure_chat(port):
    check_plain_http_refused(port)
    https = Https(port)
    check_page(https)
    # The logins that must succeed come first (the login limit: LOGIN_BURST attempts at once).
    otp = check_login(https)  # attempts 1-2
    await check_websocket(otp, port)
    await check_message_limit(https, port)  # attempt 3
    check_bad_logins(https)  # attempts 4-5
    limited_at = check_login_limit(https)
    print(f"secure_chat: TLS only, page, /login (200/400/401/405), one-time tickets (401 without, "
          f"garbage, reused), chat as alice, {MAX_MESSAGE_BYTES}-byte limit (1009) and the login "
          f"limit (429 + Retry-After at attempt #{limited_at}) as documented")


async def main():
    which, port = sys.argv[1], int(sys.argv[2])
    try:
        await asyncio.wait_for({"secure_chat": secure_chat}[which](port), 60)
    except asyncio.TimeoutError:
        raise Failure(f"{which} did not finish within 60 s")


try:
    asyncio.run(main())
except Failure as e:
    print(f"FAIL: {e}")
    sys.exit(1)
