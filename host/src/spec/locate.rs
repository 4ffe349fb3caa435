//! Finds the line of a key path (`sink.options.uri`, `transforms[1].name`) in a spec file, so that
//! errors found after parsing, by the host or by a plugin, can still point at the file's line.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::Format;

/// Key path -> 1-based line, for every key and sequence item in the file.
#[derive(Debug, Default)]
pub struct Locator {
    lines: HashMap<String, usize>,
    /// Key paths written under another name in the file (a SeaTunnel `.conf` file's keys).
    names: HashMap<String, String>,
}

impl Locator {
    pub fn new(text: &str, format: Format) -> Self {
        let mut lines = HashMap::new();
        match format {
            Format::Yaml => yaml(text, &mut lines),
            Format::Toml => toml(text, &mut lines),
        }
        Locator {
            lines,
            names: HashMap::new(),
        }
    }

    /// A locator for a file whose keys were mapped onto the model: key path -> line, and key
    /// path -> the key as the file writes it.
    pub fn from_parts(lines: HashMap<String, usize>, names: HashMap<String, String>) -> Self {
        Locator { lines, names }
    }

    /// `path` as the file writes it: the nearest enclosing renamed key, with the rest appended.
    pub fn name(&self, path: &str) -> String {
        let mut p = path;
        loop {
            if let Some(n) = self.names.get(p) {
                return format!("{n}{}", &path[p.len()..]);
            }
            match p.rfind(['.', '[']) {
                Some(cut) => p = &p[..cut],
                None => return path.to_string(),
            }
        }
    }

    /// The line of `path`, or of its nearest enclosing key that is in the file (a missing key is
    /// reported where it should have been written).
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

struct YamlWalk<'a> {
    stack: Vec<Frame>,
    lines: &'a mut HashMap<String, usize>,
}

impl YamlWalk<'_> {
    /// The path of the value that starts now, at `line`, advancing the enclosing container.
    fn value_path(&mut self, line: usize) -> Option<String> {
        match self.stack.last_mut()? {
            Frame::Map { key, .. } => key.take(),
            Frame::Seq { path, index } => {
                let p = format!("{path}[{index}]");
                *index += 1;
                self.lines.entry(p.clone()).or_insert(line);
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for YamlWalk<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Map {
                    path,
                    key: key @ None,
                }) = self.stack.last_mut()
                {
                    let p = join(path, &text);
                    self.lines.entry(p.clone()).or_insert(line);
                    *key = Some(p);
                } else {
                    self.value_path(line);
                }
            }
            Event::MappingStart(..) => {
                let path = self.value_path(line).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(line).unwrap_or_default();
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::Alias(_) => {
                self.value_path(line);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

fn yaml(text: &str, lines: &mut HashMap<String, usize>) {
    let mut walk = YamlWalk {
        stack: Vec::new(),
        lines,
    };
    // A file that does not parse has already been reported with its own location.
    let _ = Parser::new_from_str(text).load(&mut walk, false);
}

fn toml(text: &str, lines: &mut HashMap<String, usize>) {
    use toml::de::{DeTable, DeValue};
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    fn walk(
        v: &DeValue<'_>,
        path: &str,
        lines: &mut HashMap<String, usize>,
        line_of: &dyn Fn(usize) -> usize,
    ) {
        match v {
            DeValue::Table(t) => {
                for (k, val) in t.iter() {
                    let p = join(path, k.get_ref());
                    lines.entry(p.clone()).or_insert(line_of(k.span().start));
                    walk(val.get_ref(), &p, lines, line_of);
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    lines.entry(p.clone()).or_insert(line_of(item.span().start));
                    walk(item.get_ref(), &p, lines, line_of);
                }
            }
            _ => {}
        }
    }
    if let Ok(doc) = DeTable::parse(text) {
        let root = DeValue::Table(doc.into_inner());
        walk(&root, "", lines, &line_of);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_lines() {
        let text = "name: x\nsource:\n  plugin: mysql\n  options:\n    url: a\ntransforms:\n  - name: t1\n  - name: t2\n    config: {a: 1}\n";
        let l = Locator::new(text, Format::Yaml);
        assert_eq!(l.line("name"), Some(1));
        assert_eq!(l.line("source.options.url"), Some(5));
        assert_eq!(l.line("source.options.user"), Some(4));
        assert_eq!(l.line("transforms[1].name"), Some(8));
        assert_eq!(l.line("transforms[1].config.a"), Some(9));
        assert_eq!(l.line("nothing"), None);
    }

    #[test]
    fn toml_lines() {
        let text = "name = \"x\"\n\n[source]\nplugin = \"mysql\"\n\n[source.options]\nurl = \"a\"\n\n[[transforms]]\nname = \"t1\"\n";
        let l = Locator::new(text, Format::Toml);
        assert_eq!(l.line("name"), Some(1));
        assert_eq!(l.line("source.plugin"), Some(4));
        assert_eq!(l.line("source.options.url"), Some(7));
        assert_eq!(l.line("transforms[0].name"), Some(10));
    }
}
