//! Support code shared by the tidings examples.
//!
//! [`blocking`] drives the sans-IO core over plain blocking `std::net` sockets: the
//! "bring your own runtime" story in about a hundred lines.
//!
//! [`chat`], [`secure_chat`], [`game_lobby`], [`notifications`] and [`live_feed`] are the logic of
//! the examples of those names: routes built on a hub, runtime-neutral (`tidings_io::Route` is
//! the route type of both server helpers), so the example binaries only parse arguments and
//! serve, and the tests run the same logic in-process on either runtime.
#![forbid(unsafe_code)]

pub mod blocking;
pub mod chat;
pub mod game_lobby;
pub mod live_feed;
pub mod notifications;
pub mod query;
pub mod secure_chat;

/// What the echo clients (`tokio_echo_client`, `smol_echo_client`) send and check.
pub mod echo_messages {
    use tidings_core::Message;

    /// Three texts and three binaries; with deflate also messages worth compressing: 1 KiB JSON-like
    /// texts (alike, so context takeover pays), a 256 KiB text and a 64 KiB binary.
    pub fn messages(deflate: bool) -> Vec<Message> {
        let mut messages = Vec::new();
        for i in 0..3u8 {
            messages.push(Message::text(format!("hello {i}")));
            messages.push(Message::binary(vec![i; 4]));
        }
        if deflate {
            for i in 0..32 {
                let json = format!(
                    r#"{{"type":"event","seq":{i},"room":"room-{}","user":{{"id":{},"name":"user-{}"}},"body":"{}"}}"#,
                    i % 5,
                    1000 + i % 17,
                    i % 17,
                    "lorem ipsum dolor sit amet, consectetur adipiscing elit ".repeat(17),
                );
                messages.push(Message::text(json));
            }
            let line = "the quick brown fox jumps over the lazy dog — über café\n";
            messages.push(Message::text(line.repeat((256 << 10) / line.len())));
            let binary: Vec<u8> = (0..64u32 << 10)
                .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
                .collect();
            messages.push(Message::binary(binary));
        }
        messages
    }

    /// The message in full when short, its kind and length otherwise.
    pub fn show(message: &Message) -> String {
        if message.len() <= 64 {
            format!("{message:?}")
        } else {
            match message {
                Message::Text(_) => format!("Text({} bytes)", message.len()),
                Message::Binary(_) => format!("Binary({} bytes)", message.len()),
            }
        }
    }
}
