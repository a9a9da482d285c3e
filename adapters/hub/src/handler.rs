//! Running a WebSocket as a hub client: per-connection handlers, their factory, the stream of
//! incoming messages, and hosting in the adapters' server helper.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tidings_core::handshake::{AcceptOptions, UpgradeRequest};
use tidings_core::{CloseCode, CloseOutcome, Message};
use tidings_io::{ReadHalf, Rejection, WebSocket, WriteHalf};
#[cfg(feature = "server")]
use tidings_io::{RequestInfo, Route, WebSocketRoute};

use crate::client::{Client, ClientOptions};
use crate::hub::{Hub, HubInner};
use crate::id::ClientId;
use crate::limit::{RateLimitAction, TokenBucket};
use crate::{HandlerError, HubError};

/// The per-connection handler object: one is built for each connection (by a
/// [`HandlerFactory`], or given to [`Hub::serve`]) and owns that connection's state.
///
/// The hub calls [`on_connect`](Self::on_connect) once the client is registered,
/// [`on_message`](Self::on_message) for each message in the order they arrived (the next one
/// only after the previous call finished), and [`on_disconnect`](Self::on_disconnect) exactly
/// once when the connection is over — whichever side ended it, and also if the future running
/// the client is dropped (a server shutdown, a cancelled task). A handler error does not
/// disconnect: it goes to the hub's error hooks and, by default, to the client as an error
/// envelope (see [`HubConfig::error_replies`](crate::HubConfig::error_replies)).
///
/// ```
/// use tidings_hub::{Client, Handler, HandlerError, Message};
///
/// struct Counter { seen: usize }
///
/// impl Handler for Counter {
///     async fn on_message(&mut self, client: &Client, message: Message) -> Result<(), HandlerError> {
///         self.seen += 1;
///         client.send_text(format!("{} messages so far, last {} bytes", self.seen, message.len()))?;
///         Ok(())
///     }
///
///     fn on_disconnect(self, client: &Client) {
///         println!("{} sent {} messages", client.id(), self.seen);
///     }
/// }
/// ```
pub trait Handler: Send + 'static {
    /// The client is registered (and in no room yet); called before its first message.
    fn on_connect(&mut self, client: &Client) -> impl Future<Output = ()> + Send {
        let _ = client;
        async {}
    }

    /// A message from the client.
    fn on_message(
        &mut self,
        client: &Client,
        message: Message,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// The connection is over (the client is still in its rooms, and leaves them after this);
    /// called exactly once, also when the future running the client is dropped. Dropping the
    /// handler right after is its cleanup.
    fn on_disconnect(self, client: &Client)
    where
        Self: Sized,
    {
        let _ = client;
    }
}

/// A [`Handler`] made of a closure over each message: from [`handler_fn`].
pub struct FnHandler<F>(F);

impl<F> fmt::Debug for FnHandler<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnHandler").finish_non_exhaustive()
    }
}

/// A [`Handler`] that calls `f` with each message (and the client), in order.
///
/// ```
/// # use tidings_hub::{Client, Message, handler_fn};
/// let echo = handler_fn(|client: Client, message: Message| async move {
///     client.send(message)?;
///     Ok(())
/// });
/// # drop(echo);
/// ```
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: FnMut(Client, Message) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    FnHandler(f)
}

impl<F, Fut> Handler for FnHandler<F>
where
    F: FnMut(Client, Message) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    fn on_message(
        &mut self,
        client: &Client,
        message: Message,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        (self.0)(client.clone(), message)
    }
}

/// What a [`HandlerFactory`] decided for one upgrade request: the handler to run, how the client
/// is registered (its ID, the request data kept), and how the upgrade is answered (subprotocol,
/// extra headers).
///
/// ```
/// # use tidings_hub::{Admission, handler_fn, Client, Message};
/// struct User(String);
/// let admission = Admission::new(handler_fn(|_c: Client, _m: Message| async { Ok(()) }))
///     .data(User("alice".into()))
///     .protocol("chat.v1");
/// # drop(admission);
/// ```
pub struct Admission<H> {
    pub(crate) handler: H,
    pub(crate) options: ClientOptions,
    pub(crate) accept: AcceptOptions,
}

