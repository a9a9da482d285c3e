//! Observability behind the `tracing` feature: one span per connection, one per HTTP connection of
//! the server helper, and events for refusals, handshake failures, close outcomes and protocol
//! errors (the crate docs list the names, fields and levels).
//!
//! Without the feature every type here is empty and every function does nothing and is inlined
//! away, so call sites carry no `#[cfg]` and the build has no trace of `tracing`. With it, only
//! connection-level moments are recorded: nothing on the path of a message.
//!
//! Events are sent to the subscriber of the span they belong to, whichever thread emits them (a
//! smol driver runs on the global executor's threads), and the tasks the engine spawns carry the
//! subscriber and span that were current when they were spawned.

#[cfg(feature = "tracing")]
use std::fmt::Display;
#[cfg(feature = "tracing")]
use std::io;
use std::net::SocketAddr;

use tidings_core::handshake::ClientRequest;
use tidings_core::{CloseOutcome, Role};

use crate::runtime::{Runtime, Task};

/// Whether the feature is on: code that exists only to be traced is skipped without it.
pub(crate) const ENABLED: bool = cfg!(feature = "tracing");

/// The span of one WebSocket connection, from its handshake to its close:
/// `websocket{peer, path, subprotocol, runtime, role}`. Empty without the feature.
#[derive(Clone)]
pub(crate) struct ConnSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

#[cfg(feature = "tracing")]
fn role_name(role: Role) -> &'static str {
    match role {
        Role::Client => "client",
        Role::Server => "server",
    }
}

/// The path of a request target, without its query (which may carry credentials).
#[cfg(feature = "tracing")]
fn path_only(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or(target)
}

#[cfg(feature = "tracing")]
impl ConnSpan {
    fn new(rt: &dyn Runtime, role: Role) -> Self {
        use tracing::field::Empty;
        let span = tracing::info_span!(
            "websocket",
            peer = Empty,
            path = Empty,
            subprotocol = Empty,
            runtime = rt.name(),
            role = role_name(role),
        );
        ConnSpan { span }
    }

    /// Runs `emit` so that its events reach this span's subscriber (or the current one if the
    /// span is disabled).
    fn emit(&self, emit: impl FnOnce(&tracing::Span)) {
        let mut emit = Some(emit);
        self.span.with_subscriber(|(_, dispatch)| {
            tracing::dispatcher::with_default(dispatch, || {
                if let Some(emit) = emit.take() {
                    emit(&self.span);
                }
            });
        });
        if let Some(emit) = emit {
            emit(&self.span);
        }
    }
}

impl ConnSpan {
    /// A server-side connection from `peer` (when the transport's address is known).
    #[inline(always)]
    pub(crate) fn server(rt: &dyn Runtime, peer: Option<SocketAddr>) -> Self {
        #[cfg(feature = "tracing")]
        {
            let this = Self::new(rt, Role::Server);
            if let Some(peer) = peer {
                this.span.record("peer", tracing::field::display(peer));
            }
            this
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (rt, peer);
            ConnSpan {}
        }
    }

    /// A client connection: the peer is the request's `Host`, the path its target's path.
    #[inline(always)]
    pub(crate) fn client(rt: &dyn Runtime, request: &ClientRequest) -> Self {
        #[cfg(feature = "tracing")]
        {
            let this = Self::new(rt, Role::Client);
            this.span.record("peer", request.host());
            this.record_path(request.resource());
            this
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (rt, request);
            ConnSpan {}
        }
    }

    /// A connection whose handshake was done elsewhere: only its role is known.
    #[inline(always)]
    pub(crate) fn upgraded(rt: &dyn Runtime, role: Role) -> Self {
        #[cfg(feature = "tracing")]
        {
            Self::new(rt, role)
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (rt, role);
            ConnSpan {}
        }
    }

    /// Records the path of the request target (the query is left out).
    #[inline(always)]
    pub(crate) fn record_path(&self, target: &str) {
        #[cfg(feature = "tracing")]
        self.span.record("path", path_only(target));
        #[cfg(not(feature = "tracing"))]
        let _ = target;
    }

    /// Records the subprotocol agreed, if any.
    #[inline(always)]
    pub(crate) fn record_subprotocol(&self, protocol: Option<&str>) {
        #[cfg(feature = "tracing")]
        if let Some(protocol) = protocol {
            self.span.record("subprotocol", protocol);
        }
        #[cfg(not(feature = "tracing"))]
        let _ = protocol;
    }

