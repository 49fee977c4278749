//! Who may use the HTTP API: tokens, each for every project or a list of them,
//! given as `Authorization: OAuth TOKEN` or `?oauth=TOKEN`.

use hyper::header::HeaderValue;

/// The tokens the HTTP API accepts (`--http-token`), or no authentication at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAuth {
    /// Accepted tokens, each with the projects it may use (`None`: every project).
    pub tokens: Vec<(String, Option<Vec<String>>)>,
    /// No authentication at all; only when the configuration says so.
    pub disabled: bool,
}

impl HttpAuth {
    /// Whether `token` may act on `project`.
    pub fn allows(&self, token: Option<&str>, project: &str) -> bool {
        if self.disabled {
            return true;
        }
        let Some(token) = token else {
            return false;
        };
        self.tokens.iter().any(|(known, projects)| {
            known == token
                && projects
                    .as_ref()
                    .is_none_or(|list| list.iter().any(|p| p == project))
        })
    }
}

impl std::str::FromStr for HttpAuth {
    type Err = String;

    /// One `--http-token` value: `TOKEN` or `TOKEN=PROJECT[,PROJECT...]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (token, projects) = match s.split_once('=') {
            Some((token, list)) => {
                let projects: Vec<String> = list
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
                if projects.is_empty() {
                    return Err(format!("{s:?}: no project after '='"));
                }
                (token, Some(projects))
            }
            None => (s, None),
        };
        if token.is_empty() {
            return Err("an empty token".into());
        }
        Ok(HttpAuth {
            tokens: vec![(token.to_owned(), projects)],
            disabled: false,
        })
    }
}

/// The token of `Authorization: OAuth TOKEN` (scheme compared case-insensitively).
pub(super) fn bearer(header: Option<&HeaderValue>) -> Option<String> {
    let value = header?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("oauth")
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

    #[test]
    fn should_scope_tokens_to_their_projects() {
        let mut auth: HttpAuth = "limited=p1,p2".parse().unwrap();
        auth.tokens.push(("all".into(), None));
        assert!(auth.allows(Some("limited"), "p2"));
        assert!(!auth.allows(Some("limited"), "p3"));
        assert!(auth.allows(Some("all"), "p3"));
        assert!(!auth.allows(Some("wrong"), "p1"));
        assert!(!auth.allows(None, "p1"));
        assert!("=p1".parse::<HttpAuth>().is_err());
        assert!("t=".parse::<HttpAuth>().is_err());
    }
}
