//! A JSON client of the example apps, runtime-neutral: an async-tungstenite stream of either
//! runtime. Included by `example_chat.rs` and `example_game_lobby.rs`, which add what is
//! particular to their app.

use async_tungstenite::tungstenite::{Error, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{Value, json};

/// One client of an example app.
pub struct Peer<S> {
    pub ws: S,
    /// Who it is, for failure messages.
    pub name: &'static str,
    /// The error message of an unknown type, which a fence expects.
    unknown: &'static str,
    fences: u32,
}

impl<S> Peer<S>
where
    S: Stream<Item = Result<Message, Error>> + Sink<Message, Error = Error> + Unpin,
{
    /// `unknown` is the app's error message for the unknown type `fence`.
    pub fn new(ws: S, name: &'static str, unknown: &'static str) -> Self {
        Peer {
            ws,
            name,
            unknown,
            fences: 0,
        }
    }

    pub async fn send(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        self.ws
            .send(Message::text(text))
            .await
            .unwrap_or_else(|e| panic!("{}: send: {e}", self.name));
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send(value.to_string()).await;
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.ws
            .send(Message::binary(data.to_vec()))
            .await
            .unwrap_or_else(|e| panic!("{}: send: {e}", self.name));
    }

    /// The next message, which must be text (pings and pongs are skipped).
    pub async fn recv_text(&mut self) -> String {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return text.as_str().to_owned(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("{}: expected a text message, got {other:?}", self.name),
            }
        }
    }

    /// The next message, parsed as JSON.
    pub async fn recv(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text}", self.name))
    }

    /// The next message must be `expected`, exactly.
    pub async fn expect(&mut self, expected: Value) {
        let got = self.recv().await;
        assert_eq!(got, expected, "{}: unexpected message", self.name);
    }

    /// Proves that nothing else was queued to this player: a request that only it is
    /// answered must get the next message. The first fence also proves that the player is
    /// registered (and in the lobby: that happens before its first message is handled).
    pub async fn fence(&mut self) {
        self.fences += 1;
        let id = format!("fence-{}", self.fences);
        self.send_json(json!({"type": "fence", "id": id})).await;
        self.expect(json!({
            "type": "error",
            "payload": {"message": self.unknown},
            "id": id,
        }))
        .await;
    }

    /// Closes normally and waits for the end of the stream.
    pub async fn close(mut self) {
        self.ws
            .close()
            .await
            .unwrap_or_else(|e| panic!("{}: close: {e}", self.name));
        while let Some(Ok(_)) = self.ws.next().await {}
    }

    /// The next message must be a close frame with `code`; then the close handshake is
    /// completed and the stream ends.
    pub async fn expect_close(&mut self, code: u16) {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    assert_eq!(u16::from(frame.code), code, "{}: close code", self.name);
                    while let Some(Ok(_)) = self.ws.next().await {}
                    return;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("{}: expected a close frame, got {other:?}", self.name),
            }
        }
    }
}

pub fn error(message: &str) -> Value {
    json!({"type": "error", "payload": {"message": message}})
}

/// The message of an error reply without an `id`, which must be its only other field.
pub fn error_message(reply: &Value) -> &str {
    let object = reply.as_object().expect("an object");
    assert_eq!(object.len(), 2, "{reply}");
    assert_eq!(reply["type"], "error", "{reply}");
    let payload = reply["payload"].as_object().expect("a payload object");
    assert_eq!(payload.len(), 1, "{reply}");
    payload["message"].as_str().expect("a message")
}