impl<H> fmt::Debug for Admission<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("options", &self.options)
            .field("accept", &self.accept)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Admission<H> {
    /// Runs `handler`, with a generated client ID, no request data and default accept options.
    pub fn new(handler: H) -> Self {
        Admission {
            handler,
            options: ClientOptions::new(),
            accept: AcceptOptions::new(),
        }
    }

    /// The client's ID.
    pub fn id(mut self, id: impl Into<ClientId>) -> Self {
        self.options = self.options.id(id);
        self
    }

    /// Request data kept with the client ([`Client::data`]).
    pub fn data<T: std::any::Any + Send + Sync>(mut self, data: T) -> Self {
        self.options = self.options.data(data);
        self
    }

    /// Registration options, replacing the ID and data set so far.
    pub fn options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Accepts the upgrade with this subprotocol (one the client offered).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.accept = self.accept.protocol(protocol);
        self
    }

    /// Answers the upgrade with these options (subprotocol, extra headers).
    pub fn accept_options(mut self, accept: AcceptOptions) -> Self {
        self.accept = accept;
        self
    }

    /// The accept options, for an HTTP server's upgrade call (hyper, axum).
    pub fn get_accept_options(&self) -> &AcceptOptions {
        &self.accept
    }
}

/// Builds one [`Handler`] per connection. Its [`init`](Self::init) sees the upgrade request
/// before anything is upgraded, and either refuses it with an HTTP status (a [`Rejection`]: 401
/// for a missing token, 404 for an unknown game) or admits it with a handler and the state it
/// attaches (an [`Admission`]).
///
/// Any `Fn(&UpgradeRequest) -> Result<Admission<H>, Rejection>` closure is a factory.
pub trait HandlerFactory: Send + Sync + 'static {
    /// The handler it builds.
    type Handler: Handler;

    /// Decides about one upgrade request (already validated, origin checked).
    ///
    /// # Errors
    ///
    /// The [`Rejection`] to answer instead of upgrading.
    fn init(&self, request: &UpgradeRequest<'_>) -> Result<Admission<Self::Handler>, Rejection>;
}

impl<F, H> HandlerFactory for F
where
    F: Fn(&UpgradeRequest<'_>) -> Result<Admission<H>, Rejection> + Send + Sync + 'static,
    H: Handler,
{
    type Handler = H;

    fn init(&self, request: &UpgradeRequest<'_>) -> Result<Admission<H>, Rejection> {
        self(request)
    }
}

/// The messages of a client registered with [`Hub::attach`]: a [`Stream`](futures_core::Stream)
/// (and [`recv`](Self::recv)) of its messages, in order. The client leaves the hub (and its
/// rooms) when this ends or is dropped — that is its disconnect, seen by the hub's hooks once.
pub struct Incoming {
    read: ReadHalf,
    write: WriteHalf,
    client: Client,
    hub: Arc<HubInner>,
    /// The client's message budget ([`HubConfig::rate_limit`](crate::HubConfig::rate_limit)).
    limit: Option<(TokenBucket, RateLimitAction)>,
    /// Closed for exceeding the rate limit: what still arrives is dropped.
    limited: bool,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// The next message; `None` once the connection has closed cleanly, `Some(Err(_))` once if
    /// it failed. Cancellation-safe.
    pub async fn recv(&mut self) -> Option<Result<Message, HubError>> {
        std::future::poll_fn(|cx| self.poll_message(cx)).await
    }

    /// The next message within the rate limit (see [`HubConfig::rate_limit`](crate::HubConfig::rate_limit)).
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, HubError>>> {
        loop {
            let message = match futures_core::Stream::poll_next(Pin::new(&mut self.read), cx) {
                Poll::Ready(Some(Ok(message))) => message,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(HubError::from(e)))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            };
            if self.limited {
                continue;
            }
            let Some((bucket, action)) = self.limit.as_mut() else {
                return Poll::Ready(Some(Ok(message)));
            };
            if bucket.try_take(Instant::now()) {
                return Poll::Ready(Some(Ok(message)));
            }
            match *action {
                RateLimitAction::Close(code) => {
                    self.limited = true;
                    self.hub.report_error(&self.client, &HubError::RateLimited);
                    let _ = self.client.close(code, "rate limit exceeded");
                }
                // `ErrorReply`, and any action added later.
                _ => self
                    .hub
                    .handler_error(&self.client, HubError::RateLimited, None),
            }
        }
    }

    /// The client these messages are from.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// How the connection ended, once it has.
    pub fn close_outcome(&self) -> Option<CloseOutcome> {
        self.write.close_outcome()
    }
}

