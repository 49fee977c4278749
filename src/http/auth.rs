//! How an HTTP request names its token: `Authorization: OAuth TOKEN` or
//! `?oauth=TOKEN`. Which tokens exist and what they reach is [`crate::auth`].

use hyper::header::HeaderValue;

/// The token of `Authorization: OAuth TOKEN` (scheme compared case-insensitively).
pub(super) fn bearer(header: Option<&HeaderValue>) -> Option<String> {
    let value = header?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("oauth")
        .then(|| token.trim().to_owned())
}

/// The token of `Authorization: Bearer TOKEN` or `OAuth TOKEN` (`/metrics`:
/// Prometheus sends Bearer).
pub(super) fn token(header: Option<&HeaderValue>) -> Option<String> {
    let value = header?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("oauth") || scheme.eq_ignore_ascii_case("bearer"))
        .then(|| token.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_read_oauth_headers_case_insensitively() {
        let header = HeaderValue::from_static("oauth secret");
        assert_eq!(bearer(Some(&header)).as_deref(), Some("secret"));
        let header = HeaderValue::from_static("Bearer secret");
        assert_eq!(bearer(Some(&header)), None);
        assert_eq!(bearer(None), None);
    }
}
