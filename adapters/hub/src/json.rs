//! JSON messages (feature `json`): the envelope `{"type","payload","id"}`, events
//! `{"type","data"}`, and the [`Router`] from message type to async handler.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use tidings_core::{Message, Utf8Bytes};

use crate::client::Client;
use crate::handler::Handler;
use crate::{HandlerError, HubError};

/// The message envelope clients and server exchange:
/// `{"type":"chat","payload":{…},"id":"req-1"}`, where `payload` and `id` are optional.
///
/// `type` picks the [`Router`] handler; `payload` is parsed into the handler's own type with
/// [`payload_as`](Self::payload_as); `id` correlates a request with its answer
/// ([`Client::reply`] copies it). The text it was parsed from is kept
/// ([`raw`](Self::raw)), so that it can be forwarded exactly as sent. The payload is kept as
/// JSON text until a handler asks for it, and an envelope built here serialises its payload in
/// the payload type's own field order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<Box<RawValue>>,
    #[serde(skip)]
    raw: Option<Utf8Bytes>,
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.payload.as_deref().map(RawValue::get)
                == other.payload.as_deref().map(RawValue::get)
            && self.id.as_deref().map(RawValue::get) == other.id.as_deref().map(RawValue::get)
    }
}

impl Envelope {
    /// An envelope of type `kind` with `payload`.
    ///
    /// # Errors
    ///
    /// If `payload` cannot be serialised.
    pub fn new<T: Serialize + ?Sized>(kind: &str, payload: &T) -> Result<Self, serde_json::Error> {
        let payload = serde_json::value::to_raw_value(payload)?;
        Ok(Envelope {
            kind: kind.to_owned(),
            payload: (payload.get() != "null").then_some(payload),
            id: None,
            raw: None,
        })
    }

    /// `{"type":"error","payload":{"message":"<message>"}}`.
    pub fn error(message: &str) -> Self {
        Envelope {
            kind: "error".to_owned(),
            payload: serde_json::value::to_raw_value(&serde_json::json!({ "message": message }))
                .ok(),
            id: None,
            raw: None,
        }
    }

    /// The same envelope with `id` (or without one): JSON text, as [`id`](Self::id) gives it.
    pub fn with_id(mut self, id: Option<Box<RawValue>>) -> Self {
        self.id = id;
        self
    }

    /// Parses a text message.
    ///
    /// # Errors
    ///
    /// [`HubError::ExpectedText`] for a binary message, [`HubError::Json`] for text that is not
    /// an envelope (not JSON, not an object, no string `type`).
    pub fn from_message(message: &Message) -> Result<Self, HubError> {
        match message {
            Message::Text(text) => Ok(Self::parse(text)?),
            Message::Binary(_) => Err(HubError::ExpectedText),
        }
    }

    /// Parses `text`, keeping it as [`raw`](Self::raw).
    ///
    /// # Errors
    ///
    /// If it is not an envelope.
    pub fn parse(text: &Utf8Bytes) -> Result<Self, serde_json::Error> {
        // serde reads a struct from a JSON array too (its fields by position); the envelope is
        // an object only (found by the `hub_envelope` fuzz target).
        let first = text.as_str().trim_start_matches([' ', '\t', '\n', '\r']);
        if !first.starts_with('{') && !first.is_empty() {
            return Err(serde::de::Error::custom("an envelope is a JSON object"));
        }
        let mut envelope: Envelope = serde_json::from_str(text.as_str())?;
        envelope.raw = Some(text.clone());
        Ok(envelope)
    }

    /// The message type.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The payload as the JSON text it arrived as, if any (`null` counts as none).
    pub fn payload(&self) -> Option<&RawValue> {
        self.payload.as_deref()
    }

    /// The payload parsed as a `T` (a missing payload is parsed from `null`).
    ///
    /// # Errors
    ///
    /// [`HubError::Json`] if it is not a `T`.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, HubError> {
        Ok(match &self.payload {
            Some(raw) => serde_json::from_str(raw.get())?,
            None => T::deserialize(&Value::Null)?,
        })
    }

    /// The request ID, if any, as the JSON text it was sent as (usually a string; any JSON
    /// value is kept exactly, so an answer echoes it byte for byte; `null` counts as none).
    pub fn id(&self) -> Option<&RawValue> {
        self.id.as_deref()
    }

    /// The text this envelope was parsed from, exactly as received.
    pub fn raw(&self) -> Option<&Utf8Bytes> {
        self.raw.as_ref()
    }

    /// The envelope as a text message: the received text if it was parsed from one, else its
    /// serialisation.
    pub fn to_message(&self) -> Message {
        match &self.raw {
            Some(raw) => Message::Text(raw.clone()),
            None => Message::text(serde_json::to_string(self).unwrap_or_default()),
        }
    }
}

/// A named server event, sent as `{"type":"<name>","data":<data>}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    name: String,
    data: Value,
}

