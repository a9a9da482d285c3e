//! Checking the `Origin` header of an upgrade request (RFC 6455 §4.2.2 item 4, §10.2; RFC 6454).
//!
//! Browsers send `Origin` with every WebSocket handshake and let any page open a socket to any
//! server, so a server that relies on cookies or other ambient credentials must check it, or a
//! foreign page could act for the user (cross-site WebSocket hijacking). Clients that are not
//! browsers usually send no `Origin` and can send any value they like, so the check protects
//! browser users only; it is not authentication.

use super::{HandshakeError, UpgradeRequest};

/// Which origins may open a connection.
///
/// A request without an `Origin` header passes every policy: it does not come from a browser page
/// (browsers always send one, RFC 6455 §4.1 item 8), and a non-browser client could send any value
/// anyway. `Origin: null` (sandboxed frames, `file:` pages, some redirects) passes only
/// [`AllowAll`](Self::AllowAll).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OriginPolicy {
    /// The origin's `host[:port]` must equal the request's `Host` header, compared
    /// case-insensitively, with an omitted port meaning the scheme's default (80 for `http`/`ws`,
    /// 443 for `https`/`wss`). The scheme cannot be compared: the engine does not know whether the
    /// connection is under TLS.
    #[default]
    SameOrigin,
    /// The origin must match one of these patterns:
    ///
    /// * `https://app.example.com` — exactly this scheme and host, on the scheme's default port;
    /// * `https://app.example.com:8443` — on that port;
    /// * `https://*.example.com` — any host with one or more labels in front of `example.com`
    ///   (`a.example.com`, `a.b.example.com`), never `example.com` itself nor `evilexample.com`;
    /// * `http://localhost:*` — on any port.
    ///
    /// Schemes and hosts compare case-insensitively; a pattern that is not of this form matches
    /// nothing.
    AllowList(Vec<String>),
    /// Any origin, `null` included.
    AllowAll,
}

impl OriginPolicy {
    /// [`OriginPolicy::SameOrigin`].
    pub fn same_origin() -> Self {
        OriginPolicy::SameOrigin
    }

    /// [`OriginPolicy::AllowList`] with these patterns.
    pub fn allow<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        OriginPolicy::AllowList(patterns.into_iter().map(Into::into).collect())
    }

    /// [`OriginPolicy::AllowAll`].
    pub fn allow_all() -> Self {
        OriginPolicy::AllowAll
    }

    /// Checks the request's `Origin` against this policy.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::OriginRefused`] (`403 Forbidden`, RFC 6455 §4.2.2 item 4) if the origin is
    /// not allowed.
    pub fn check(&self, req: &UpgradeRequest<'_>) -> Result<(), HandshakeError> {
        if self.allows(req.origin(), req.host()) {
            Ok(())
        } else {
            Err(HandshakeError::OriginRefused)
        }
    }

    /// Whether `origin` (the `Origin` header value, if any) is allowed for a request whose `Host`
    /// header is `host`.
    pub fn allows(&self, origin: Option<&str>, host: &str) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        match self {
            OriginPolicy::AllowAll => true,
            OriginPolicy::SameOrigin => {
                let (Some(o), Some((h_host, h_port))) =
                    (Origin::parse(origin), split_host_port(host))
                else {
                    return false;
                };
                let host_port = match h_port {
                    Some(p) => p,
                    // The Host header omits the port only when it is the default for the scheme the
                    // client used, so the origin must be on its own scheme's default port.
                    None if o.port == o.default_port => o.port,
                    None => return false,
                };
                o.host.eq_ignore_ascii_case(h_host) && o.port == host_port
            }
            OriginPolicy::AllowList(patterns) => match Origin::parse(origin) {
                Some(o) => patterns.iter().any(|p| pattern_matches(p, &o)),
                None => false,
            },
        }
    }
}

/// A parsed serialized origin (RFC 6454 §6.2): `scheme "://" host [ ":" port ]`, nothing after.
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
    default_port: u16,
}

impl<'a> Origin<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let (scheme, rest) = s.split_once("://")?;
        let default_port = default_port(scheme)?;
        let (host, port) = split_host_port(rest)?;
        Some(Origin {
            scheme,
            host,
            port: port.unwrap_or(default_port),
            default_port,
        })
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        Some(443)
    } else {
        None
    }
}

/// Splits `host[:port]`, refusing anything with a path, userinfo or an empty host. The host is a
/// registered name or IPv4 address (letters, digits, `-`, `.`, `_`) or a bracketed IPv6 literal; the
/// port, if present, is 1 to 5 digits and at most 65535.
pub(super) fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        s.get(1..end)?.parse::<std::net::Ipv6Addr>().ok()?;
        let rest = s.get(end + 1..)?;
        let port = if rest.is_empty() {
            None
        } else {
            Some(rest.strip_prefix(':')?)
        };
        (s.get(..=end)?, port)
    } else {
        let (h, p) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if h.is_empty() || !h.bytes().all(ok) {
            return None;
        }
        (h, p)
    };
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Some((host, port))
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

