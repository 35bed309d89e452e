//! The shape of `src/`: no file imports one that imports it back, however
//! far round (`use crate::...`, `super::...`, and a `mod.rs` using its own
//! files), and no function runs past 80 lines. Test modules are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // The load generator is a binary of its own.
            if !path.ends_with("bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::server::conn` for `src/server/conn.rs`, `crate::server` for its
/// `mod.rs`, `crate` for `lib.rs` and `main.rs`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    std::iter::once("crate".to_owned())
        .chain(parts)
        .collect::<Vec<_>>()
        .join("::")
}

/// The code of a file without its test module and its comments.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths like `crate::a::b` or `super::x` named in `code`, as words.
fn paths<'a>(code: &'a str, root: &str) -> Vec<Vec<&'a str>> {
    let pattern = format!("{root}::");
    code.match_indices(&pattern)
        .map(|(at, _)| {
            let rest = &code[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            rest[..end].split("::").filter(|p| !p.is_empty()).collect()
        })
        .collect()
}

fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .map(|f| (module_of(src, f), f.clone()))
        .collect();
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        let code = code(file);
        let is_mod = file.ends_with("mod.rs") || file.ends_with("lib.rs");
        let parent = module
            .rsplit_once("::")
            .map_or("crate", |(p, _)| p)
            .to_owned();
        // Every path named, as the module words it starts with.
        let mut named: Vec<Vec<String>> = paths(&code, "crate")
            .into_iter()
            .map(|w| w.iter().map(|p| p.to_string()).collect())
            .collect();
        for words in paths(&code, "super") {
            let mut full: Vec<String> = parent.split("::").map(str::to_owned).collect();
            full.extend(words[1..].iter().map(|p| p.to_string()));
            // `super::Item` resolves to the parent itself, below.
            named.push(full);
        }
        if is_mod {
            for line in code.lines() {
                let line = line
                    .trim()
                    .trim_start_matches("pub ")
                    .trim_start_matches("pub(crate) ");
                if let Some(rest) = line.strip_prefix("use ") {
                    let first = rest.split("::").next().unwrap_or_default();
                    named.push(vec![module.clone(), first.to_owned()]);
                }
            }
        }
        let mut deps = BTreeSet::new();
        for words in named {
            let words: Vec<&str> = words.iter().flat_map(|w| w.split("::")).collect();
            if let Some(found) = (2..=words.len())
                .rev()
                .map(|n| words[..n].join("::"))
                .find(|c| modules.contains_key(c))
            {
                deps.insert(found);
            } else if words.len() == 1 && words[0] == "crate" {
                deps.insert("crate".to_owned());
            }
        }
        deps.remove(module);
        edges.insert(module.clone(), deps);
    }
    edges
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = imports(&src);
    assert!(edges.len() > 20, "read {} modules", edges.len());
    // Depth-first: a module reached again on the path it started is a cycle.
    fn walk(
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        cycles: &mut Vec<String>,
    ) {
        let Some(last) = path.last().cloned() else {
            return;
        };
        for next in edges.get(&last).into_iter().flatten() {
            if next == &path[0] {
                cycles.push(format!("{} -> {next}", path.join(" -> ")));
            } else if !path.contains(next) && path.len() < 6 {
                path.push(next.clone());
                walk(edges, path, cycles);
                path.pop();
            }
        }
    }
    let mut cycles = Vec::new();
    for module in edges.keys() {
        walk(&edges, &mut vec![module.clone()], &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn no_function_is_over_80_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    rust_files(&src.join("bin"), &mut files);
    let mut long = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let is_fn = ["fn ", "pub fn ", "pub(crate) fn ", "pub(super) fn "]
                .iter()
                .any(|p| trimmed.starts_with(p));
            if !is_fn || trimmed.ends_with(';') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            let close = format!("{}}}", " ".repeat(indent));
            let end = lines[i..]
                .iter()
                .position(|l| l.starts_with(&close) && l.trim() == "}")
                .map_or(0, |n| n + 1);
            if end > 80 {
                long.push(format!("{}:{} ({end} lines)", file.display(), i + 1));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over 80 lines:\n{}",
        long.join("\n")
    );
}
