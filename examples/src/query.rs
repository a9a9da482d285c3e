//! Reading a parameter from the query of a request target (`user=alice&x=1`), as browsers
//! encode it: `&`-separated `name=value` pairs, `+` for a space, `%XX` escapes (RFC 3986 §2.1;
//! the `application/x-www-form-urlencoded` convention for `+`). Invalid UTF-8 after decoding is
//! replaced with U+FFFD.

use percent_encoding::percent_decode_str;

/// The decoded value of the first parameter named `name` in `query` (the part after `?`, without
/// it); `Some("")` for `name=` or a bare `name`, `None` if it is absent.
///
/// ```
/// use tidings_examples::query::param;
/// assert_eq!(param(Some("user=al%C3%AFce+b&x=1"), "user").as_deref(), Some("alïce b"));
/// assert_eq!(param(Some("x=1&user"), "user").as_deref(), Some(""));
/// assert_eq!(param(Some("users=1"), "user"), None);
/// assert_eq!(param(None, "user"), None);
/// ```
pub fn param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(value))
    })
}

fn decode(s: &str) -> String {
    // `+` first: an encoded plus (`%2B`) must stay a plus.
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}
