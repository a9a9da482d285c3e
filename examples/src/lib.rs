//! Support code shared by the tidings examples.
//!
//! [`blocking`] drives the sans-IO core over plain blocking `std::net` sockets: the
//! "bring your own runtime" story in about a hundred lines.
//!
//! [`chat`], [`secure_chat`], [`game_lobby`], [`notifications`] and [`live_feed`] are the logic of
//! the examples of those names: routes built on a hub, runtime-neutral (`tidings_io::Route` is
//! the route type of both server helpers), so the example binaries only parse arguments and
//! serve, and the tests run the same logic in-process on either runtime.
//!
//! [`hub_backend`] is the `--redis` option of the `chat` and `notifications` binaries: their hub
//! in one process, or shared by several through Redis.
#![forbid(unsafe_code)]

pub mod blocking;
pub mod chat;
pub mod game_lobby;
pub mod live_feed;
pub mod notifications;
pub mod query;
pub mod secure_chat;

/// The hub of the `chat` and `notifications` binaries: in-process, or with `--redis URL` one hub
/// across every process started with that URL (`tidings_hub_redis`), plus the helper their
/// argument parsers share ([`option_value`](hub_backend::option_value)).
pub mod hub_backend {
    use std::time::Duration;

    use tidings_hub::{Hub, HubConfig};
    use tidings_hub_redis::{RedisBackend, RedisBackendError, RedisConfig};
    use tidings_io::Runtime;

    /// The usage lines of [`BackendArgs`]' options.
    pub const USAGE: &str = concat!(
        "  --redis URL             share one hub with the other processes started with the same\n",
        "                          URL, through Redis (redis://HOST:PORT); without it the hub is\n",
        "                          in-process\n",
        "  --presence-timeout SECS with --redis: the other processes' counts are refreshed every\n",
        "                          SECS/5, and one that died drops out of them after SECS\n",
        "                          (default 15)\n",
    );

    /// The value of option `name` (`METAVAR` in messages) when `arg` is it: `--name VALUE`
    /// (the value taken from `rest`) or `--name=VALUE`. `Ok(None)` when `arg` is another
    /// argument; `Err` when the value is missing or empty.
    pub fn option_value(
        name: &str,
        metavar: &str,
        arg: &str,
        rest: &mut impl Iterator<Item = String>,
    ) -> Result<Option<String>, String> {
        let value = if arg == name {
            rest.next()
        } else if let Some(value) = arg.strip_prefix(name).and_then(|v| v.strip_prefix('=')) {
            Some(value.to_owned())
        } else {
            return Ok(None);
        };
        match value {
            Some(value) if !value.is_empty() => Ok(Some(value)),
            _ => Err(format!("{name} needs a {metavar}")),
        }
    }

    /// `--redis URL` and `--presence-timeout SECS`.
    #[derive(Debug, Clone, Default)]
    pub struct BackendArgs {
        /// The Redis URL; `None`: in-process.
        pub redis: Option<String>,
        /// The presence timeout; `None`: the backend's default.
        pub presence_timeout: Option<Duration>,
    }

    impl BackendArgs {
        /// Takes `arg` (and its value, from `rest` or after `=`) if it is one of the options:
        /// `Ok(true)` if it was, `Ok(false)` if it is another argument, `Err(why)` for a missing
        /// or invalid value.
        pub fn take(
            &mut self,
            arg: &str,
            rest: &mut impl Iterator<Item = String>,
        ) -> Result<bool, String> {
            if let Some(url) = option_value("--redis", "URL", arg, rest)? {
                self.redis = Some(url);
            } else if let Some(secs) = option_value("--presence-timeout", "SECS", arg, rest)? {
                let timeout = secs
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0)
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .ok_or_else(|| {
                        format!("--presence-timeout: {secs:?} is not a positive number of seconds")
                    })?;
                self.presence_timeout = Some(timeout);
            } else {
                return Ok(false);
            }
            Ok(true)
        }

        /// Checks the options together, once all are taken.
        pub fn check(&self) -> Result<(), String> {
            if self.presence_timeout.is_some() && self.redis.is_none() {
                return Err("--presence-timeout needs --redis".to_owned());
            }
            Ok(())
        }

        fn redis_config(&self) -> RedisConfig {
            let config = RedisConfig::default();
            match self.presence_timeout {
                Some(timeout) => config.presence_timeout(timeout),
                None => config,
            }
        }

        /// Which backend, for a start-up line: `in-process`, or `redis URL (presence timeout
        /// 15s)` (a password in the URL masked).
        pub fn describe(&self) -> String {
            match &self.redis {
                None => "in-process".to_owned(),
                Some(url) => format!(
                    "redis {} (presence timeout {:?})",
                    masked(url),
                    self.redis_config().get_presence_timeout()
                ),
            }
        }

        /// The hub with `config`: in-process, or on a Redis backend (its task on `rt`).
        ///
        /// # Errors
        ///
        /// The Redis URL is invalid, or Redis cannot be reached: nothing retries at start.
        pub async fn hub(
            &self,
            config: HubConfig,
            rt: &'static dyn Runtime,
        ) -> Result<Hub, RedisBackendError> {
            let Some(url) = &self.redis else {
                return Ok(Hub::with_config(config));
            };
            let backend = RedisBackend::connect(url, self.redis_config(), rt).await?;
            Ok(Hub::builder().config(config).backend(backend).build())
        }
    }

    /// `url` with the password of `redis://USER:PASSWORD@HOST` as `***`, for printing.
    fn masked(url: &str) -> String {
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_owned();
        };
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        match authority
            .rfind('@')
            .and_then(|at| Some((at, authority[..at].find(':')?)))
        {
            Some((at, colon)) => format!("{scheme}://{}:***{}", &rest[..colon], &rest[at..]),
            None => url.to_owned(),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::masked;

        #[test]
        fn passwords_are_masked() {
            assert_eq!(masked("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
            assert_eq!(masked("redis://:pw@host:1/0"), "redis://:***@host:1/0");
            assert_eq!(masked("rediss://u:p@w@host"), "rediss://u:***@host");
            assert_eq!(masked("redis://host/a@b"), "redis://host/a@b");
        }
    }
}

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
