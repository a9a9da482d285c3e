//! Response bodies and [`IntoResponse`] for the server helper's HTTP routes: a whole body in
//! memory, or any streaming `http_body::Body` (Server-Sent Events, a file, a proxy).

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use tidings_core::handshake::HttpResponse;

use crate::Rejection;

/// The error of a streaming body, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a response from an HTTP route: whole bytes, or a stream. Made with
/// [`From`] (bytes, strings) or [`Body::new`] (any `http_body::Body`, e.g. an
/// [`SseBody`](crate::sse::SseBody)).
pub struct Body(Kind);

enum Kind {
    Full(Option<Bytes>),
    Stream(UnsyncBoxBody<Bytes, BoxError>),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Full(b) => f
                .debug_tuple("Body")
                .field(&b.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Stream(_) => f.write_str("Body(stream)"),
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl Body {
    /// No body.
    pub fn empty() -> Self {
        Body(Kind::Full(None))
    }

    /// Any body of `Bytes` frames; a [`Body`] is taken as it is (not boxed twice).
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut slot = Some(body);
        if let Some(body) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Body>>() {
            return body.take().unwrap_or_default();
        }
        match slot {
            Some(body) => Body(Kind::Stream(body.map_err(Into::into).boxed_unsync())),
            None => Body::empty(),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(body) => body.size_hint(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body(Kind::Full((!bytes.is_empty()).then_some(bytes)))
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Bytes::from(text).into()
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Bytes::from_static(text.as_bytes()).into()
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Bytes::from_static(bytes).into()
    }
}

impl From<()> for Body {
    fn from((): ()) -> Self {
        Body::empty()
    }
}

impl From<Infallible> for Body {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

/// What an HTTP route's handler may answer with: an `http::Response` with any body, a
/// [`HttpResponse`], a [`Rejection`], a status, a string, or a status with a string.
pub trait IntoResponse {
    /// The response.
    fn into_response(self) -> Response<Body>;
}

impl<B> IntoResponse for Response<B>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn into_response(self) -> Response<Body> {
        self.map(Body::new)
    }
}

impl IntoResponse for HttpResponse {
    fn into_response(self) -> Response<Body> {
        self.into_http::<Bytes>().map(Body::from)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response<Body> {
        self.to_http_response().into_response()
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = self;
        response
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response<Body> {
        (StatusCode::OK, self).into_response()
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response<Body> {
        (StatusCode::OK, self).into_response()
    }
}

impl<T: Into<Body>> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response<Body> {
        let mut response = Response::new(self.1.into());
        *response.status_mut() = self.0;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// A JSON response (`application/json`) of a serializable value (feature `json`); `500` if it
/// does not serialize.
#[cfg(feature = "json")]
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

#[cfg(feature = "json")]
impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response<Body> {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => {
                let mut response = Response::new(Body::from(bytes));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
}

#[cfg(feature = "json")]
impl<T: serde::Serialize> IntoResponse for (StatusCode, Json<T>) {
    fn into_response(self) -> Response<Body> {
        let mut response = self.1.into_response();
        if response.status() == StatusCode::OK {
            *response.status_mut() = self.0;
        }
        response
    }
}