impl futures_core::Stream for Incoming {
    type Item = Result<Message, HubError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_message(cx)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.client.mark_gone(self.write.close_outcome());
        self.hub.unregister(&self.client);
    }
}

/// A running client with its handler: the handler's `on_disconnect` runs exactly once, when
/// this is dropped (the run loop ended, or its future was dropped), before the client leaves the
/// hub.
struct Session<H: Handler> {
    handler: Option<H>,
    incoming: Incoming,
}

impl<H: Handler> Drop for Session<H> {
    fn drop(&mut self) {
        if let Some(handler) = self.handler.take() {
            handler.on_disconnect(&self.incoming.client);
        }
    }
}

impl Hub {
    /// Registers `ws` as a client and returns it with the stream of its messages, for an
    /// application that reads them itself. The client leaves when the stream is dropped.
    ///
    /// # Errors
    ///
    /// [`HubError::HubClosed`] (the WebSocket is then dropped, which closes it with 1001),
    /// [`HubError::DuplicateClient`] (the WebSocket is closed with 1008, `duplicate client id`).
    pub fn attach(
        &self,
        ws: WebSocket,
        options: ClientOptions,
    ) -> Result<(Client, Incoming), HubError> {
        let client = match self.inner.register(&ws, options) {
            Ok(client) => client,
            Err(e) => {
                if matches!(e, HubError::DuplicateClient(_)) {
                    // Not "going away": the server is fine, the request was not.
                    let _ = ws
                        .closer()
                        .close(CloseCode::POLICY_VIOLATION, "duplicate client id");
                }
                return Err(e);
            }
        };
        let (read, write) = ws.split();
        let limit = self
            .inner
            .config()
            .get_rate_limit()
            .map(|limit| (limit.bucket(), limit.get_action()));
        let incoming = Incoming {
            read,
            write,
            client: client.clone(),
            hub: self.inner.clone(),
            limit,
            limited: false,
        };
        Ok((client, incoming))
    }

    /// Registers `ws` as a client and runs it with `admission`'s handler until the connection
    /// ends: `on_connect`, then `on_message` for each message in order, then `on_disconnect`
    /// (exactly once, also if this future is dropped), then the client leaves its rooms and the
    /// hub. `Ok` when the connection closed cleanly.
    ///
    /// # Errors
    ///
    /// As for [`attach`](Self::attach); [`HubError::WebSocket`] when the connection failed
    /// (protocol error, timeout, transport error).
    pub async fn serve<H: Handler>(
        &self,
        ws: WebSocket,
        admission: Admission<H>,
    ) -> Result<(), HubError> {
        let Admission {
            handler, options, ..
        } = admission;
        let (client, incoming) = self.attach(ws, options)?;
        let mut session = Session {
            handler: Some(handler),
            incoming,
        };
        if let Some(handler) = session.handler.as_mut() {
            handler.on_connect(&client).await;
        }
        while let Some(item) = session.incoming.recv().await {
            let message = item?;
            let Some(handler) = session.handler.as_mut() else {
                break;
            };
            if let Err(e) = handler.on_message(&client, message).await {
                self.inner
                    .handler_error(&client, HubError::Handler(e), None);
            }
        }
        Ok(())
    }

    /// Registers `ws` and runs it with `on_message` for each message, in order, until the
    /// connection ends; see [`serve`](Self::serve).
    ///
    /// # Errors
    ///
    /// As for [`serve`](Self::serve).
    pub async fn run<F, Fut>(
        &self,
        ws: WebSocket,
        options: ClientOptions,
        on_message: F,
    ) -> Result<(), HubError>
    where
        F: FnMut(Client, Message) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send,
    {
        self.serve(ws, Admission::new(handler_fn(on_message)).options(options))
            .await
    }

