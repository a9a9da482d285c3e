"""The hub examples (release binaries) driven by an independent client, Python `websockets`.

    python hub_examples.py chat|game_lobby|fanout PORT

Each check exits non-zero with a message on the first difference from the documented wire
protocol (examples/src/chat.rs, examples/src/game_lobby.rs, examples/hub_fanout_server.rs).
Every wait is bounded (TIMEOUT); nothing sleeps to synchronise: a client that must not receive
something is fenced by a request whose answer must be the next message it gets.
"""

import asyncio
import datetime
import json
import sys
import urllib.request

import websockets
from websockets.asyncio.client import connect

TIMEOUT = 5.0


def fail(why):
    print(f"FAIL: {why}")
    sys.exit(1)


async def recv_json(ws):
    text = await asyncio.wait_for(ws.recv(), TIMEOUT)
    if not isinstance(text, str):
        fail(f"expected text, got {text!r}")
    return json.loads(text)


def expect(got, want, what):
    if got != want:
        fail(f"{what}: got {got!r}, want {want!r}")


async def fence(ws, tag):
    """The next message must be the error answering an unknown request of our own."""
    await ws.send(json.dumps({"type": f"fence-{tag}", "id": tag}))
    got = await recv_json(ws)
    if got.get("type") != "error" or got.get("id") != tag:
        fail(f"something arrived before the fence {tag}: {got!r}")


def rooms(*counts):
    """The chat's `rooms` event with these (name, members) pairs, in order."""
    return {"type": "rooms", "data": {"rooms": [{"name": n, "members": m} for n, m in counts]}}


async def chat(port):
    base = f"127.0.0.1:{port}"
    page = urllib.request.urlopen(f"http://{base}/", timeout=TIMEOUT)
    html = page.read().decode()
    expect(page.headers.get_content_type(), "text/html", "page content type")
    for needle in ('<script src="/chat.js">', "/ws?user=", 'id="rooms-list"', 'id="name-input"'):
        if needle not in html:
            fail(f"the page lacks {needle}")
    script = urllib.request.urlopen(f"http://{base}/chat.js", timeout=TIMEOUT)
    expect(script.headers.get("Content-Type"), "application/javascript; charset=utf-8", "script content type")
    if "new WebSocket(" not in script.read().decode():
        fail("the script does not open a WebSocket")
    async with connect(f"ws://{base}/ws?user=alice") as alice:
        expect(await recv_json(alice), {"type": "user_joined", "data": {"user": "alice", "room": "general"}}, "alice's own join")
        expect(await recv_json(alice), rooms(("general", 1)), "rooms pushed after alice's join")
        async with connect(f"ws://{base}/ws") as anon:
            joined = {"type": "user_joined", "data": {"user": "anonymous", "room": "general"}}
            expect(await recv_json(anon), joined, "anonymous's own join")
            expect(await recv_json(anon), rooms(("general", 2)), "rooms right after anonymous's own join")
            expect(await recv_json(alice), joined, "alice sees anonymous join")
            expect(await recv_json(alice), rooms(("general", 2)), "rooms pushed to alice: general up")
            await anon.send(json.dumps({"type": "join_room", "payload": {"room": "r"}}))
            expect(await recv_json(anon), {"type": "user_joined", "data": {"user": "anonymous", "room": "r"}}, "join r")
            expect(await recv_json(anon), rooms(("general", 2), ("r", 1)), "rooms pushed after the join of r")
            expect(await recv_json(alice), rooms(("general", 2), ("r", 1)), "rooms pushed to alice, not in r")
            # alice is not in r: r's chat never reaches her, and her own chat to r is refused.
            await anon.send(json.dumps({"type": "chat", "payload": {"room": "r", "text": "secret"}}))
            msg = await recv_json(anon)
            expect(msg["type"], "chat", "chat type")
            p = msg["payload"]
            expect((p["room"], p["user"], p["text"]), ("r", "anonymous", "secret"), "chat payload")
            datetime.datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00"))
            await alice.send(json.dumps({"type": "chat", "payload": {"room": "r", "text": "x"}, "id": "c1"}))
            err = await recv_json(alice)
            expect((err["type"], err.get("id")), ("error", "c1"), "non-member chat refused")
            await alice.send(json.dumps({"type": "chat", "payload": {"room": "general", "text": "hi all"}}))
            for ws in (alice, anon):
                got = await recv_json(ws)
                expect((got["type"], got["payload"]["user"], got["payload"]["text"]), ("chat", "alice", "hi all"), "general chat")
            await alice.send(json.dumps({"type": "list_rooms"}))
            expect(await recv_json(alice), rooms(("general", 2), ("r", 1)), "list_rooms answered")
            await alice.send(json.dumps({"type": "list_rooms", "payload": {}}))
            expect(await recv_json(alice), rooms(("general", 2), ("r", 1)), "list_rooms with {} answered")
            await alice.send("{not json")
            expect((await recv_json(alice))["type"], "error", "malformed JSON answered")
            await fence(alice, "a1")
            await fence(anon, "n1")
        # anonymous disconnected: alice (in general only) hears it left general, then the rooms
        # without it (r, emptied, is gone).
        expect(await recv_json(alice), {"type": "user_left", "data": {"user": "anonymous", "room": "general"}}, "disconnect = leave")
        expect(await recv_json(alice), rooms(("general", 1)), "rooms pushed after the disconnect")
        await fence(alice, "a2")
    print("chat: page, script, rooms, chat, errors and disconnect as documented")


