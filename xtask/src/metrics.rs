//! Reading a running etlhost's Prometheus metrics, as the stream tests and benches wait on them.

use std::io::{Read, Write};

/// The text `/metrics` serves on `127.0.0.1:port`; `None` while nothing answers there yet.
pub fn scrape(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The stream's acknowledged `(binlog file, offset)` in a metrics text.
pub fn acked(text: &str) -> Option<(String, u64)> {
    let line = text
        .lines()
        .find(|l| l.starts_with("etlhost_stream_position{"))?;
    let file = line.split("file=\"").nth(1)?.split('"').next()?.to_string();
    Some((file, line.rsplit(' ').next()?.parse().ok()?))
}

/// Whether a metrics text says the stream has caught up with the server's head.
pub fn caught_up(text: &str) -> bool {
    text.lines().any(|l| l == "etlhost_stream_caught_up 1")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_position_and_caught_up_are_read_from_the_text() {
        let text = "etlhost_stream_caught_up 1\netlhost_stream_position{file=\"binlog.000003\",gtid=\"0-1-9\"} 4242\n";
        assert_eq!(super::acked(text), Some(("binlog.000003".into(), 4242)));
        assert!(super::caught_up(text));
        assert_eq!(super::acked("etlhost_stream_caught_up 0\n"), None);
    }
}
