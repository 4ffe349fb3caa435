//! `cargo xtask structure [--check]`: the shape of the code, read with a Rust parser (syn), not by
//! counting braces: files per folder, import cycles between modules, and the longest functions.
//!
//! A cycle is looked for at two levels in each crate: between its top-level modules (a folder
//! counts as one), and between the files of one folder (its `mod.rs` left out: a folder's face
//! re-exports its children, and `super::Name` that only reaches a re-export is followed to the
//! child that defines it). With `--check` it fails on any cycle or any function over
//! [`MAX_FN_LINES`] lines, which is how CI keeps the house in order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use syn::visit::Visit;

/// From a function's `fn` to its closing brace.
pub const MAX_FN_LINES: usize = 100;

/// How many of the longest functions every report lists, over the limit or not.
const LONGEST_SHOWN: usize = 8;

/// The trees whose source is held to the rules.
const TREES: &[&str] = &["host", "plugins"];

pub fn run(args: &[String]) -> Result<()> {
    let check = args.iter().any(|a| a == "--check");
    // Another checkout (`structure /tmp/old`) gives the figures of an earlier commit to compare.
    let root = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or_else(xtask::root, PathBuf::from);
    let mut crates = Vec::new();
    for tree in TREES {
        find_crates(&root.join(tree), &mut crates)?;
    }
    crates.sort();
    let mut longest = Vec::new();
    let mut cycles = Vec::new();
    let mut folders = Vec::new();
    for dir in &crates {
        let krate = Crate::read(dir)?;
        let name = dir.strip_prefix(&root).unwrap_or(dir).display().to_string();
        for (folder, n) in krate.files_per_folder() {
            folders.push((format!("{name}/src/{folder}"), n));
        }
        for f in &krate.functions {
            longest.push((f.lines, format!("{name}/src/{}::{}", f.file, f.name)));
        }
        for cycle in krate.cycles() {
            cycles.push(format!("{name}: {}", cycle.join(" <-> ")));
        }
    }
    let width = folders.iter().map(|(f, _)| f.len()).max().unwrap_or(0);
    println!("files per folder:");
    for (folder, n) in &folders {
        println!("  {folder:<width$} {n:>3}");
    }
    longest.sort_by(|a, b| b.cmp(a));
    let long: Vec<_> = longest
        .iter()
        .take_while(|(lines, _)| *lines > MAX_FN_LINES)
        .collect();
    println!("\nimport cycles: {}", cycles.len());
    for c in &cycles {
        println!("  {c}");
    }
    println!("\nfunctions over {MAX_FN_LINES} lines: {}", long.len());
    for (lines, name) in &long {
        println!("  {lines:>4}  {name}");
    }
    println!("\nthe longest functions:");
    for (lines, name) in longest.iter().take(LONGEST_SHOWN) {
        println!("  {lines:>4}  {name}");
    }
    if check && (!cycles.is_empty() || !long.is_empty()) {
        bail!(
            "{} import cycles and {} functions over {MAX_FN_LINES} lines (see above)",
            cycles.len(),
            long.len()
        );
    }
    Ok(())
}

/// Every crate (a folder with Cargo.toml and src/) under `dir`, not descending into build output.
fn find_crates(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if dir.join("Cargo.toml").is_file() && dir.join("src").is_dir() {
        out.push(dir.to_path_buf());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() && !matches!(name, "target" | "node_modules" | "src" | "templates") {
            find_crates(&path, out)?;
        }
    }
    Ok(())
}

struct Function {
    file: String,
    name: String,
    lines: usize,
}

/// One source file as a module: its path in the crate (`pipeline::writer`), what it names with
/// `crate::`/`super::`/`self::` paths, and what it re-exports.
struct Module {
    path: Vec<String>,
    file: String,
    uses: BTreeSet<Vec<String>>,
    reexports: BTreeMap<String, Vec<String>>,
}

struct Crate {
    modules: Vec<Module>,
    functions: Vec<Function>,
}