    /// `task` running inside this span, with the subscriber current now.
    #[inline(always)]
    pub(crate) fn instrument(&self, task: Task) -> Task {
        #[cfg(feature = "tracing")]
        {
            use tracing::instrument::{Instrument as _, WithSubscriber as _};
            let nobody_listens = self.span.is_disabled()
                && tracing::dispatcher::get_default(|d| {
                    d.is::<tracing::subscriber::NoSubscriber>()
                });
            if nobody_listens {
                // Compiled in but unused: the task needs no wrapper (nor its allocation).
                return task;
            }
            Box::pin(task.instrument(self.span.clone()).with_current_subscriber())
        }
        #[cfg(not(feature = "tracing"))]
        task
    }

    /// An upgrade refused with `status` because of `reason` (`debug`; `info` for 5xx).
    #[inline(always)]
    pub(crate) fn refused(&self, status: u16, reason: &dyn std::fmt::Display) {
        #[cfg(feature = "tracing")]
        self.emit(|span| refused_in(span, status, reason));
        #[cfg(not(feature = "tracing"))]
        let _ = (status, reason);
    }

    /// A handshake that failed without an answer of ours (`debug`): timeout, transport error,
    /// the server's refusal on the client side (its status is in `error`).
    #[inline(always)]
    pub(crate) fn handshake_failed(&self, error: &dyn std::fmt::Display) {
        #[cfg(feature = "tracing")]
        self.emit(|span| {
            tracing::debug!(parent: span, error = %error, "websocket handshake failed");
        });
        #[cfg(not(feature = "tracing"))]
        let _ = error;
    }

    /// How the connection ended (`debug`), preceded by a `warn` event when it was failed for a
    /// protocol error. `io_error` is the transport error that ended it, if any.
    #[inline(always)]
    pub(crate) fn closed(&self, outcome: &CloseOutcome, io_error: Option<&std::io::Error>) {
        #[cfg(feature = "tracing")]
        self.emit(|span| closed_in(span, outcome, io_error));
        #[cfg(not(feature = "tracing"))]
        let _ = (outcome, io_error);
    }
}

#[cfg(feature = "tracing")]
fn closed_in(span: &tracing::Span, outcome: &CloseOutcome, io_error: Option<&io::Error>) {
    if let Some(error) = &outcome.error
        && let Some(code) = error.close_code()
    {
        tracing::warn!(
            parent: span,
            code = code.as_u16(),
            error = %error,
            "websocket protocol error"
        );
    }
    let initiator = match outcome.initiator {
        tidings_core::Initiator::Local => "local",
        tidings_core::Initiator::Remote => "remote",
    };
    tracing::debug!(
        parent: span,
        code = outcome.code.as_u16(),
        reason = outcome.reason.as_str(),
        initiator,
        clean = outcome.clean,
        sent = outcome.sent.as_ref().map(|frame| frame.code.as_u16()),
        error = outcome.error.as_ref().map(tracing::field::display),
        io_error = io_error.map(tracing::field::display),
        "websocket closed"
    );
}

/// A refusal event with the message `$what` and the fields that follow it: `debug`, or `info`
/// for a 5xx status (an overload or shutdown the operator wants to see).
#[cfg(feature = "tracing")]
macro_rules! refusal {
    ($parent:expr, $status:expr, $($fields:tt)+) => {
        if $status >= 500 {
            tracing::info!(parent: $parent, status = $status, $($fields)+);
        } else {
            tracing::debug!(parent: $parent, status = $status, $($fields)+);
        }
    };
}

#[cfg(feature = "tracing")]
fn refused_in(span: &tracing::Span, status: u16, reason: &dyn Display) {
    refusal!(span, status, reason = %reason, "websocket upgrade refused");
}

/// A request the server helper refused before it reached a WebSocket route (no route for its
/// path, a connection limit of an HTTP route): `request refused{status, reason, path}` in the
/// current span (the HTTP connection's), `debug` (`info` for 5xx).
#[cfg(feature = "server")]
#[inline(always)]
pub(crate) fn refused(status: u16, reason: &dyn std::fmt::Display, path: &str) {
    #[cfg(feature = "tracing")]
    {
        let current = tracing::Span::current();
        let path = path_only(path);
        refusal!(&current, status, reason = %reason, path, "request refused");
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (status, reason, path);
}

/// An HTTP connection of the server helper, `http{peer}`: `task` serving it runs inside the span,
/// with the subscriber current now.
#[cfg(feature = "server")]
#[inline(always)]
pub(crate) fn http_connection(peer: SocketAddr, task: Task) -> Task {
    #[cfg(feature = "tracing")]
    {
        use tracing::instrument::{Instrument as _, WithSubscriber as _};
        let span = tracing::info_span!("http", peer = %peer);
        Box::pin(task.instrument(span).with_current_subscriber())
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = peer;
        task
    }
}
