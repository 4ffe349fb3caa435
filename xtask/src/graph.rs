//! ArcadeDB's HTTP API, for what Bolt cannot do (creating databases) and for quick read-backs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::services;

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A request to ArcadeDB's HTTP API as root: (status, body).
pub fn http(method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    http_at(services::HTTP_PORT, method, path, body)
}

/// [`http`] to the server whose HTTP API listens on `port`.
pub fn http_at(port: u16, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.unwrap_or("");
    let auth = base64(format!("{}:{}", services::GRAPH_USER, services::GRAPH_PASSWORD).as_bytes());
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed HTTP status line")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Drops and re-creates a graph database, so a run starts from nothing.
pub fn fresh_graph(db: &str) -> Result<()> {
    fresh_graph_at(services::HTTP_PORT, db)
}

/// [`fresh_graph`] on the server whose HTTP API listens on `port`.
pub fn fresh_graph_at(port: u16, db: &str) -> Result<()> {
    let http = |m: &str, p: &str, b: Option<&str>| http_at(port, m, p, b);
    let exists = http("GET", "/api/v1/databases", None)?
        .1
        .contains(&format!("\"{db}\""));
    if exists {
        let (status, body) = http(
            "POST",
            "/api/v1/server",
            Some(&format!(r#"{{"command":"drop database {db}"}}"#)),
        )?;
        if status >= 300 {
            bail!("dropping graph database {db} failed: {status} {body}");
        }
    }
    let (status, body) = http(
        "POST",
        "/api/v1/server",
        Some(&format!(r#"{{"command":"create database {db}"}}"#)),
    )?;
    if status >= 300 {
        bail!("creating graph database {db} failed: {status} {body}");
    }
    Ok(())
}

/// Runs a Cypher query that returns one row with column `n`.
pub fn graph_count(db: &str, cypher: &str) -> Result<u64> {
    graph_count_at(services::HTTP_PORT, db, cypher)
}

/// [`graph_count`] on the server whose HTTP API listens on `port`.
pub fn graph_count_at(port: u16, db: &str, cypher: &str) -> Result<u64> {
    let body = serde_json::json!({"language": "cypher", "command": cypher}).to_string();
    let (status, text) = http_at(port, "POST", &format!("/api/v1/command/{db}"), Some(&body))?;
    if status >= 300 {
        bail!("graph query failed: {status} {text}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("bad JSON: {text}"))?;
    v["result"][0]["n"]
        .as_u64()
        .with_context(|| format!("no count in {text}"))
}

/// Runs ArcadeDB SQL statements in order (schema commands Bolt's Cypher has no words for, such
/// as a type's buckets).
pub fn graph_sql(db: &str, statements: &[&str]) -> Result<()> {
    for sql in statements {
        let body = serde_json::json!({"language": "sql", "command": sql}).to_string();
        let (status, text) = http("POST", &format!("/api/v1/command/{db}"), Some(&body))?;
        if status >= 300 {
            bail!("{sql}: {status} {text}");
        }
    }
    Ok(())
}

/// The statements that let `sink.endpoints.placement` keep concurrent writers of `rel` between
/// `label` nodes off each other's pages: the node type in one bucket per group of `writers`
/// writers (`2 writers + 1`), the relationship type in `4 writers` buckets chosen by the server
/// thread that writes (16 for 4 writers, as measured; one shared bucket's pages conflict). Run
/// before the nodes are loaded.
pub fn bucket_ddl(label: &str, rel: &str, writers: usize) -> Vec<String> {
    vec![
        format!(
            "CREATE VERTEX TYPE {label} IF NOT EXISTS BUCKETS {}",
            2 * writers + 1
        ),
        format!(
            "CREATE EDGE TYPE {rel} IF NOT EXISTS BUCKETS {}",
            4 * writers
        ),
        format!("ALTER TYPE {rel} BucketSelectionStrategy `thread`"),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(
            super::base64(b"root:etlhost-pass"),
            "cm9vdDpldGxob3N0LXBhc3M="
        );
        assert_eq!(super::base64(b"ab"), "YWI=");
    }
}
