//! A hub subscriber's Server-Sent Events stream driven as an HTTP body, runtime-neutral
//! (`BodyExt::frame`, no HTTP server), parsed by `http_sse.rs`'s event-stream parser; the
//! including test file has `mod http_sse` at its root.

// Each test binary includes this module on its own and uses only part of it.
#![allow(dead_code)]

use futures_util::FutureExt as _;
use http_body_util::BodyExt as _;
use tidings_hub::SseStream;

use crate::http_sse::{SseEvent, SseParser};

/// The events of one [`SseStream`].
pub struct Events {
    pub stream: SseStream,
    parser: SseParser,
    ended: bool,
}

impl Events {
    pub fn new(stream: SseStream) -> Self {
        Events {
            stream,
            parser: SseParser::default(),
            ended: false,
        }
    }

    /// The next event, waiting for it.
    pub async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(event) = self.parser.next_event() {
                return event;
            }
            assert!(!self.ended, "the stream ended");
            match self.stream.frame().await {
                Some(Ok(frame)) => self.take(frame.into_data().ok()),
                Some(Err(never)) => match never {},
                None => self.ended = true,
            }
        }
    }

    /// Every event the body yields without waiting: all that was queued to it.
    pub fn ready(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        loop {
            while let Some(event) = self.parser.next_event() {
                events.push(event);
            }
            if self.ended {
                break;
            }
            match self.stream.frame().now_or_never() {
                Some(Some(Ok(frame))) => self.take(frame.into_data().ok()),
                Some(Some(Err(never))) => match never {},
                Some(None) => self.ended = true,
                None => break,
            }
        }
        assert!(!self.parser.is_mid_event(), "half an event was yielded");
        events
    }

    /// Nothing is queued: the body would wait.
    pub fn assert_nothing_queued(&mut self, who: &str) {
        let events = self.ready();
        assert!(events.is_empty(), "{who} got {events:?}");
        assert!(!self.ended, "{who}'s stream ended");
    }

    /// Whether the body ended (after [`ready`](Self::ready) or [`next`](Self::next)).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The `retry:` the stream sent, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.parser.retry
    }

    fn take(&mut self, data: Option<bytes::Bytes>) {
        if let Some(data) = data {
            assert!(!data.is_empty(), "an empty data frame");
            self.parser.push(&data);
        }
    }
}
