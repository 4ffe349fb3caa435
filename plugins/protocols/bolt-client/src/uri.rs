//! Bolt URIs as the official drivers define them: `bolt://` talks to one server, `neo4j://` asks it
//! for a routing table first; `+s` adds TLS verified against the system's roots, `+ssc` adds TLS
//! that accepts any certificate (still encrypted). A `trusted_ca` PEM file turns TLS on for the
//! plain schemes and becomes the only root, like the drivers' explicit trust setting.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// What is wrong with a URI, and which setting it is in: `uri`, or `trusted_ca` when the two
/// contradict each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriError {
    pub key: &'static str,
    pub message: String,
}

impl UriError {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        UriError {
            key,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for UriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for UriError {}

/// Which certificates a TLS connection accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The operating system's root store (`+s`).
    System,
    /// Any certificate (`+ssc`): encrypted, not authenticated.
    Any,
    /// Only certificates issued by the CAs in this PEM file (`trusted_ca`).
    Ca(PathBuf),
}

/// Where and how to connect, as a URI says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `neo4j://`: ask for a routing table and write to a WRITE server.
    pub routing: bool,
    /// `None` for plaintext.
    pub tls: Option<Trust>,
    /// `host:port` of the server named in the URI.
    pub address: String,
    /// The URI's query parameters: the routing context sent with HELLO and ROUTE.
    pub context: BTreeMap<String, String>,
}

impl Target {
    /// Reads `uri`; `trusted_ca` (a PEM file) turns TLS on for `bolt://` and `neo4j://`.
    pub fn parse(uri: &str, trusted_ca: Option<&str>) -> Result<Target, UriError> {
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| {
            UriError::new(
                "uri",
                "must start with bolt://, bolt+s://, bolt+ssc:// or the same with neo4j",
            )
        })?;
        let (routing, tls) = match scheme {
            "bolt" => (false, None),
            "bolt+s" => (false, Some(Trust::System)),
            "bolt+ssc" => (false, Some(Trust::Any)),
            "neo4j" => (true, None),
            "neo4j+s" => (true, Some(Trust::System)),
            "neo4j+ssc" => (true, Some(Trust::Any)),
            other => {
                return Err(UriError::new(
                    "uri",
                    format!(
                    "unknown scheme `{other}://`: use bolt://, bolt+s://, bolt+ssc://, neo4j://, \
                         neo4j+s:// or neo4j+ssc://"
                ),
                ))
            }
        };
        let tls = match (tls, trusted_ca) {
            (None, Some(ca)) => Some(Trust::Ca(PathBuf::from(ca))),
            (Some(_), Some(_)) => {
                return Err(UriError::new(
                    "trusted_ca",
                    format!(
                        "cannot be combined with {scheme}://, which sets its own trust; use \
                         bolt:// or neo4j:// with trusted_ca"
                    ),
                ))
            }
            (tls, None) => tls,
        };
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        // Credentials belong in user/password; a path is ignored by Bolt.
        let authority = authority.split('/').next().unwrap_or("");
        let authority = authority.rsplit('@').next().unwrap_or("");
        if authority.is_empty() {
            return Err(UriError::new("uri", "has no host"));
        }
        let address = with_default_port(authority)
            .ok_or_else(|| UriError::new("uri", format!("`{authority}` has an invalid port")))?;
        let mut context = BTreeMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !routing {
                return Err(UriError::new(
                    "uri",
                    format!("routing context `{k}` needs a neo4j:// URI (bolt:// does not route)"),
                ));
            }
            context.insert(k.to_string(), v.to_string());
        }
        Ok(Target {
            routing,
            tls,
            address,
            context,
        })
    }
}

/// `host:port`, adding Bolt's default port 7687; `None` for a port that is not a number.
pub fn with_default_port(authority: &str) -> Option<String> {
    // `[::1]:7687` or `[::1]`: the port follows the bracket.
    let port_part = match authority.rfind(']') {
        Some(i) => authority[i + 1..].strip_prefix(':'),
        None => authority.rsplit_once(':').map(|(_, p)| p),
    };
    match port_part {
        None => Some(format!("{authority}:7687")),
        Some(p) => p.parse::<u16>().ok().map(|_| authority.to_string()),
    }
}

/// The host part of `host:port`, brackets removed: what the certificate must name.
pub fn host_of(address: &str) -> &str {
    let host = match address.rfind(']') {
        Some(i) => &address[..=i],
        None => address.rsplit_once(':').map_or(address, |(h, _)| h),
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(uri: &str) -> Target {
        Target::parse(uri, None).unwrap()
    }

    #[test]
    fn schemes() {
        assert_eq!(t("bolt://127.0.0.1:7687").address, "127.0.0.1:7687");
        assert_eq!(t("neo4j://graph.local").address, "graph.local:7687");
        assert_eq!(t("bolt://u:p@h:1/db").address, "h:1");
        assert!(t("neo4j://h").routing && !t("bolt://h").routing);
        assert_eq!(t("bolt+s://h").tls, Some(Trust::System));
        assert_eq!(t("neo4j+ssc://h").tls, Some(Trust::Any));
        assert_eq!(t("bolt://h").tls, None);
        assert_eq!(
            Target::parse("bolt://h", Some("/ca.pem")).unwrap().tls,
            Some(Trust::Ca("/ca.pem".into()))
        );
        assert_eq!(t("bolt://[::1]").address, "[::1]:7687");
        assert_eq!(
            t("neo4j://h:7?region=eu&x").context,
            BTreeMap::from([("region".into(), "eu".into()), ("x".into(), "".into())])
        );
    }

    #[test]
    fn errors() {
        let e = |uri: &str, ca: Option<&str>| Target::parse(uri, ca).unwrap_err().to_string();
        assert_eq!(
            e("http://h", None),
            "uri: unknown scheme `http://`: use bolt://, bolt+s://, bolt+ssc://, neo4j://, \
             neo4j+s:// or neo4j+ssc://"
        );
        assert_eq!(
            e("localhost:7687", None),
            "uri: must start with bolt://, bolt+s://, bolt+ssc:// or the same with neo4j"
        );
        assert_eq!(e("bolt://h:x", None), "uri: `h:x` has an invalid port");
        assert_eq!(
            e("bolt+s://h", Some("ca.pem")),
            "trusted_ca: cannot be combined with bolt+s://, which sets its own trust; use bolt:// \
             or neo4j:// with trusted_ca"
        );
        assert_eq!(e("bolt://", None), "uri: has no host");
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("127.0.0.1:7687"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7687"), "::1");
        assert_eq!(host_of("graph.local:1"), "graph.local");
    }
}