impl Event {
    /// The event `name` with `data`.
    ///
    /// # Errors
    ///
    /// If `data` cannot be serialised.
    pub fn new<T: Serialize + ?Sized>(name: &str, data: &T) -> Result<Self, serde_json::Error> {
        Ok(Event {
            name: name.to_owned(),
            data: serde_json::to_value(data)?,
        })
    }

    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The data.
    pub fn data(&self) -> &Value {
        &self.data
    }
}

/// `{"type":<name>,"data":<data>}` from the name and the data's JSON text.
pub(crate) fn event_text(name: &str, data: &str) -> String {
    let name = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".to_owned());
    let mut out = String::with_capacity(name.len() + data.len() + 18);
    out.push_str("{\"type\":");
    out.push_str(&name);
    out.push_str(",\"data\":");
    out.push_str(data);
    out.push('}');
    out
}

// ---- the router -----------------------------------------------------------------------------

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;
type RouteFn = Arc<dyn Fn(Client, Envelope) -> BoxFuture + Send + Sync>;

type ClientHook = Arc<dyn Fn(&Client) + Send + Sync>;

#[derive(Clone, Default)]
struct Routes {
    by_type: HashMap<String, RouteFn>,
    fallback: Option<RouteFn>,
    on_connect: Option<ClientHook>,
    on_disconnect: Option<ClientHook>,
}

/// Maps a message's `type` to an async handler `(client, envelope)`.
///
/// A router is a [`Handler`]: give it to [`Hub::serve`](crate::Hub::serve) (or return it from a
/// [`HandlerFactory`](crate::HandlerFactory)) and it handles each of the client's text messages,
/// in order:
///
/// * a message that is not an envelope (invalid JSON, no `type`), or a binary message, is answered
///   with `{"type":"error","payload":{"message":"…"}}`;
/// * a message whose `type` has a handler runs it; a handler error is answered the same way (with
///   the request's `id`, if it had one);
/// * any other type runs the [default handler](Self::fallback), or is answered with
///   `{"type":"error","payload":{"message":"unknown message type: <type>"}}`.
///
/// Every error also goes to the hub's error hooks; none disconnects the client. The replies can
/// be turned off with [`HubConfig::error_replies`](crate::HubConfig::error_replies).
///
/// ```
/// use serde::Deserialize;
/// use tidings_hub::{Client, Envelope, Router};
///
/// #[derive(Deserialize)]
/// struct Say { room: String, text: String }
///
/// let router = Router::new()
///     .on("say", |client: Client, msg: Envelope| async move {
///         let say: Say = msg.payload_as()?;
///         client.join(&say.room)?;
///         client.reply(&msg, "said", &say.text)?;   // {"type":"said","payload":…,"id":…}
///         Ok(())
///     })
///     .on_typed("shout", |client: Client, _msg: Envelope, say: Say| async move {
///         client.send_text(say.text.to_uppercase())?;
///         Ok(())
///     });
/// # drop(router);
/// ```
#[derive(Clone, Default)]
pub struct Router {
    routes: Arc<Routes>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<&String> = self.routes.by_type.keys().collect();
        types.sort();
        f.debug_struct("Router")
            .field("types", &types)
            .field("fallback", &self.routes.fallback.is_some())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router with no handlers.
    pub fn new() -> Self {
        Router::default()
    }

    /// Handles messages of type `kind` with `handler` (replacing an earlier one).
    pub fn on<F, Fut>(mut self, kind: &str, handler: F) -> Self
    where
        F: Fn(Client, Envelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let route: RouteFn = Arc::new(move |client, msg| Box::pin(handler(client, msg)));
        Arc::make_mut(&mut self.routes)
            .by_type
            .insert(kind.to_owned(), route);
        self
    }

    /// Handles messages of type `kind` with `handler`, which also gets the payload parsed as a
    /// `T`; a payload that is not a `T` is answered with an error naming the type.
    pub fn on_typed<T, F, Fut>(self, kind: &str, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Client, Envelope, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let name = kind.to_owned();
        self.on(kind, move |client, msg| {
            let parsed = match &msg.payload {
                Some(raw) => serde_json::from_str::<T>(raw.get()),
                None => T::deserialize(&Value::Null),
            };
            let handler = handler.clone();
            let name = name.clone();
            async move {
                let payload = parsed.map_err(|e| format!("invalid payload for {name}: {e}"))?;
                handler(client, msg, payload).await
            }
        })
    }

