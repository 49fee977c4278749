//! Who may use which queues, on both front ends: the server's tokens
//! ([`Auth`], `--token`), and what one authenticated client may reach ([`Scope`]).
//!
//! A token covers every project or a list of them. A queue belongs to the project
//! before the `/` of its name (`p1/jobs` is project `p1`'s); an unqualified name
//! (`jobs`) is in the default namespace, which only a token for every project
//! reaches. The HTTP API takes the token from `Authorization: OAuth TOKEN` (or
//! `?oauth=`) and the project from the path; the binary protocol takes it from
//! `Hello.token` and checks every queue a request names against the connection's
//! scope, the second queue of a redrive and a dead-letter target included, and
//! shows a limited token only its projects' queues in `ListQueues` and
//! `ServerStats`.
//!
//! Tokens are compared in constant time (the `subtle` crate: no early exit on the
//! first differing byte; only a token's length can be told from the timing), every
//! configured token is compared on every attempt, and no token is ever logged or
//! printed: `Debug` masks them.

use subtle::ConstantTimeEq;

use crate::error::QueueError;
use crate::queue::types::QueueName;

/// The server's authentication: its tokens, or none at all.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// Accepted tokens, each with the projects it may use (`None`: every project).
    pub tokens: Vec<(String, Option<Vec<String>>)>,
    /// No authentication at all (`--auth none`): every client may use every queue.
    pub disabled: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tokens: Vec<_> = self
            .tokens
            .iter()
            .map(|(_, projects)| ("***", projects))
            .collect();
        f.debug_struct("Auth")
            .field("tokens", &tokens)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// What one authenticated client may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every queue (a token for every project, or a server without auth).
    All,
    /// The queues of these projects, sorted by their `project/` prefix.
    Projects(Vec<String>),
}

impl Auth {
    /// What `token` grants: `Some(None)` every project, `Some(Some(list))` those
    /// projects, `None` nothing (missing or unknown). Compares against every
    /// token, without stopping at a match.
    fn grant(&self, token: Option<&str>) -> Option<Option<&[String]>> {
        if self.disabled {
            return Some(None);
        }
        let token = token?.as_bytes();
        let mut found = None;
        for (known, projects) in &self.tokens {
            if bool::from(known.as_bytes().ct_eq(token)) {
                found = Some(projects.as_deref());
            }
        }
        found
    }

    /// The scope `token` grants, or `None` when it is missing or unknown. A server
    /// without auth grants [`Scope::All`] to everyone.
    pub fn scope(&self, token: Option<&str>) -> Option<Scope> {
        Some(match self.grant(token)? {
            None => Scope::All,
            Some(projects) => {
                let mut projects = projects.to_vec();
                projects.sort_by_key(|p| format!("{p}/"));
                projects.dedup();
                Scope::Projects(projects)
            }
        })
    }

    /// Whether `token` may act on `project` (checked on every HTTP request, so
    /// without building a [`Scope`]).
    pub fn allows(&self, token: Option<&str>, project: &str) -> bool {
        match self.grant(token) {
            None => false,
            Some(None) => true,
            Some(Some(projects)) => projects.iter().any(|p| p == project),
        }
    }
}

impl Scope {
    /// Whether this scope reaches the queues of `project` (`None`: the default
    /// namespace of unqualified names).
    pub fn covers_project(&self, project: Option<&str>) -> bool {
        match (self, project) {
            (Scope::All, _) => true,
            (Scope::Projects(list), Some(project)) => list.iter().any(|p| p == project),
            (Scope::Projects(_), None) => false,
        }
    }

    /// Whether this scope reaches queue `name`.
    pub fn covers(&self, name: &QueueName) -> bool {
        self.covers_project(name.project())
    }

    /// `Ok` when this scope reaches `name`, else `PermissionDenied` naming it.
    ///
    /// # Errors
    /// [`QueueError::PermissionDenied`].
    pub fn check(&self, name: &QueueName) -> Result<(), QueueError> {
        if self.covers(name) {
            Ok(())
        } else {
            Err(QueueError::PermissionDenied(format!(
                "this token does not cover queue {name:?} (a token limited to projects \
                 reaches only names of the form PROJECT/QUEUE of its projects)"
            )))
        }
    }
}

impl std::str::FromStr for Auth {
    type Err = String;

    /// One `--token` value: `TOKEN` or `TOKEN=PROJECT[,PROJECT...]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (token, projects) = match s.split_once('=') {
            Some((token, list)) => {
                let projects: Vec<String> = list
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect();
                if projects.is_empty() {
                    return Err("a token with '=' and no project after it".into());
                }
                if let Some(bad) = projects
                    .iter()
                    .find(|p| QueueName::new(p).is_err() || p.contains('/'))
                {
                    return Err(format!(
                        "project {bad:?}: use the characters of queue names (A-Z a-z 0-9 . _ -)"
                    ));
                }
                (token, Some(projects))
            }
            None => (s, None),
        };
        if token.is_empty() {
            return Err("an empty token".into());
        }
        Ok(Auth {
            tokens: vec![(token.to_owned(), projects)],
            disabled: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> QueueName {
        QueueName::new(text).unwrap()
    }

    #[test]
    fn should_scope_tokens_to_their_projects() {
        let mut auth: Auth = "limited=p2,p1".parse().unwrap();
        auth.tokens.push(("all".into(), None));
        assert!(auth.allows(Some("limited"), "p2"));
        assert!(!auth.allows(Some("limited"), "p3"));
        assert!(auth.allows(Some("all"), "p3"));
        assert!(!auth.allows(Some("wrong"), "p1"));
        assert!(!auth.allows(Some("limite"), "p1"));
        assert!(!auth.allows(None, "p1"));
        let limited = auth.scope(Some("limited")).unwrap();
        assert_eq!(limited, Scope::Projects(vec!["p1".into(), "p2".into()]));
        assert!(limited.check(&name("p1/jobs")).is_ok());
        assert!(matches!(
            limited.check(&name("jobs")),
            Err(QueueError::PermissionDenied(_))
        ));
        assert!(limited.check(&name("p3/jobs")).is_err());
        assert_eq!(auth.scope(Some("all")), Some(Scope::All));
        assert!("=p1".parse::<Auth>().is_err());
        assert!("t=".parse::<Auth>().is_err());
        assert!("t=a/b".parse::<Auth>().is_err());
    }

    #[test]
    fn should_sort_projects_by_their_name_prefix() {
        // "a-b/" sorts before "a/" ('-' < '/'), so a listing walks them in that order.
        let auth: Auth = "t=a,a-b".parse().unwrap();
        assert_eq!(
            auth.scope(Some("t")),
            Some(Scope::Projects(vec!["a-b".into(), "a".into()]))
        );
    }

    #[test]
    fn should_let_everyone_in_without_auth_and_never_print_a_token() {
        let open = Auth {
            tokens: Vec::new(),
            disabled: true,
        };
        assert_eq!(open.scope(None), Some(Scope::All));
        let auth: Auth = "s3cr3t=p1".parse().unwrap();
        let shown = format!("{auth:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("p1"), "{shown}");
    }
}
