//! Which subscriber hosts and addresses push deliveries may reach (SSRF).
//!
//! A subscriber URL is a way into the network the server sits in: without a
//! policy, anyone who may create a push queue could make the server POST to its
//! cloud metadata endpoint, a database's HTTP port or an admin page on localhost.
//!
//! # Rules
//! A rule is a network (`10.0.0.0/8`, `::1/128`, a bare address), a host name
//! (`hooks.example.com`) or a domain suffix (`*.example.com`, which also matches
//! `example.com`). A delivery goes out only if
//! - its host name matches no `--push-deny` name rule, and
//! - every address it connects to is allowed: it matches a `--push-allow` rule
//!   (network, or a name rule matching the URL's host), or it matches no deny
//!   rule.
//!
//! The check is made on the address the connection is actually made to, after
//! name resolution (`client.rs`), so a name that resolves to a private address
//! (DNS rebinding included) is refused like the address itself.
//!
//! # Default
//! Deny the networks that are not the public internet: loopback (`127.0.0.0/8`,
//! `::1`), private (`10/8`, `172.16/12`, `192.168/16`, `fc00::/7`), link-local
//! (`169.254/16` with the cloud metadata address, `fe80::/10`), shared/CGNAT
//! (`100.64/10`), "this network" (`0/8`, `::`), benchmarking (`198.18/15`),
//! multicast, broadcast and reserved (`224/3`, `ff00::/8`), and IPv4-mapped IPv6
//! addresses are checked as the IPv4 address they carry. Everything else (the
//! public internet) is allowed. A server whose subscribers run on its own network
//! names them with `--push-allow` (the tests allow `127.0.0.1`).

use std::net::IpAddr;

/// The networks denied by default (see the module docs).
pub const DEFAULT_DENY: [&str; 16] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/3",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
    "64:ff9b::/96",
];

/// One allow or deny rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// An address and prefix length.
    Net(IpAddr, u8),
    /// A host name, lower case.
    Host(String),
    /// A domain and its subdomains (`*.example.com`), lower case, without `*.`.
    Domain(String),
}

impl Rule {
    /// Parses a rule.
    ///
    /// # Errors
    /// A message naming the rule, if it is neither a network nor a host name.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let text = text.trim();
        if let Some((addr, len)) = text.split_once('/') {
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("push rule {text:?}: {addr:?} is not an IP address"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len: u8 = len
                .parse()
                .ok()
                .filter(|&len| len <= max)
                .ok_or_else(|| format!("push rule {text:?}: the prefix must be 0..={max}"))?;
            return Ok(Rule::Net(addr, len));
        }
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Ok(Rule::Net(addr, if addr.is_ipv4() { 32 } else { 128 }));
        }
        let (domain, name) = match text.strip_prefix("*.") {
            Some(name) => (true, name),
            None => (false, text),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(format!(
                "push rule {text:?} is not a network (10.0.0.0/8), an address, a host name or \
                 *.domain"
            ));
        }
        let name = name.to_ascii_lowercase();
        Ok(if domain {
            Rule::Domain(name)
        } else {
            Rule::Host(name)
        })
    }

    fn matches_host(&self, host: &str) -> bool {
        match self {
            Rule::Host(name) => host == name,
            Rule::Domain(domain) => {
                host == domain
                    || host
                        .strip_suffix(domain.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            }
            Rule::Net(..) => false,
        }
    }

    fn matches_addr(&self, addr: IpAddr) -> bool {
        let Rule::Net(net, len) = *self else {
            return false;
        };
        match (net, canonical(addr)) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => prefix_eq(&net.octets(), &addr.octets(), len),
            (IpAddr::V6(net), IpAddr::V6(addr)) => prefix_eq(&net.octets(), &addr.octets(), len),
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let full = usize::from(len / 8);
    let rest = len % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

/// The allow and deny rules of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

impl Policy {
    /// The default deny list plus `deny`, and `allow`.
    ///
    /// # Errors
    /// A message naming the first rule that does not parse.
    pub fn new(allow: &[String], deny: &[String]) -> Result<Policy, String> {
        let parse = |rules: &[String]| {
            rules
                .iter()
                .map(|r| Rule::parse(r))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut denied = DEFAULT_DENY
            .iter()
            .map(|r| Rule::parse(r))
            .collect::<Result<Vec<_>, _>>()?;
        denied.extend(parse(deny)?);
        Ok(Policy {
            allow: parse(allow)?,
            deny: denied,
        })
    }

    /// Whether a delivery to `host` may be tried at all (name rules only).
    ///
    /// # Errors
    /// Why not.
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        let host = host.to_ascii_lowercase();
        if self.allow.iter().any(|r| r.matches_host(&host)) {
            return Ok(());
        }
        if self.deny.iter().any(|r| r.matches_host(&host)) {
            return Err(format!(
                "subscriber host {host} is denied by the push policy"
            ));
        }
        Ok(())
    }

    /// Whether a delivery to `host` may connect to `addr`.
    ///
    /// # Errors
    /// Why not.
    pub fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), String> {
        let host = host.to_ascii_lowercase();
        let allowed = self
            .allow
            .iter()
            .any(|r| r.matches_addr(addr) || r.matches_host(&host));
        if allowed || !self.deny.iter().any(|r| r.matches_addr(addr)) {
            return Ok(());
        }
        Err(format!(
            "subscriber address {addr} ({host}) is in a network the push policy denies \
             (allow it with --push-allow)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn should_deny_internal_networks_and_allow_the_internet_by_default() {
        let policy = Policy::new(&[], &[]).unwrap();
        for denied in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(policy.check_addr("h", ip(denied)).is_err(), "{denied}");
        }
        for addr in [
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        ] {
            assert!(policy.check_addr("h", addr).is_err(), "{addr}");
        }
        for allowed in ["8.8.8.8", "172.32.0.1", "2606:4700::1111", "1.1.1.1"] {
            assert!(policy.check_addr("h", ip(allowed)).is_ok(), "{allowed}");
        }
    }

    #[test]
    fn should_let_allow_rules_override_the_deny_list_and_deny_names() {
        let policy = Policy::new(
            &["127.0.0.1".into(), "*.internal.example".into()],
            &["evil.example.com".into(), "8.8.4.0/24".into()],
        )
        .unwrap();
        assert!(policy.check_addr("localhost", ip("127.0.0.1")).is_ok());
        assert!(policy.check_addr("localhost", ip("127.0.0.2")).is_err());
        assert!(policy
            .check_addr("a.internal.example", ip("10.0.0.1"))
            .is_ok());
        assert!(policy
            .check_addr("internal.example", ip("10.0.0.1"))
            .is_ok());
        assert!(policy
            .check_addr("xinternal.example", ip("10.0.0.1"))
            .is_err());
        assert!(policy.check_host("EVIL.example.com").is_err());
        assert!(policy.check_host("good.example.com").is_ok());
        assert!(policy.check_addr("h", ip("8.8.4.4")).is_err());
        assert!(policy.check_addr("h", ip("8.8.8.8")).is_ok());
    }

    #[test]
    fn should_refuse_rules_that_do_not_parse() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "a..b",
            "",
            "*.",
            "exa mple.com",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Rule::parse("10.0.0.0/8"), Ok(Rule::Net(ip("10.0.0.0"), 8)));
        assert_eq!(
            Rule::parse("Hooks.Example.com"),
            Ok(Rule::Host("hooks.example.com".into()))
        );
    }
}