impl Crate {
    fn read(dir: &Path) -> Result<Self> {
        let src = dir.join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files)?;
        files.sort();
        let mut krate = Crate {
            modules: Vec::new(),
            functions: Vec::new(),
        };
        for file in files {
            let rel = file.strip_prefix(&src).unwrap_or(&file);
            let text = std::fs::read_to_string(&file)?;
            let ast =
                syn::parse_file(&text).with_context(|| format!("parsing {}", file.display()))?;
            let path = module_path(rel);
            let mut reader = Reader {
                module: path.clone(),
                functions: Vec::new(),
                uses: BTreeSet::new(),
                reexports: BTreeMap::new(),
            };
            reader.visit_file(&ast);
            let rel = rel.display().to_string();
            krate
                .functions
                .extend(reader.functions.into_iter().map(|(name, lines)| Function {
                    file: rel.clone(),
                    name,
                    lines,
                }));
            krate.modules.push(Module {
                path,
                file: rel,
                uses: reader.uses,
                reexports: reader.reexports,
            });
        }
        Ok(krate)
    }

    fn files_per_folder(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for m in &self.modules {
            let folder = Path::new(&m.file)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let folder = if folder.is_empty() {
                ".".into()
            } else {
                folder + "/"
            };
            *out.entry(folder).or_insert(0) += 1;
        }
        out
    }

    /// A path named in some file, resolved to the file module that defines it: the longest
    /// module prefix, then through one re-export of that module if the next name is one.
    fn resolve(&self, path: &[String]) -> Option<&Module> {
        let module = |p: &[String]| self.modules.iter().find(|m| m.path == p);
        let mut n = path.len();
        while n > 0 && module(&path[..n]).is_none() {
            n -= 1;
        }
        let found = module(&path[..n])?;
        if let Some(target) = path.get(n).and_then(|name| found.reexports.get(name)) {
            let mut t = target.clone();
            while !t.is_empty() {
                if let Some(m) = module(&t) {
                    if m.path.len() > found.path.len() {
                        return Some(m);
                    }
                    break;
                }
                t.pop();
            }
        }
        Some(found)
    }

    /// Cycles between top-level modules, then between the files of each folder.
    fn cycles(&self) -> Vec<Vec<String>> {
        let mut groups: BTreeMap<Vec<String>, ()> = BTreeMap::new();
        for m in &self.modules {
            for depth in 0..m.path.len() {
                groups.insert(m.path[..depth].to_vec(), ());
            }
        }
        let mut out = Vec::new();
        for parent in groups.keys() {
            // The units of this level: each direct child of `parent`, with everything below it.
            let unit = |p: &[String]| -> Option<String> {
                (p.len() > parent.len() && p.starts_with(parent)).then(|| p[parent.len()].clone())
            };
            let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for m in &self.modules {
                let Some(from) = unit(&m.path) else { continue };
                for used in &m.uses {
                    let Some(target) = self.resolve(used) else {
                        continue;
                    };
                    if let Some(to) = unit(&target.path) {
                        if to != from {
                            edges.entry(from.clone()).or_default().insert(to);
                        }
                    }
                }
            }
            for scc in strongly_connected(&edges) {
                let prefix = if parent.is_empty() {
                    String::new()
                } else {
                    parent.join("::") + "::"
                };
                out.push(scc.into_iter().map(|u| format!("{prefix}{u}")).collect());
            }
        }
        out
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `lib.rs` -> [], `a.rs` and `a/mod.rs` -> [a], `a/b.rs` -> [a, b]; `bin/x.rs` and `main.rs`
/// are roots of their own, but are named so they stay apart from the library's modules.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.last().map(String::as_str) {
        Some("mod") => {
            parts.pop();
        }
        Some("lib") if parts.len() == 1 => parts.clear(),
        _ => {}
    }
    parts
}

struct Reader {
    module: Vec<String>,
    functions: Vec<(String, usize)>,
    uses: BTreeSet<Vec<String>>,
    reexports: BTreeMap<String, Vec<String>>,
}

impl Reader {
    fn function(&mut self, name: &syn::Ident, sig: &syn::Signature, block: &syn::Block) {
        let start = sig.fn_token.span.start().line;
        let end = block.brace_token.span.close().end().line;
        self.functions
            .push((name.to_string(), end.saturating_sub(start) + 1));
    }

    /// `crate::a::b` -> [a, b]; `super::x` and `self::x` made absolute; anything else (std,
    /// other crates, local names) is not a module of this crate.
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let (first, rest) = segments.split_first()?;
        match first.as_str() {
            "crate" => Some(rest.to_vec()),
            "self" => Some([self.module.as_slice(), rest].concat()),
            "super" => {
                let mut base = self.module.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                Some([base.as_slice(), rest].concat())
            }
            _ => None,
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree, public: bool) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree, public);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.used(prefix, &n.ident, &n.ident, public),
            syn::UseTree::Rename(r) => self.used(prefix, &r.ident, &r.rename, public),
            syn::UseTree::Glob(_) => {
                if let Some(abs) = self.absolute(prefix) {
                    self.uses.insert(abs);
                }
            }
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t, public);
                }
            }
        }
    }

    fn used(&mut self, prefix: &[String], ident: &syn::Ident, name: &syn::Ident, public: bool) {
        let mut full = prefix.to_vec();
        if ident != "self" {
            full.push(ident.to_string());
        }
        // `pub use child::Name` in a folder's face: a path relative to this module.
        let abs = self
            .absolute(&full)
            .or_else(|| (public && !full.is_empty()).then(|| [self.module.clone(), full].concat()));
        if let Some(abs) = abs {
            if public {
                self.reexports.insert(name.to_string(), abs.clone());
            }
            self.uses.insert(abs);
        }
    }
}