async def game_lobby(port):
    base = f"ws://127.0.0.1:{port}/ws/game"
    try:
        async with connect(base):
            fail("a connection without player_id was upgraded")
    except websockets.exceptions.InvalidStatus as e:
        expect(e.response.status_code, 400, "missing player_id")
    async with connect(f"{base}?player_id=p1") as p1, connect(f"{base}?player_id=p2") as p2, \
            connect(f"{base}?player_id=p3") as p3:
        try:
            async with connect(f"{base}?player_id=p1"):
                fail("a second p1 was upgraded")
        except websockets.exceptions.InvalidStatus as e:
            expect(e.response.status_code, 409, "duplicate player_id")
        for ws, game in ((p1, "g1"), (p2, "g1"), (p3, "g2")):
            await ws.send(json.dumps({"type": "join_game", "payload": {"game_id": game}, "id": "j"}))
            expect(await recv_json(ws), {"type": "joined", "payload": {"game_id": game}, "id": "j"}, "joined")
        expect(await recv_json(p1), {"type": "player_joined", "payload": {"player": "p2"}}, "p1 told of p2")
        action = '{"type":"game_action", "payload":{"move":[1, 2]},"id":"m-1"}'
        await p1.send(action)
        got = await asyncio.wait_for(p2.recv(), TIMEOUT)
        expect(got, action, "game_action forwarded byte for byte")
        await fence(p1, "p1")  # not echoed to the sender
        await fence(p3, "p3")  # nor to another game
        await p2.send(json.dumps({"type": "chat", "payload": {"text": "gg"}}))
        for ws in (p1, p2):
            expect(await recv_json(ws), {"type": "chat", "payload": {"player": "p2", "text": "gg"}}, "game chat")
        await fence(p3, "p3b")
        await p1.send(json.dumps({"type": "dance"}))
        expect(await recv_json(p1), {"type": "error", "payload": {"message": "unknown command: dance"}}, "unknown command")
    print("game_lobby: refusals, games, forwarding, chat and unknown commands as documented")


async def fanout(port):
    url = f"ws://127.0.0.1:{port}/"
    async with connect(url) as a, connect(url) as b:
        # Registration follows the 101 by a moment: probe until a hears b (bounded).
        for i in range(50):
            await b.send(f"probe {i}")
            try:
                got = await asyncio.wait_for(a.recv(), 0.2)
                break
            except asyncio.TimeoutError:
                continue
        else:
            fail("a never received b's probes")
        if not got.startswith("probe"):
            fail(f"unexpected {got!r}")
        # Drain any later probes a got, fenced by a text only b sends now.
        await b.send("text fence")
        while (got := await asyncio.wait_for(a.recv(), TIMEOUT)) != "text fence":
            if not got.startswith("probe"):
                fail(f"unexpected {got!r}")
        payload = bytes(range(256)) * 4
        await b.send(payload)
        expect(await asyncio.wait_for(a.recv(), TIMEOUT), payload, "binary forwarded with the same opcode and bytes")
        await a.send("from a")
        expect(await asyncio.wait_for(b.recv(), TIMEOUT), "from a", "text forwarded to the other")
    print("hub_fanout_server: text and binary forwarded to the other client, same opcode and bytes")


async def main():
    which, port = sys.argv[1], int(sys.argv[2])
    await asyncio.wait_for({"chat": chat, "game_lobby": game_lobby, "fanout": fanout}[which](port), 60)


asyncio.run(main())