fn pattern_matches(pattern: &str, o: &Origin<'_>) -> bool {
    let Some((scheme, rest)) = pattern.split_once("://") else {
        return false;
    };
    let Some(default) = default_port(scheme) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(o.scheme) {
        return false;
    }
    let (wildcard, rest) = match rest.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    // `None` means any port.
    let (host, port) = match rest.strip_suffix(":*") {
        Some(h) => match split_host_port(h) {
            Some((h, None)) => (h, None),
            _ => return false,
        },
        None => match split_host_port(rest) {
            Some((h, p)) => (h, Some(p.unwrap_or(default))),
            None => return false,
        },
    };
    if port.is_some_and(|p| p != o.port) {
        return false;
    }
    if !wildcard {
        return host.eq_ignore_ascii_case(o.host);
    }
    // `*.domain`: one or more whole, non-empty labels in front of `.domain`.
    let Some(prefix_len) = o.host.len().checked_sub(host.len() + 1) else {
        return false;
    };
    let (Some(prefix), Some(dot_domain)) = (o.host.get(..prefix_len), o.host.get(prefix_len..))
    else {
        return false;
    };
    !host.starts_with('[')
        && dot_domain.starts_with('.')
        && dot_domain
            .get(1..)
            .is_some_and(|d| d.eq_ignore_ascii_case(host))
        && !prefix.is_empty()
        && prefix.split('.').all(|label| !label.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_table() {
        let p = OriginPolicy::same_origin();
        let cases: &[(Option<&str>, &str, bool)] = &[
            (None, "example.com", true),
            (Some("http://example.com"), "example.com", true),
            (Some("https://example.com"), "example.com", true),
            (Some("HTTPS://Example.COM"), "example.com", true),
            (Some("https://example.com"), "EXAMPLE.com:443", true),
            (Some("http://example.com"), "example.com:80", true),
            (Some("http://example.com:80"), "example.com", true),
            (Some("https://example.com:443"), "example.com", true),
            (Some("http://example.com:8080"), "example.com:8080", true),
            (Some("http://[::1]:9001"), "[::1]:9001", true),
            (Some("https://example.com"), "example.com:80", false),
            (Some("http://example.com:8080"), "example.com", false),
            (Some("http://example.com"), "example.com:8080", false),
            (Some("https://example.com:80"), "example.com", false),
            (Some("http://evil.com"), "example.com", false),
            (Some("http://example.com.evil.com"), "example.com", false),
            (Some("http://sub.example.com"), "example.com", false),
            (Some("null"), "example.com", false),
            (Some("file://"), "example.com", false),
            (Some("http://example.com/path"), "example.com", false),
            (Some("http://user@example.com"), "example.com", false),
            (Some("ftp://example.com"), "example.com", false),
            (Some("http://example.com:99999"), "example.com:99999", false),
            (Some("http://example.com:"), "example.com", false),
        ];
        for &(origin, host, want) in cases {
            assert_eq!(p.allows(origin, host), want, "{origin:?} vs Host {host}");
        }
    }

    #[test]
    fn allow_list_table() {
        let p = OriginPolicy::allow([
            "https://app.example.com",
            "https://*.example.org",
            "http://localhost:*",
            "https://api.example.net:8443",
            "http://[::1]:*",
        ]);
        let cases: &[(&str, bool)] = &[
            ("https://app.example.com", true),
            ("HTTPS://APP.example.com", true),
            ("https://app.example.com:443", true),
            ("https://app.example.com:8443", false),
            ("http://app.example.com", false),
            ("https://other.example.com", false),
            ("https://a.example.org", true),
            ("https://a.b.example.org", true),
            ("https://A.Example.ORG", true),
            ("https://example.org", false),
            ("https://evilexample.org", false),
            ("https://.example.org", false),
            ("https://a..example.org", false),
            ("https://example.org.evil.com", false),
            ("http://a.example.org", false),
            ("http://localhost", true),
            ("http://localhost:3000", true),
            ("https://localhost:3000", false),
            ("http://localhost.evil.com:3000", false),
            ("https://api.example.net:8443", true),
            ("https://api.example.net", false),
            ("http://[::1]:8080", true),
            ("null", false),
        ];
        for &(origin, want) in cases {
            assert_eq!(p.allows(Some(origin), "ignored"), want, "{origin}");
        }
        assert!(p.allows(None, "ignored"));
    }

    #[test]
    fn malformed_patterns_match_nothing() {
        for pat in [
            "example.com",
            "https://*",
            "https://*.",
            "ftp://a.com",
            "https://a*.com",
            "https://*.*.com",
        ] {
            let p = OriginPolicy::allow([pat]);
            for o in [
                "https://a.com",
                "https://x.a.com",
                "https://example.com",
                "https://a.b.com",
            ] {
                assert!(!p.allows(Some(o), "a.com"), "{pat} matched {o}");
            }
        }
    }

    #[test]
    fn allow_all_allows_null() {
        assert!(OriginPolicy::allow_all().allows(Some("null"), "example.com"));
        assert!(OriginPolicy::allow_all().allows(Some("garbage"), "example.com"));
        assert_eq!(OriginPolicy::default(), OriginPolicy::SameOrigin);
    }
}