impl<'ast> Visit<'ast> for Reader {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.function(&f.sig.ident, &f.sig, &f.block);
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.function(&f.sig.ident, &f.sig, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.function(&f.sig.ident, &f.sig, block);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let public = !matches!(u.vis, syn::Visibility::Inherited);
        let mut prefix = Vec::new();
        if u.leading_colon.is_none() {
            self.use_tree(&mut prefix, &u.tree, public);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(abs) = self.absolute(&segments) {
            self.uses.insert(abs);
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // An inline module (`mod tests { .. }`) is part of its file: its `super::` is the file.
        if let Some((_, items)) = &m.content {
            self.module.push(m.ident.to_string());
            for item in items {
                self.visit_item(item);
            }
            self.module.pop();
        }
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // A macro's body is tokens, not syntax (`info!(flow = %f.name, ..)` is no expression):
        // the paths in it are found as `crate :: a :: b` runs of tokens.
        self.visit_path(&m.path);
        self.tokens(m.tokens.clone());
    }
}

impl Reader {
    fn tokens(&mut self, tokens: proc_macro2::TokenStream) {
        let mut path: Vec<String> = Vec::new();
        let mut colons = 0;
        for tt in tokens {
            match tt {
                proc_macro2::TokenTree::Ident(i) if path.is_empty() || colons == 2 => {
                    let word = i.to_string();
                    if path.is_empty() && !matches!(word.as_str(), "crate" | "super" | "self") {
                        continue;
                    }
                    path.push(word);
                    colons = 0;
                }
                proc_macro2::TokenTree::Punct(p) if p.as_char() == ':' && !path.is_empty() => {
                    colons += 1;
                }
                other => {
                    self.flush(&mut path);
                    colons = 0;
                    if let proc_macro2::TokenTree::Group(g) = other {
                        self.tokens(g.stream());
                    }
                }
            }
        }
        self.flush(&mut path);
    }

    fn flush(&mut self, path: &mut Vec<String>) {
        if path.len() > 1 {
            if let Some(abs) = self.absolute(path) {
                self.uses.insert(abs);
            }
        }
        path.clear();
    }
}

/// Tarjan's algorithm; only components of more than one unit are cycles.
fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(next) = s.edges.get(v) {
            for w in next {
                if !s.index.contains_key(w.as_str()) {
                    visit(s, w);
                    let lw = s.low[w.as_str()];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if s.on_stack.contains(w.as_str()) {
                    let iw = s.index[w.as_str()];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(pairs: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
        let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            e.entry(a.to_string()).or_default().insert(b.to_string());
        }
        e
    }

    #[test]
    fn a_cycle_through_three_modules_is_one_component() {
        let found = strongly_connected(&edges(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]));
        assert_eq!(found, vec![vec!["a", "b", "c"]]);
        assert!(strongly_connected(&edges(&[("a", "b"), ("b", "c")])).is_empty());
    }

    #[test]
    fn module_paths_follow_the_files() {
        let p = |s: &str| module_path(Path::new(s));
        assert_eq!(p("lib.rs"), Vec::<String>::new());
        assert_eq!(p("pipeline/mod.rs"), vec!["pipeline"]);
        assert_eq!(p("pipeline/writer.rs"), vec!["pipeline", "writer"]);
    }

    #[test]
    fn a_function_is_counted_from_fn_to_its_closing_brace() {
        let text = "/// doc\n#[inline]\nfn f() {\n    let x = 1;\n\n    g(x);\n}\n";
        let mut r = Reader {
            module: vec![],
            functions: vec![],
            uses: BTreeSet::new(),
            reexports: BTreeMap::new(),
        };
        r.visit_file(&syn::parse_file(text).unwrap());
        assert_eq!(r.functions, vec![("f".to_string(), 5)]);
    }

    #[test]
    fn super_paths_are_followed_through_a_folders_reexports() {
        let read = |module: &[&str], text: &str| {
            let mut r = Reader {
                module: module.iter().map(|s| s.to_string()).collect(),
                functions: vec![],
                uses: BTreeSet::new(),
                reexports: BTreeMap::new(),
            };
            r.visit_file(&syn::parse_file(text).unwrap());
            Module {
                path: r.module,
                file: String::new(),
                uses: r.uses,
                reexports: r.reexports,
            }
        };
        let krate = Crate {
            modules: vec![
                read(&["p"], "mod a; mod b; pub use a::A;"),
                read(&["p", "a"], "use super::b::B; pub struct A;"),
                read(&["p", "b"], "use super::A; pub struct B;"),
            ],
            functions: vec![],
        };
        assert_eq!(krate.cycles(), vec![vec!["p::a", "p::b"]]);
    }
}