    /// Handles messages of every type without a handler of its own.
    pub fn fallback<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Client, Envelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let route: RouteFn = Arc::new(move |client, msg| Box::pin(handler(client, msg)));
        Arc::make_mut(&mut self.routes).fallback = Some(route);
        self
    }

    /// Runs `hook` when a client this router serves is registered, before its first message
    /// (e.g. to join its starting room and greet it).
    pub fn on_connect(mut self, hook: impl Fn(&Client) + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.routes).on_connect = Some(Arc::new(hook));
        self
    }

    /// Runs `hook` once when a client this router serves is gone, while it is still in its rooms
    /// (see [`Handler::on_disconnect`]).
    pub fn on_disconnect(mut self, hook: impl Fn(&Client) + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.routes).on_disconnect = Some(Arc::new(hook));
        self
    }

    /// Handles one message from `client`: parses it, runs its handler, and reports any error
    /// (the hub's error hooks, then the error reply).
    pub async fn dispatch(&self, client: &Client, message: Message) {
        let Ok(hub) = client.hub_inner() else {
            return;
        };
        let envelope = match Envelope::from_message(&message) {
            Ok(envelope) => envelope,
            Err(e) => {
                let e = match e {
                    HubError::ExpectedText => {
                        HubError::Handler("binary messages are not accepted: send JSON text".into())
                    }
                    other => other,
                };
                hub.handler_error(client, e, None);
                return;
            }
        };
        let route = self
            .routes
            .by_type
            .get(envelope.kind())
            .or(self.routes.fallback.as_ref())
            .cloned();
        let id = envelope.id().map(ToOwned::to_owned);
        let result = match route {
            Some(route) => route(client.clone(), envelope).await,
            None => Err(format!("unknown message type: {}", envelope.kind()).into()),
        };
        if let Err(e) = result {
            hub.handler_error(client, HubError::Handler(e), id.as_deref());
        }
    }

    /// Registers `ws` with `hub` and drives it through this router until the connection ends:
    /// shorthand for `hub.serve(ws, Admission::new(router.clone()).options(options))`.
    ///
    /// # Errors
    ///
    /// As for [`Hub::serve`](crate::Hub::serve).
    pub async fn run_client(
        &self,
        hub: &crate::Hub,
        ws: tidings_io::WebSocket,
        options: crate::ClientOptions,
    ) -> Result<(), HubError> {
        hub.serve(ws, crate::Admission::new(self.clone()).options(options))
            .await
    }
}

impl Handler for Router {
    async fn on_connect(&mut self, client: &Client) {
        if let Some(hook) = &self.routes.on_connect {
            hook(client);
        }
    }

    async fn on_message(&mut self, client: &Client, message: Message) -> Result<(), HandlerError> {
        self.dispatch(client, message).await;
        Ok(())
    }

    fn on_disconnect(self, client: &Client) {
        if let Some(hook) = &self.routes.on_disconnect {
            hook(client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_and_keeps_the_raw_text() {
        let text =
            Utf8Bytes::from(r#"{"type":"chat","payload":{"room":"r","text":"hi"},"id":"req-1"}"#);
        let env = Envelope::parse(&text).expect("an envelope");
        assert_eq!(env.kind(), "chat");
        assert_eq!(env.id().map(RawValue::get), Some(r#""req-1""#));
        assert_eq!(env.raw(), Some(&text));
        #[derive(Deserialize)]
        struct Chat {
            room: String,
            text: String,
        }
        let chat: Chat = env.payload_as().expect("a chat payload");
        assert_eq!((chat.room.as_str(), chat.text.as_str()), ("r", "hi"));
        // Optional fields.
        let bare = Envelope::parse(&Utf8Bytes::from(r#"{"type":"ping"}"#)).expect("envelope");
        assert!(bare.payload().is_none() && bare.id().is_none());
        assert_eq!(
            serde_json::to_string(&bare).expect("json"),
            r#"{"type":"ping"}"#
        );
        // Not envelopes.
        for bad in [
            r#"{"payload":1}"#,
            r#"[1]"#,
            "nope",
            r#"{"type":3}"#,
            r#"["chat",{"a":1},"id"]"#,
        ] {
            assert!(Envelope::parse(&Utf8Bytes::from(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn built_envelopes_keep_the_payload_field_order() {
        #[derive(Serialize)]
        struct Chat<'a> {
            room: &'a str,
            user: &'a str,
            text: &'a str,
        }
        let env = Envelope::new(
            "chat",
            &Chat {
                room: "r",
                user: "u",
                text: "t",
            },
        )
        .expect("env");
        assert_eq!(
            serde_json::to_string(&env).expect("json"),
            r#"{"type":"chat","payload":{"room":"r","user":"u","text":"t"}}"#
        );
        assert!(Envelope::new("ping", &()).expect("env").payload().is_none());
    }

    #[test]
    fn events_and_errors_have_the_documented_shape() {
        let event: Value = serde_json::from_str(&event_text("user_joined", r#"{"user":"a"}"#))
            .expect("valid JSON");
        assert_eq!(
            event,
            serde_json::json!({"type":"user_joined","data":{"user":"a"}})
        );
        let quoted: Value =
            serde_json::from_str(&event_text("a\"b", "1")).expect("names are escaped");
        assert_eq!(quoted["type"], "a\"b");
        let typed = Event::new("tick", &serde_json::json!({"clients": 2})).expect("event");
        assert_eq!(
            serde_json::to_value(&typed).expect("json"),
            serde_json::json!({"type":"tick","data":{"clients":2}})
        );
        let seven = RawValue::from_string("7".to_owned()).expect("JSON");
        let error = Envelope::error("boom").with_id(Some(seven));
        assert_eq!(
            serde_json::to_value(&error).expect("json"),
            serde_json::json!({"type":"error","payload":{"message":"boom"},"id":7})
        );
    }
}
