//! Turning a connector's options (JSON from the host) into its typed config, with errors that name
//! the offending key.

use serde::de::DeserializeOwned;

use crate::error::ConfigError;

/// A connector's options. Derive `Deserialize` with `#[serde(deny_unknown_fields)]` so that a
/// misspelt option is an error, and put cross-field rules in [`Options::check`].
pub trait Options: DeserializeOwned {
    /// Rules serde cannot express (one of two keys required, a value range, ...).
    fn check(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Parses and checks options. Errors carry the key path: a missing field is reported at its own
/// key (`uri: missing`), an unknown one at its name.
pub fn parse<T: Options>(json: &[u8]) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(path_error)?;
    value.check()?;
    Ok(value)
}

/// Deserializes any serde type from a JSON value, with the same key-naming errors as [`parse`].
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(path_error)
}

fn path_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> ConfigError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    config_error_at(&path, &e.inner().to_string())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Rewrites serde's messages into `key: what is wrong` form.
fn config_error_at(path: &str, message: &str) -> ConfigError {
    // serde_json appends " at line 1 column N" which means nothing to a user of a YAML file.
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some(name) = rest.strip_suffix('`') {
            return ConfigError::new(join(path, name), "missing");
        }
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, expected)) = rest.split_once("`, ") {
            // The path already ends at the unknown key.
            let key = if path.ends_with(name) {
                path.to_string()
            } else {
                join(path, name)
            };
            return ConfigError::new(key, format!("unknown key, {expected}"));
        }
    }
    ConfigError::new(path, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Conf {
        uri: String,
        #[serde(default)]
        batch: Option<u32>,
    }
    impl Options for Conf {}

    #[test]
    fn errors_name_the_key() {
        let e = parse::<Conf>(br#"{"batch": 3}"#).unwrap_err();
        assert_eq!(e.to_string(), "uri: missing");
        let e = parse::<Conf>(br#"{"uri": "x", "bacth": 3}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bacth: unknown key, expected `uri` or `batch`"
        );
        let e = parse::<Conf>(br#"{"uri": "x", "batch": "many"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "batch: invalid type: string \"many\", expected u32"
        );
    }
}
