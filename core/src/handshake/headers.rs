//! Header-field helpers shared by both handshake roles.
//!
//! Everything here works on borrowed bytes and allocates only for the values it returns. Header names
//! are compared ASCII case-insensitively (RFC 9110 §5.1); list-valued fields are split on commas with
//! optional whitespace around each element, and empty elements are skipped (RFC 9110 §5.6.1).

use std::fmt;

use super::HandshakeError;

/// The value of the first header named `name` (ASCII case-insensitive), if any.
///
/// `headers` yields `(name, value)` pairs, as [`UpgradeRequest::headers`](super::UpgradeRequest::headers)
/// does.
pub fn find_header<'a, I>(headers: I, name: &str) -> Option<&'a [u8]>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    headers
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Whether a comma-separated header value contains `token`, compared ASCII case-insensitively.
///
/// `Connection: keep-alive, Upgrade` contains `upgrade`. Elements are trimmed of spaces and tabs.
pub fn list_contains(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|element| trim_ows(element).eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether `s` is an HTTP `token` (RFC 9110 §5.6.2): one or more visible ASCII characters other than
/// the separators `"(),/:;<=>?@[\]{}`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Whether `value` may be written as a header-field value that the application supplied.
///
/// Refuses CR, LF and NUL, which would let a value end the header line (or the head) early and
/// inject fields of its own, and also every other ASCII control character except horizontal tab
/// (RFC 9110 §5.5 allows only visible characters, space, tab and obs-text).
pub fn is_valid_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// The subprotocols listed in one or more `Sec-WebSocket-Protocol` header values, in order
/// (RFC 6455 §4.1 item 10, §11.3.4).
///
/// Several header lines concatenate into one list. Elements that are not valid tokens, and lines
/// that are not UTF-8, are skipped: a subprotocol that cannot be named cannot be chosen.
pub fn parse_protocols<'a, I>(values: I) -> Vec<&'a str>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut out = Vec::new();
    for value in values {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        out.extend(
            value
                .split(',')
                .map(|p| p.trim_matches([' ', '\t']))
                .filter(|p| is_token(p)),
        );
    }
    out
}

/// One element of a `Sec-WebSocket-Extensions` list: an extension name and its parameters
/// (RFC 6455 §9.1).
///
/// Parameter values are stored unquoted; [`Display`](fmt::Display) renders the element back into a
/// header value, quoting a value only where it is not a token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtensionOffer {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// The parameters in order; `None` for a parameter without a value (`client_no_context_takeover`).
    pub params: Vec<(String, Option<String>)>,
}

impl ExtensionOffer {
    /// An offer for `name` without parameters.
    pub fn new(name: impl Into<String>) -> Self {
        ExtensionOffer {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// Appends a parameter and returns the offer (builder style).
    pub fn with_param(mut self, name: impl Into<String>, value: Option<&str>) -> Self {
        self.params.push((name.into(), value.map(str::to_owned)));
        self
    }

    /// The first parameter named `name` (ASCII case-insensitive): `None` if absent, `Some(None)` if
    /// present without a value, `Some(Some(v))` if present with value `v`.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// This element rendered as a `Sec-WebSocket-Extensions` value, e.g.
    /// `permessage-deflate; client_max_window_bits=10`.
    pub fn to_header_value(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ExtensionOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (name, value) in &self.params {
            write!(f, "; {name}")?;
            match value {
                None => {}
                Some(v) if is_token(v) => write!(f, "={v}")?,
                Some(v) => {
                    f.write_str("=\"")?;
                    for c in v.chars() {
                        if c == '"' || c == '\\' {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"")?;
                }
            }
        }
        Ok(())
    }
}

/// Renders a list of extension elements as one `Sec-WebSocket-Extensions` value, comma-separated.
pub fn render_extensions(offers: &[ExtensionOffer]) -> String {
    let mut out = String::new();
    for (i, offer) in offers.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&offer.to_string());
    }
    out
}

/// Parses one or more `Sec-WebSocket-Extensions` header values into a list of elements
/// (RFC 6455 §9.1 grammar; several header lines concatenate into one list, §9.1 last paragraph).
///
/// ```text
/// extension-list  = 1#extension
/// extension       = extension-token *( ";" extension-param )
/// extension-param = token [ "=" ( token / quoted-string ) ]
/// ```
///
/// A quoted value must unescape to a token (§9.1). Empty list elements are skipped (RFC 9110 §5.6.1).
///
/// # Errors
///
/// [`HandshakeError::MalformedExtensions`] if any value does not follow the grammar or is not UTF-8.
pub fn parse_extensions<'a, I>(values: I) -> Result<Vec<ExtensionOffer>, HandshakeError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut out = Vec::new();
    for value in values {
        let value = std::str::from_utf8(value).map_err(|_| HandshakeError::MalformedExtensions)?;
        ExtParser {
            s: value.as_bytes(),
            pos: 0,
        }
        .parse_list(&mut out)
        .ok_or(HandshakeError::MalformedExtensions)?;
    }
    Ok(out)
}