    /// A WebSocket route for the adapters' server helper (`tidings_tokio::server::Server`,
    /// `tidings_smol::server::Server`) that runs each connection as a client of this hub with a
    /// handler from `factory`. The factory's `init` runs before the upgrade (its refusal is
    /// answered with its status); a closed hub answers `503`.
    ///
    /// The client is registered just after the `101` is written, so a broadcast made in that
    /// instant misses it: a protocol that needs a client to see everything from a point on
    /// should greet it from `on_connect` (or the hub's connect hook) and have the client wait
    /// for the greeting. An ID that `init` let through but that is taken by the time the client
    /// registers (two connections racing with one ID) closes the new connection with 1008
    /// (`duplicate client id`).
    ///
    /// ```no_run
    /// # #[cfg(feature = "json")] {
    /// # use tidings_hub::{Admission, Hub, Router};
    /// # use tidings_io::Rejection;
    /// let hub = Hub::new();
    /// let router = Router::new().on("ping", |client, msg| async move {
    ///     client.reply(&msg, "pong", &())?;
    ///     Ok(())
    /// });
    /// let route = hub.route(move |_req: &tidings_io::UpgradeRequest<'_>| {
    ///     Ok::<_, Rejection>(Admission::new(router.clone()))
    /// });
    /// // tidings_tokio::server::Server::new().route("/ws", route).bind(addr).await?.serve().await;
    /// # drop(route); }
    /// ```
    #[cfg(feature = "server")]
    pub fn route<F: HandlerFactory>(&self, factory: F) -> WebSocketRoute {
        let init_hub = self.clone();
        let hub = self.clone();
        Route::websocket_with(
            move |req| {
                if init_hub.is_closed() {
                    return Err(Rejection::new(503).body("hub closed"));
                }
                let admission = factory.init(req)?;
                Ok((admission.accept.clone(), admission))
            },
            move |ws, _info, admission| {
                let hub = hub.clone();
                async move {
                    let _ = hub.serve(ws, admission).await;
                }
            },
        )
    }

    /// A WebSocket route like [`route`](Self::route) whose admission is decided asynchronously:
    /// `init` receives the request (already validated, origin checked, within the connection
    /// limits) and may await a session store, a database or a token check before it admits the
    /// client or refuses the upgrade with an HTTP status. Nothing is upgraded until it has
    /// decided; a closed hub answers `503`.
    ///
    /// ```no_run
    /// # #[cfg(all(feature = "json", feature = "auth"))] {
    /// # use tidings_hub::{Admission, Hub, Router, auth::BearerAuth};
    /// # use tidings_io::RequestInfo;
    /// let hub = Hub::new();
    /// let router = Router::new();
    /// // The identity a token stands for, looked up asynchronously.
    /// let auth = BearerAuth::new(|token: String| async move {
    ///     (token == "s3cret").then(|| "alice".to_owned())
    /// });
    /// let route = hub.route_async(move |info: RequestInfo| {
    ///     let (auth, router) = (auth.clone(), router.clone());
    ///     async move {
    ///         let user = auth.authenticate(info.query(), info.headers()).await?; // 401
    ///         Ok(Admission::new(router).data(user)) // client.data::<String>()
    ///     }
    /// });
    /// # drop(route); }
    /// ```
    #[cfg(feature = "server")]
    pub fn route_async<I, Fut, H>(&self, init: I) -> WebSocketRoute
    where
        I: Fn(RequestInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Admission<H>, Rejection>> + Send + 'static,
        H: Handler,
    {
        let init_hub = self.clone();
        let hub = self.clone();
        Route::websocket_async(
            move |info| {
                let closed = init_hub.is_closed();
                let decided = (!closed).then(|| init(info));
                async move {
                    let Some(decided) = decided else {
                        return Err(Rejection::new(503).body("hub closed"));
                    };
                    let admission = decided.await?;
                    Ok((admission.accept.clone(), admission))
                }
            },
            move |ws, _info, admission| {
                let hub = hub.clone();
                async move {
                    let _ = hub.serve(ws, admission).await;
                }
            },
        )
    }
}

impl HubInner {
    /// A handler error or an invalid message from `client`: the error hooks, then (by default,
    /// with the `json` feature) the error envelope to the client, with the request's `id`.
    pub(crate) fn handler_error(
        &self,
        client: &Client,
        error: HubError,
        #[cfg_attr(not(feature = "json"), allow(unused_variables))] id: Option<&crate::IdValue>,
    ) {
        self.report_error(client, &error);
        #[cfg(feature = "json")]
        if self.config().get_error_replies() {
            let _ = client.send_error(&error.to_string(), id);
        }
    }
}
