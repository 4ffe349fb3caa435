//! Keeping secrets out of logs and error messages.

/// Replaces the password in every `scheme://user:password@host` of `text` with `***`.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace or quote; credentials end at its last '@'.
        let end = tail
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '\''
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Replaces each non-empty secret in `text` with `***` where it stands as a word of its own (so a
/// short password such as `etl` does not mangle `etlhost` in a message).
pub fn redact_secrets(text: &str, secrets: &[&str]) -> String {
    let mut out = redact_urls(text);
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = replace_words(&out, s);
    }
    out
}

fn replace_words(text: &str, word: &str) -> String {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(word) {
        let before = rest[..i].chars().last().or_else(|| out.chars().last());
        let after = rest[i + word.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(is_word) || after.is_some_and(is_word) {
            out.push_str(word);
        } else {
            out.push_str("***");
        }
        rest = &rest[i + word.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(
            redact_urls("cannot reach mysql://etl:s3cr:et@127.0.0.1:3306/test now"),
            "cannot reach mysql://etl:***@127.0.0.1:3306/test now"
        );
        assert_eq!(
            redact_urls("bolt://127.0.0.1:7687"),
            "bolt://127.0.0.1:7687"
        );
        assert_eq!(redact_urls("a://u@h b://x:y@z/"), "a://u@h b://x:***@z/");
        assert_eq!(
            redact_secrets("password hunter2 rejected", &["hunter2", ""]),
            "password *** rejected"
        );
    }
}