/// A byte cursor over one header value. Every method returns `None` on a grammar error.
struct ExtParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl ExtParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        let t = self.s.get(start..self.pos)?;
        if t.is_empty() {
            return None;
        }
        // tchars are ASCII, so this is valid UTF-8.
        Some(String::from_utf8_lossy(t).into_owned())
    }

    fn quoted(&mut self) -> Option<String> {
        // Caller saw the opening quote.
        self.pos += 1;
        let mut v = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\\' => {
                    self.pos += 1;
                    v.push(self.peek()?);
                    self.pos += 1;
                }
                b => {
                    v.push(b);
                    self.pos += 1;
                }
            }
        }
        let v = String::from_utf8(v).ok()?;
        // §9.1: the unescaped value MUST conform to the token ABNF.
        is_token(&v).then_some(v)
    }

    fn parse_list(&mut self, out: &mut Vec<ExtensionOffer>) -> Option<()> {
        loop {
            self.skip_ows();
            match self.peek() {
                None => return Some(()),
                Some(b',') => {
                    self.pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            let mut offer = ExtensionOffer::new(self.token()?);
            loop {
                self.skip_ows();
                match self.peek() {
                    None => {
                        out.push(offer);
                        return Some(());
                    }
                    Some(b',') => {
                        self.pos += 1;
                        out.push(offer);
                        break;
                    }
                    Some(b';') => {
                        self.pos += 1;
                        self.skip_ows();
                        let name = self.token()?;
                        self.skip_ows();
                        let value = if self.peek() == Some(b'=') {
                            self.pos += 1;
                            self.skip_ows();
                            Some(if self.peek() == Some(b'"') {
                                self.quoted()?
                            } else {
                                self.token()?
                            })
                        } else {
                            None
                        };
                        offer.params.push((name, value));
                    }
                    Some(_) => return None,
                }
            }
        }
    }
}

/// `tchar` from RFC 9110 §5.6.2.
pub(crate) fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`'
        | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// Strips spaces and tabs from both ends.
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Appends `name: value\r\n`.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ext(values: &[&str]) -> Result<Vec<ExtensionOffer>, HandshakeError> {
        parse_extensions(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn list_contains_is_case_insensitive_and_trims() {
        assert!(list_contains(b"keep-alive, Upgrade", "upgrade"));
        assert!(list_contains(b"UPGRADE", "upgrade"));
        assert!(list_contains(b"a,\tupgrade\t ,b", "Upgrade"));
        assert!(!list_contains(b"keep-alive", "upgrade"));
        assert!(!list_contains(b"upgrades", "upgrade"));
        assert!(!list_contains(b"", "upgrade"));
    }

    #[test]
    fn find_header_is_case_insensitive() {
        let h: [(&str, &[u8]); 2] = [("Host", b"a"), ("sec-websocket-key", b"k")];
        assert_eq!(find_header(h, "SEC-WebSocket-Key"), Some(&b"k"[..]));
        assert_eq!(find_header(h, "Origin"), None);
    }

    #[test]
    fn header_value_validation_refuses_line_breaks_and_nul() {
        assert!(is_valid_header_value("Bearer abc\tdef"));
        assert!(is_valid_header_value(""));
        assert!(is_valid_header_value("caf\u{e9}"));
        for bad in [
            "a\r\nX-Injected: 1",
            "a\nb",
            "a\rb",
            "a\0b",
            "a\x7fb",
            "\x01",
        ] {
            assert!(!is_valid_header_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn protocols_across_lines_skip_invalid_elements() {
        let lines: [&[u8]; 3] = [b"chat, superchat", b" v2.json ,,bad token", b"\xff"];
        assert_eq!(parse_protocols(lines), ["chat", "superchat", "v2.json"]);
    }

    #[test]
    fn extension_grammar() {
        let got = ext(&[
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10",
            "x-foo ; a = \"b\\c\" , x-bar",
        ])
        .unwrap();
        assert_eq!(
            got,
            vec![
                ExtensionOffer::new("permessage-deflate")
                    .with_param("client_max_window_bits", None)
                    .with_param("server_max_window_bits", Some("10")),
                ExtensionOffer::new("x-foo").with_param("a", Some("bc")),
                ExtensionOffer::new("x-bar"),
            ]
        );
        assert_eq!(got[0].param("SERVER_max_window_bits"), Some(Some("10")));
        assert_eq!(got[0].param("client_max_window_bits"), Some(None));
        assert_eq!(got[0].param("nope"), None);
        assert_eq!(
            render_extensions(&got),
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
             x-foo; a=bc, x-bar"
        );
        // Empty elements and empty lines are tolerated.
        assert_eq!(
            ext(&[" , a ,", ""]).unwrap(),
            vec![ExtensionOffer::new("a")]
        );
        assert_eq!(
            ext(&["a; q=\"10\""]).unwrap()[0].param("q"),
            Some(Some("10"))
        );
    }

    #[test]
    fn extension_grammar_rejects_malformed() {
        for bad in [
            "a;",
            "a; =1",
            "a; b=",
            "a; b=\"unterminated",
            "a; b=\"not a token\"",
            "a; b=\"\"",
            "a b",
            "a; b=c d",
            ";a",
            "a=1",
            "a; b=\"x\"y",
            "a/b",
        ] {
            assert_eq!(
                ext(&[bad]),
                Err(HandshakeError::MalformedExtensions),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_extensions([&b"a; b=\xff"[..]]),
            Err(HandshakeError::MalformedExtensions)
        );
    }

    #[test]
    fn rendering_quotes_non_token_values_and_round_trips() {
        let o = ExtensionOffer::new("x").with_param("p", Some("a b\"c"));
        assert_eq!(o.to_header_value(), "x; p=\"a b\\\"c\"");
        let o = ExtensionOffer::new("x")
            .with_param("p", Some("1"))
            .with_param("q", None);
        assert_eq!(ext(&[&o.to_header_value()]).unwrap(), vec![o]);
    }
}
