// tidings chat: the script of the chat page (served at /chat.js). The wire protocol is documented
// in examples/src/chat.rs.
//
//   startChat({ user, connect })
//
// runs the chat in a page that has the chat page's elements (ids status, user-name, messages,
// rooms-list, room-select, message-input, send-button, room-input, join-button, leave-button and
// the forms send-form and room-form). `user` is the name shown (and used to tell this page's own
// joins and leaves); `connect` is an `async () => url` called before each (re)connection for the
// WebSocket URL, so that a page can fetch a fresh one-time ticket each time. A connection that
// closes (or a `connect` that fails) is retried with backoff until the page itself goes away.
// Server data reaches the document through textContent only.
"use strict";

(() => {
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const JITTER = 0.2;       // ±20%
  const STABLE_MS = 5000;   // a connection open this long resets the backoff

  function startChat({ user, connect }) {
    const $ = (id) => document.getElementById(id);
    $("user-name").textContent = user;

    let ws = null;
    let leaving = false;         // the page is going away: no reconnecting
    let backoff = BACKOFF_FIRST_MS;
    let stableTimer = null;
    let retryTimer = null;
    let countdown = null;
    let everOpen = false;

    const rooms = new Set();     // the rooms this connection is in
    const wanted = new Set();    // the rooms to be in again after a reconnection
    let pending = new Map();     // request id -> {type, room}: our own joins and leaves
    let nextId = 1;
    let welcomed = false;        // the server's automatic join of "general" was seen
    let roomList = [];           // the last `rooms` event: [{name, members}]
    let selected = "";           // the room to send to, kept across reconnections

    const isOpen = () => ws !== null && ws.readyState === WebSocket.OPEN;

    function setStatus(text, cls) {
      $("status").textContent = text;
      $("status").className = cls || "";
    }

    // Appends a line made of [text, class] parts; all text goes in as textContent.
    function show(parts, lineClass) {
      const list = $("messages");
      const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
      const li = document.createElement("li");
      if (lineClass) li.className = lineClass;
      for (const [text, cls] of parts) {
        const span = document.createElement("span");
        span.textContent = text;
        if (cls) span.className = cls;
        li.append(span);
      }
      list.append(li);
      if (atBottom) list.scrollTop = list.scrollHeight;
    }

    const time = (ts) => new Date(ts || Date.now()).toLocaleTimeString();
    const notice = (text, cls) => show([[time(), "time"], [text]], cls || "notice");

    function element(tag, text, cls) {
      const el = document.createElement(tag);
      if (text !== undefined) el.textContent = text;
      if (cls) el.className = cls;
      return el;
    }

    // The room selector, the rooms panel and the buttons, from the state above.
    function render() {
      const usable = isOpen();
      const select = $("room-select");
      select.replaceChildren(...[...rooms].sort().map((room) => {
        const option = element("option", room);
        option.value = room;
        return option;
      }));
      if (rooms.has(selected)) select.value = selected;

      // Every room the server listed, and ours even before it lists them.
      const counts = new Map(roomList.map((r) => [r.name, r.members]));
      for (const room of rooms) if (!counts.has(room)) counts.set(room, null);
      const items = [...counts.keys()].sort().map((name) => {
        const mine = rooms.has(name);
        const members = counts.get(name);
        const li = element("li", undefined, mine ? "mine" : "");
        li.dataset.room = name;
        const button = element("button", mine ? "leave" : "join", mine ? "leave" : "join");
        button.type = "button";
        button.disabled = !usable;
        button.onclick = () => send(mine ? "leave_room" : "join_room", { room: name });
        li.append(
          element("span", `#${name}`, "name"),
          element("span", members === null ? "" : `${members}`, "count"),
          button,
        );
        if (members !== null) li.title = `${members} member${members === 1 ? "" : "s"}`;
        return li;
      });
      $("rooms-list").replaceChildren(...items);

      $("send-button").disabled = !usable || rooms.size === 0;
      $("leave-button").disabled = !usable || rooms.size === 0;
      $("join-button").disabled = !usable;
    }

    function send(type, payload, rejoin) {
      if (!isOpen()) return;
      const id = `req-${nextId++}`;
      if (type === "join_room" || type === "leave_room") {
        pending.set(id, { type, room: payload.room, rejoin: !!rejoin });
      }
      ws.send(JSON.stringify(payload === undefined ? { type, id } : { type, payload, id }));
    }

    // The request behind an announcement of this page's own join or leave, if it is one (the
    // server's automatic join of general counts as a rejoin).
    function ours(type, room) {
      if (type === "user_joined" && room === "general" && !welcomed) {
        welcomed = true;
        return { type: "join_room", room, rejoin: true };
      }
      const request = type === "user_joined" ? "join_room" : "leave_room";
      for (const [id, r] of pending) {
        if (r.type === request && r.room === room) {
          pending.delete(id);
          return r;
        }
      }
      return null;
    }

    function onMessage(event) {
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      if (!msg || typeof msg !== "object") return;
      switch (msg.type) {
        case "chat": {
          const p = msg.payload || {};
          show([[time(p.timestamp), "time"], [`#${p.room}`, "room"], [`${p.user}`, "user"],
                [`${p.text}`, "text"]]);
          break;
        }
        case "user_joined":
        case "user_left": {
          const d = msg.data || {};
          const joined = msg.type === "user_joined";
          const request = d.user === user ? ours(msg.type, d.room) : null;
          if (request) {
            if (joined) {
              rooms.add(d.room);
              wanted.add(d.room);
              // Send to the room just joined (or back to where we were).
              if (!request.rejoin || !wanted.has(selected)) selected = d.room;
            } else {
              rooms.delete(d.room);
              wanted.delete(d.room);
            }
            render();
          }
          show([[time(), "time"], [`#${d.room}`, "room"], [`${d.user} ${joined ? "joined" : "left"}`]],
               "notice");
          break;
        }
        case "rooms":
          roomList = Array.isArray(msg.data && msg.data.rooms) ? msg.data.rooms : [];
          render();
          break;
        case "error": {
          const request = msg.id !== undefined ? pending.get(msg.id) : undefined;
          if (request) {
            pending.delete(msg.id);
            if (request.type === "join_room") wanted.delete(request.room);
          }
          notice(`error: ${msg.payload && msg.payload.message}`, "error");
          break;
        }
      }
    }

    function onOpen() {
      everOpen = true;
      setStatus("connected", "open");
      stableTimer = setTimeout(() => { backoff = BACKOFF_FIRST_MS; }, STABLE_MS);
      // A fresh connection: the server puts us in general and nowhere else.
      rooms.clear();
      pending = new Map();
      welcomed = false;
      render();
      for (const room of [...wanted].sort()) {
        if (room !== "general") send("join_room", { room }, true);
      }
      send("list_rooms");
    }

    function onClose(event) {
      clearTimeout(stableTimer);
      ws = null;
      rooms.clear();
      render();
      if (leaving) return;
      const why = event ? `${event.code}${event.reason ? " " + event.reason : ""}` : "failed";
      if (everOpen) notice(`disconnected (${why})`);
      everOpen = false;
      retry();
    }

    // Waits the backoff (with jitter), counting down in #status, then connects again.
    function retry() {
      const delay = backoff * (1 - JITTER + Math.random() * 2 * JITTER);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      const until = Date.now() + delay;
      const tick = () => {
        const left = Math.max(0, until - Date.now());
        setStatus(`reconnecting in ${Math.max(1, Math.ceil(left / 1000))}s…`, "closed");
      };
      tick();
      countdown = setInterval(tick, 250);
      retryTimer = setTimeout(() => {
        clearInterval(countdown);
        open();
      }, delay);
    }

    async function open() {
      if (leaving) return;
      setStatus("connecting…", "");
      let url;
      try {
        url = await connect();
        if (leaving) return;
        ws = new WebSocket(url);
      } catch (e) {
        console.error("chat: connect failed", e);
        onClose(null);
        return;
      }
      ws.onopen = onOpen;
      ws.onclose = onClose;
      ws.onmessage = onMessage;
    }

    $("room-select").onchange = () => { selected = $("room-select").value; };

    $("send-form").onsubmit = (event) => {
      event.preventDefault();
      const input = $("message-input");
      const room = $("room-select").value;
      if (!input.value.trim() || !room || !isOpen()) return;
      send("chat", { room, text: input.value });
      input.value = "";
    };

    $("room-form").onsubmit = (event) => {
      event.preventDefault();
      const input = $("room-input");
      const room = input.value.trim();
      if (!room || !isOpen()) return;
      send("join_room", { room });
      input.value = "";
    };

    $("leave-button").onclick = () => {
      const room = $("room-select").value;
      if (room) send("leave_room", { room });
    };

    // The page going away closes the connection itself: no reconnecting. Coming back from the
    // back-forward cache connects again.
    addEventListener("pagehide", () => {
      leaving = true;
      clearTimeout(retryTimer);
      clearInterval(countdown);
      if (ws) ws.close(1000, "page closed");
    });
    addEventListener("pageshow", (event) => {
      if (event.persisted && leaving) {
        leaving = false;
        backoff = BACKOFF_FIRST_MS;
        open();
      }
    });

    render();
    open();
  }

  window.startChat = startChat;
})();
