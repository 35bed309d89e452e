//! The shape of `src/`: no module names one that names it back, however far
//! round (through `use` trees and through paths written in code:
//! `crate::a::b`, `super::x`, `self::x`, a `mod.rs` naming its own files,
//! and names brought in by a `use`), no function of any kind (`const`,
//! `async`, `unsafe`, `extern "C"`, any visibility) runs past 80 lines,
//! and no type of the crate has its `impl` blocks (inherent, or a trait's
//! `for` it) spread over more than two files.
//! Test code (`#[cfg(test)]` items, the test module above all) is left out,
//! item by item, so production code after a test-only item is still read.
//!
//! The checks are functions over a source tree, so each is also run over
//! planted trees below and seen to catch what it is for.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The longest a function may be, counted from its `fn` line to its
/// closing brace.
const MAX_FN_LINES: usize = 80;

// ---------------------------------------------------------------------
// Reading a file: comments and literals out, test items out, lines kept.
// ---------------------------------------------------------------------

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The code of `text` with comments and the insides of string and char
/// literals blanked to spaces, newlines kept, so every offset keeps its
/// line and a `"}"` or `// crate::x` cannot be mistaken for code.
fn strip_comments_and_literals(text: &str) -> Vec<char> {
    let src: Vec<char> = text.chars().collect();
    let mut out = src.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in out.iter_mut().take(to).skip(from) {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let at = |i: usize| src.get(i).copied().unwrap_or('\0');
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        let after_ident = i > 0 && is_ident(src[i - 1]);
        if c == '/' && at(i + 1) == '/' {
            let end = (i..src.len())
                .find(|&j| src[j] == '\n')
                .unwrap_or(src.len());
            blank(&mut out, i, end);
            i = end;
        } else if c == '/' && at(i + 1) == '*' {
            let (mut depth, mut j) = (0usize, i);
            while j < src.len() {
                if src[j] == '/' && at(j + 1) == '*' {
                    depth += 1;
                    j += 2;
                } else if src[j] == '*' && at(j + 1) == '/' {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if !after_ident
            && (c == 'r' || (c == 'b' && at(i + 1) == 'r'))
            && matches!(at(i + 1 + usize::from(c == 'b')), '"' | '#')
        {
            // A raw string: r"..", r#".."#, br#".."#.
            let mut j = i + 1 + usize::from(c == 'b');
            let hashes = (j..src.len()).take_while(|&k| src[k] == '#').count();
            j += hashes;
            if at(j) != '"' {
                i += 1;
                continue;
            }
            let body = j + 1;
            let mut k = body;
            while k < src.len() {
                if src[k] == '"' && (1..=hashes).all(|h| at(k + h) == '#') {
                    break;
                }
                k += 1;
            }
            blank(&mut out, body, k);
            i = k + 1 + hashes;
        } else if c == '"' {
            let mut k = i + 1;
            while k < src.len() && src[k] != '"' {
                k += if src[k] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, k.min(src.len()));
            i = k + 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}'), or else a lifetime.
            let end = if at(i + 1) == '\\' {
                (i + 2..src.len()).find(|&k| src[k] == '\'')
            } else if at(i + 2) == '\'' {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    blank(&mut out, i + 1, end);
                    i = end + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out
}

fn skip_space(code: &[char], mut i: usize) -> usize {
    while i < code.len() && code[i].is_whitespace() {
        i += 1;
    }
    i
}

/// The word starting at `i`, if an identifier starts there.
fn word_at(code: &[char], i: usize) -> Option<String> {
    if i > 0 && is_ident(code[i - 1]) {
        return None;
    }
    let end = (i..code.len())
        .find(|&k| !is_ident(code[k]))
        .unwrap_or(code.len());
    (end > i).then(|| code[i..end].iter().collect())
}

/// The end (exclusive) of the item or statement starting at `i`: a `;` or
/// `,` at its own depth, a brace block at its own depth (with its `else`s),
/// or the brace that closes what encloses it.
fn item_end(code: &[char], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < code.len() {
        match code[i] {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => return i,
            ')' | ']' => depth -= 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    let next = skip_space(code, i + 1);
                    if word_at(code, next).as_deref() != Some("else") {
                        return i + 1;
                    }
                }
            }
            ';' | ',' if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    code.len()
}

/// Blanks every `#[cfg(test)]` item (the attribute, any attributes after
/// it, and the item), so the test module and test-only items anywhere in
/// the file are left out and the code after them is still read.
fn strip_test_items(code: &mut [char]) {
    const ATTR: &str = "#[cfg(test)]";
    let attr: Vec<char> = ATTR.chars().collect();
    let mut i = 0;
    while i + attr.len() <= code.len() {
        if code[i..i + attr.len()] != attr[..] {
            i += 1;
            continue;
        }
        let mut j = skip_space(code, i + attr.len());
        // Further attributes on the same item.
        while code.get(j) == Some(&'#') {
            let close = item_end(code, j + 1);
            j = skip_space(code, close.max(j + 1));
        }
        let end = item_end(code, j);
        for c in &mut code[i..end] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        i = end.max(i + 1);
    }
}

/// A file's production code: comments, literals and test items blanked,
/// every line where it was.
fn production_code(file: &Path) -> Vec<char> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut code = strip_comments_and_literals(&text);
    strip_test_items(&mut code);
    code
}

fn line_of(code: &[char], at: usize) -> usize {
    code[..at].iter().filter(|&&c| c == '\n').count() + 1
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

// ---------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------

/// Every function body in `root` (all its files, the binaries' too) over
/// `MAX_FN_LINES`, as `file:line: fn name is N lines`.
fn long_functions(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut long = Vec::new();
    for file in files {
        let code = production_code(&file);
        for start in 0..code.len() {
            if word_at(&code, start).as_deref() != Some("fn") {
                continue;
            }
            // `fn NAME`: any qualifiers before it are the same fn; `fn(`
            // is a pointer type.
            let at = skip_space(&code, start + 2);
            let name = if code[at..].starts_with(&['r', '#']) {
                word_at(&code, at + 2)
            } else {
                word_at(&code, at)
            };
            let Some(name) = name else { continue };
            let Some(close) = body_end(&code, at + name.len()) else {
                continue;
            };
            let first = line_of(&code, start);
            let lines = line_of(&code, close) - first + 1;
            if lines > MAX_FN_LINES {
                long.push(format!(
                    "{}:{first}: fn {name} is {lines} lines",
                    file.display()
                ));
            }
        }
    }
    long
}

/// Where the body of a function whose signature goes on from `i` closes;
/// `None` for a declaration without one (`;`).
fn body_end(code: &[char], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i < code.len() {
        match code[i] {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            ';' if depth == 0 => return None,
            '{' if depth == 0 => break,
            _ => {}
        }
        i += 1;
    }
    let open = i;
    let mut depth = 0usize;
    for (k, c) in code.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(k);
                }
            }
            _ => {}
        }
    }
    None
}

// ---------------------------------------------------------------------
// The module graph
// ---------------------------------------------------------------------

/// A path, as its words, and the line that names it.
type Named = (Vec<String>, usize);

/// Name in scope -> the path it stands for, and the line of its `use`.
type Uses = BTreeMap<String, Named>;

/// One module of a crate: its file, its code, and what its `use`s bring in.
struct Module {
    file: PathBuf,
    code: Vec<char>,
    /// What each name its `use`s bring in stands for (made absolute when
    /// spelled with `crate`, `super` or `self`).
    uses: Uses,
    /// Every path a `use` names (globs included).
    used_paths: Vec<Named>,
}

/// The modules of the crate whose root (`lib.rs`, or else `main.rs`) is
/// in `dir`, by path: `crate`, `crate::server`, `crate::server::conn`.
/// Binaries under `bin/` and a `main.rs` beside a `lib.rs` are crates of
/// their own.
fn modules(dir: &Path) -> BTreeMap<String, Module> {
    let root = if dir.join("lib.rs").exists() {
        "lib"
    } else {
        "main"
    };
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let mut modules = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(dir).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts.first().is_some_and(|p| p == "bin") {
            continue;
        }
        if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") && parts[0] != root {
            continue;
        }
        if parts.last().is_some_and(|p| p == "mod") || parts == [root] {
            parts.pop();
        }
        let name = std::iter::once("crate".to_owned())
            .chain(parts)
            .collect::<Vec<_>>()
            .join("::");
        let code = production_code(&file);
        modules.insert(
            name,
            Module {
                file,
                code,
                uses: BTreeMap::new(),
                used_paths: Vec::new(),
            },
        );
    }
    let names: Vec<String> = modules.keys().cloned().collect();
    for name in names {
        let module = modules.get_mut(&name).unwrap();
        let (uses, used_paths) = read_uses(&mut module.code, &name);
        module.uses = uses;
        module.used_paths = used_paths;
    }
    modules
}

/// `path` made absolute from inside `module`: `crate`, `super` and `self`
/// worked out; a first word that is neither is kept relative (a child
/// module, a name a `use` brought in, or another crate).
fn absolute(module: &str, path: &[String]) -> Vec<String> {
    let mut base: Vec<String> = module.split("::").map(str::to_owned).collect();
    let mut words = path.iter().peekable();
    match words.peek().map(|w| w.as_str()) {
        Some("crate" | "$crate") => {
            words.next();
            base = vec!["crate".to_owned()];
        }
        Some("self") => {
            words.next();
        }
        Some("super") => {
            while words.peek().is_some_and(|w| *w == "super") {
                words.next();
                base.pop();
            }
        }
        _ => return path.to_vec(),
    }
    base.extend(words.cloned());
    base
}

/// Reads the `use` declarations out of `code` (and blanks them, so their
/// braces are not read again as paths): the names they bring in and every
/// path they name.
fn read_uses(code: &mut [char], module: &str) -> (Uses, Vec<Named>) {
    let mut uses = BTreeMap::new();
    let mut paths = Vec::new();
    let mut i = 0;
    while i < code.len() {
        if word_at(code, i).as_deref() != Some("use") {
            i += 1;
            continue;
        }
        let line = line_of(code, i);
        let end = (i..code.len())
            .find(|&k| code[k] == ';')
            .unwrap_or(code.len());
        let tree: String = code[i + 3..end].iter().collect();
        let tree = tree.split_whitespace().collect::<Vec<_>>().join(" ");
        for (path, alias) in expand_use(&tree) {
            let path = absolute(module, &path);
            if let Some(alias) = alias {
                uses.insert(alias, (path.clone(), line));
            }
            paths.push((path, line));
        }
        for c in &mut code[i..end] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        i = end;
    }
    (uses, paths)
}

/// A `use` tree as paths and the name each brings in: `a::{self, b::C as
/// D, e::*}` is `a` as `a`, `a::b::C` as `D`, and `a::e` (a glob: no name).
fn expand_use(tree: &str) -> Vec<(Vec<String>, Option<String>)> {
    fn split_top(s: &str) -> Vec<&str> {
        let (mut depth, mut from, mut out) = (0, 0, Vec::new());
        for (k, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(s[from..k].trim());
                    from = k + 1;
                }
                _ => {}
            }
        }
        out.push(s[from..].trim());
        out.into_iter().filter(|p| !p.is_empty()).collect()
    }
    fn words(s: &str) -> impl Iterator<Item = String> + '_ {
        s.split("::")
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
    }
    fn walk(prefix: &[String], tree: &str, out: &mut Vec<(Vec<String>, Option<String>)>) {
        let mut path = prefix.to_vec();
        if let Some(open) = tree.find('{') {
            path.extend(words(&tree[..open]));
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            for part in split_top(inner) {
                walk(&path, part, out);
            }
            return;
        }
        let (tree, alias) = match tree.split_once(" as ") {
            Some((tree, alias)) => (tree, Some(alias.trim().to_owned())),
            None => (tree, None),
        };
        path.extend(words(tree));
        if path.last().is_some_and(|w| w == "*") {
            path.pop();
            out.push((path, None));
            return;
        }
        if path.last().is_some_and(|w| w == "self") {
            path.pop();
        }
        let name = alias.or_else(|| path.last().cloned());
        out.push((path, name.filter(|n| n != "_")));
    }
    let mut out = Vec::new();
    for part in split_top(tree) {
        walk(&[], part, &mut out);
    }
    out
}

/// Every path written in `code` (`use`s already blanked) with its line:
/// a run of words joined by `::` that does not itself follow a `::`.
fn code_paths(code: &[char]) -> Vec<Named> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let starts = (code[i] == '$' && code.get(i + 1).is_some_and(|&c| is_ident(c)))
            || (is_ident(code[i]) && (i == 0 || !(is_ident(code[i - 1]) || code[i - 1] == '$')));
        let follows_path = {
            let mut k = i;
            while k > 0 && code[k - 1].is_whitespace() {
                k -= 1;
            }
            k >= 2 && code[k - 1] == ':' && code[k - 2] == ':'
        };
        if !starts || follows_path {
            i += 1;
            continue;
        }
        let from = i;
        let mut words = Vec::new();
        loop {
            let begin = if code[i] == '$' { i + 1 } else { i };
            let end = (begin..code.len())
                .find(|&k| !is_ident(code[k]))
                .unwrap_or(code.len());
            words.push(code[i..end].iter().collect::<String>());
            let next = skip_space(code, end);
            let more = code.get(next) == Some(&':') && code.get(next + 1) == Some(&':');
            let after = skip_space(code, next + 2);
            i = end;
            if !(more && code.get(after).is_some_and(|&c| is_ident(c) || c == '$')) {
                break;
            }
            i = after;
        }
        if words.len() > 1 {
            out.push((words, line_of(code, from)));
        }
    }
    out
}

/// The module a path (absolute from `module`, or relative) lands in,
/// following `use`s and re-exports, so `crate::Config` lands where
/// `Config` is defined and not on the root that re-exports it. `None` for
/// another crate's path or a name that is not a module's.
fn resolve(
    modules: &BTreeMap<String, Module>,
    module: &str,
    path: &[String],
    hops: usize,
) -> Option<String> {
    let hops = hops.checked_sub(1)?;
    let mut path = absolute(module, path);
    if path.first()? != "crate" {
        // Relative: a child of this module, or a name a `use` brought in.
        if modules.contains_key(&format!("{module}::{}", path[0])) {
            path = module.split("::").map(str::to_owned).chain(path).collect();
        } else {
            let (target, _) = modules.get(module)?.uses.get(&path[0])?;
            let full: Vec<String> = target.iter().chain(&path[1..]).cloned().collect();
            return resolve(modules, module, &full, hops);
        }
    }
    // The longest prefix that is a module, then on through its `use`s.
    let (n, found) = (1..=path.len()).rev().find_map(|n| {
        let name = path[..n].join("::");
        modules.contains_key(&name).then_some((n, name))
    })?;
    if let Some(next) = path.get(n)
        && let Some((target, _)) = modules[&found].uses.get(next)
    {
        let full: Vec<String> = target.iter().chain(&path[n + 1..]).cloned().collect();
        if let Some(through) = resolve(modules, &found, &full, hops) {
            return Some(through);
        }
    }
    Some(found)
}

/// Which module names which: `from -> to -> the first line of from that
/// names to`. Names a module gives itself are left out.
fn imports(
    dir: &Path,
) -> (
    BTreeMap<String, Module>,
    BTreeMap<String, BTreeMap<String, usize>>,
) {
    let modules = modules(dir);
    let mut edges = BTreeMap::new();
    for (name, module) in &modules {
        let mut deps: BTreeMap<String, usize> = BTreeMap::new();
        let named = module
            .used_paths
            .iter()
            .cloned()
            .chain(code_paths(&module.code));
        for (path, line) in named {
            if let Some(to) = resolve(&modules, name, &path, 8)
                && to != *name
            {
                let first = deps.entry(to).or_insert(line);
                *first = (*first).min(line);
            }
        }
        edges.insert(name.clone(), deps);
    }
    (modules, edges)
}

/// Every import cycle in the crate rooted in `dir`, one per strongly
/// connected set of modules (Tarjan), each written as its shortest cycle
/// with the file and line where each module names the next.
fn import_cycles(dir: &Path) -> Vec<String> {
    let (modules, edges) = imports(dir);
    let mut cycles = Vec::new();
    for set in strongly_connected(&edges) {
        if set.len() < 2 {
            continue;
        }
        let start = set.iter().next().unwrap().clone();
        let cycle = shortest_cycle(&edges, &set, &start);
        let mut text = format!(
            "{} modules name each other: {}\n",
            set.len(),
            set.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        for pair in cycle.windows(2) {
            let line = edges[&pair[0]][&pair[1]];
            let _ = writeln!(
                text,
                "    {}:{line}: {} names {}",
                modules[&pair[0]].file.display(),
                pair[0],
                pair[1]
            );
        }
        cycles.push(text);
    }
    cycles
}

/// Tarjan's strongly connected components.
fn strongly_connected(edges: &BTreeMap<String, BTreeMap<String, usize>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, usize>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        sets: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flat_map(|d| d.keys()) {
            if !s.edges.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let low = s.low[v].min(s.low[w.as_str()]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w.as_str()) {
                let low = s.low[v].min(s.index[w.as_str()]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut set = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                set.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            s.sets.push(set);
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        sets: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.sets
}

/// The shortest way from `start` back to itself inside `set` (breadth
/// first), as the modules on it, `start` at both ends.
fn shortest_cycle(
    edges: &BTreeMap<String, BTreeMap<String, usize>>,
    set: &BTreeSet<String>,
    start: &str,
) -> Vec<String> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in edges[v].keys().filter(|w| set.contains(*w)) {
            if w == start {
                let mut cycle = vec![start.to_owned(), v.to_owned()];
                let mut at = v;
                while let Some(prev) = came_from.get(at) {
                    cycle.push((*prev).to_owned());
                    at = prev;
                }
                if at != start {
                    cycle.push(start.to_owned());
                }
                cycle.reverse();
                return cycle;
            }
            if !came_from.contains_key(w.as_str()) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start.to_owned()]
}

// ---------------------------------------------------------------------
// Impl blocks
// ---------------------------------------------------------------------

/// The most files of `src/` one type's `impl` blocks may be spread over.
const MAX_IMPL_FILES: usize = 2;

/// The word before `i`, if an identifier ends right there.
fn word_before(code: &[char], i: usize) -> Option<String> {
    let start = (0..i)
        .rev()
        .find(|&k| !is_ident(code[k]))
        .map_or(0, |k| k + 1);
    (start < i).then(|| code[start..i].iter().collect())
}

/// The types `code` defines (`struct`, `enum`, `union`). A `type` alias
/// is left out: an associated type in an `impl` is not the crate's type.
fn defined_types(code: &[char]) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..code.len() {
        let Some(word) = word_at(code, i) else {
            continue;
        };
        if matches!(word.as_str(), "struct" | "enum" | "union")
            && let Some(name) = word_at(code, skip_space(code, i + word.len()))
        {
            out.push(name);
        }
    }
    out
}

/// The end (exclusive) of the generic parameters opening at `i` (a `<`),
/// `->` inside them not taken for a closing bracket.
fn generics_end(code: &[char], i: usize) -> usize {
    let mut depth = 0usize;
    for k in i..code.len() {
        match code[k] {
            '<' => depth += 1,
            '>' if k > 0 && code[k - 1] == '-' => {}
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// An `impl` block: the path of the type it is for, its line, and its
/// header as written (`impl Drop for EventLoop`).
type ImplBlock = (Vec<String>, usize, String);

/// Every `impl` block in `code`, the type it is for named by its path
/// (`impl Trait for Type` is for `Type`). An
/// `impl Trait` in a type (`-> impl Iterator`, `x: &mut impl Write`) is
/// not a block: a block's `impl` starts an item.
fn impl_blocks(code: &[char]) -> Vec<ImplBlock> {
    let mut out = Vec::new();
    for i in 0..code.len() {
        if word_at(code, i).as_deref() != Some("impl") {
            continue;
        }
        let before = (0..i).rev().find(|&k| !code[k].is_whitespace());
        let starts_item = match before {
            None => true,
            Some(k) if matches!(code[k], ';' | '{' | '}' | ']') => true,
            Some(k) => word_before(code, k + 1).is_some_and(|w| w == "unsafe" || w == "default"),
        };
        if !starts_item {
            continue;
        }
        let mut at = skip_space(code, i + 4);
        if code.get(at) == Some(&'<') {
            at = generics_end(code, at);
        }
        let end = (at..code.len())
            .find(|&k| code[k] == '{' || code[k] == ';')
            .unwrap_or(code.len());
        let header: String = code[at..end].iter().collect();
        let words: Vec<&str> = header
            .split_whitespace()
            .take_while(|w| *w != "where")
            .collect();
        // `impl Trait for Type` is for `Type`; a `for<'a>` bound has no space.
        let target = match words.iter().position(|w| *w == "for") {
            Some(p) => &words[p + 1..],
            None => &words[..],
        };
        // `&'a mut Type` is for `Type`.
        let target = target
            .iter()
            .map(|w| w.trim_start_matches('&'))
            .find(|w| !(w.is_empty() || w.starts_with('\'') || *w == "mut"))
            .unwrap_or_default();
        let path: Vec<String> = target
            .split(|c: char| !(is_ident(c) || c == ':'))
            .next()
            .unwrap_or_default()
            .split("::")
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect();
        if !path.is_empty() {
            out.push((path, line_of(code, i), format!("impl {}", words.join(" "))));
        }
    }
    out
}

/// A type, as its module and name -> each of its `impl` blocks, as its
/// file, line and header.
type ImplSites = BTreeMap<(String, String), Vec<(PathBuf, usize, String)>>;

/// Each type of the crate rooted in `dir` that has `impl` blocks, as its
/// module and name, with the file and line of each block. A type is found
/// where its name is defined: in the module of the `impl`, through its
/// `use` or its path, or, named bare and brought in by neither (a glob),
/// in the one module that defines that name. A foreign type (`impl
/// From<X> for String`) is left out.
fn impl_sites(dir: &Path) -> ImplSites {
    let modules = modules(dir);
    let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, module) in &modules {
        for ty in defined_types(&module.code) {
            owners.entry(ty).or_default().insert(name.clone());
        }
    }
    let mut sites = ImplSites::new();
    for (name, module) in &modules {
        for (path, line, header) in impl_blocks(&module.code) {
            // A bare name a `use` brought in is the path it stands for,
            // under the name it was defined with.
            let path = match module.uses.get(&path[0]) {
                Some((target, _)) if path.len() == 1 => target.clone(),
                _ => path,
            };
            let ty = path.last().unwrap().clone();
            let Some(defining) = owners.get(&ty) else {
                continue;
            };
            let owner = if path.len() > 1 {
                resolve(&modules, name, &path, 8).filter(|m| defining.contains(m))
            } else if defining.contains(name) {
                Some(name.clone())
            } else if defining.len() == 1 {
                defining.first().cloned()
            } else {
                None
            };
            if let Some(owner) = owner {
                sites
                    .entry((owner, ty))
                    .or_default()
                    .push((module.file.clone(), line, header));
            }
        }
    }
    sites
}

/// Every type of the crate rooted in `dir` whose `impl` blocks are spread
/// over more than `MAX_IMPL_FILES` files, naming each block's file and line.
fn spread_impls(dir: &Path) -> Vec<String> {
    let mut spread = Vec::new();
    for ((owner, ty), blocks) in impl_sites(dir) {
        let files: BTreeSet<&PathBuf> = blocks.iter().map(|(file, _, _)| file).collect();
        if files.len() <= MAX_IMPL_FILES {
            continue;
        }
        let mut text = format!("{ty} ({owner}) has impl blocks in {} files:\n", files.len());
        for (file, line, header) in &blocks {
            let _ = writeln!(text, "    {}:{line}: {header}", file.display());
        }
        spread.push(text);
    }
    spread
}

// ---------------------------------------------------------------------
// The checks over `src/`
// ---------------------------------------------------------------------

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The library, the server binary and the load generator have no import
/// cycle of any length.
#[test]
fn no_module_names_one_that_names_it_back() {
    let (modules, _) = imports(&src());
    assert!(modules.len() > 20, "read {} modules", modules.len());
    let mut cycles = import_cycles(&src());
    cycles.extend(import_cycles(&src().join("bin/statecast-load")));
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// No function in `src/` (binaries included) runs past 80 lines.
#[test]
fn no_function_is_over_80_lines() {
    let long = long_functions(&src());
    assert!(
        long.is_empty(),
        "functions over 80 lines:\n{}",
        long.join("\n")
    );
}

/// No type of the library or the load generator has `impl` blocks in
/// more than two files of `src/`.
#[test]
fn no_type_is_implemented_in_more_than_two_files() {
    let sites = impl_sites(&src());
    assert!(sites.len() > 40, "read the impls of {} types", sites.len());
    let mut spread = spread_impls(&src());
    spread.extend(spread_impls(&src().join("bin/statecast-load")));
    assert!(
        spread.is_empty(),
        "types implemented in more than {MAX_IMPL_FILES} files:\n{}",
        spread.join("\n")
    );
}

// ---------------------------------------------------------------------
// The checks seen to catch what they are for, on planted trees
// ---------------------------------------------------------------------

/// A scratch source tree, removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str, files: &[(&str, &str)]) -> Tree {
        let dir =
            std::env::temp_dir().join(format!("statecast-layout-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Tree(dir)
    }

    /// `file:line` as a finding names it.
    fn at(&self, file: &str, line: usize) -> String {
        format!("{}:{line}:", self.0.join(file).display())
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A function of `lines` lines from its `fn` line to its closing brace.
fn function(signature: &str, lines: usize) -> String {
    let mut text = format!("{signature} {{\n");
    for n in 0..lines - 2 {
        let _ = writeln!(text, "    let _x{n} = {n};");
    }
    text.push_str("}\n");
    text
}

/// Every kind of `fn` is measured: 81 lines is caught, naming its file and
/// line, and 80 (the most allowed) is not.
#[test]
fn every_kind_of_fn_is_measured() {
    let kinds = [
        "fn plain()",
        "pub fn public()",
        "pub(crate) fn in_crate()",
        "pub(super) fn in_super()",
        "pub(in crate::a) fn in_path()",
        "const fn constant()",
        "pub const fn public_constant()",
        "async fn later()",
        "pub(crate) async fn later_in_crate()",
        "unsafe fn raw()",
        "pub unsafe fn public_raw()",
        "const unsafe fn constant_raw()",
        "extern \"C\" fn c_abi()",
        "pub unsafe extern \"C\" fn public_c_abi()",
        "fn r#match()",
        "fn generic<T: Into<String>>(t: T) -> String where T: Clone",
    ];
    for kind in kinds {
        for (lines, caught) in [(81, true), (80, false)] {
            // Two lines of something else first, so the line is not 1.
            let text = format!("//! A module.\n\n{}", function(kind, lines));
            let tree = Tree::new("kinds", &[("lib.rs", "mod a;\n"), ("a.rs", &text)]);
            let long = long_functions(&tree.0);
            let expected = format!("{} fn ", tree.at("a.rs", 3));
            assert_eq!(
                long.iter()
                    .any(|l| l.starts_with(&expected) && l.ends_with(&format!("is {lines} lines"))),
                caught,
                "{kind} of {lines} lines: {long:?}"
            );
            assert_eq!(long.len(), usize::from(caught), "{kind}: {long:?}");
        }
    }
}

/// A function inside an `impl`, a trait's default method and a nested
/// function are measured too; a declaration without a body and a function
/// pointer type are not functions to measure.
#[test]
fn functions_in_impls_traits_and_bodies_are_measured() {
    let text = format!(
        "struct S;\nimpl S {{\n{}}}\ntrait T {{\n    fn declared(&self);\n{}}}\nfn outer() {{\n    let _p: fn(u8) -> u8 = |x| x;\n{}}}\n",
        function("    pub(crate) const fn method(&self)", 81),
        function("    fn provided(&self)", 81),
        function("    unsafe fn nested()", 81),
    );
    let tree = Tree::new("impls", &[("lib.rs", &text)]);
    let long = long_functions(&tree.0);
    let names: Vec<&str> = long.iter().map(|l| l.split(": ").nth(1).unwrap()).collect();
    assert_eq!(
        names,
        [
            "fn method is 81 lines",
            "fn provided is 81 lines",
            "fn outer is 84 lines",
            "fn nested is 81 lines"
        ],
        "{long:?}"
    );
    assert!(long[0].starts_with(&tree.at("lib.rs", 3)), "{long:?}");
}

/// Braces in strings, chars and comments do not end a function early, so
/// one that runs past 80 lines behind them is still caught.
#[test]
fn braces_in_literals_and_comments_do_not_end_a_function() {
    let mut body = String::from(
        "fn tricky() {\n    let _a = \"}\";\n    let _b = '}';\n    let _c = r#\"}\"#;\n    // }\n    /* } */\n",
    );
    body.push_str(&function("    fn inner()", 10));
    for n in 0..70 {
        let _ = writeln!(body, "    let _y{n} = {n};");
    }
    body.push_str("}\n");
    let tree = Tree::new("literals", &[("lib.rs", &body)]);
    let long = long_functions(&tree.0);
    assert_eq!(
        long,
        [format!("{} fn tricky is 87 lines", tree.at("lib.rs", 1))]
    );
}

/// Test code is left out item by item: a long function after a
/// `#[cfg(test)]` item (inside a function, or at the top) but before the
/// test module is caught; the test module's own long function, and a
/// test-only one, are not.
#[test]
fn code_after_a_test_only_item_is_still_measured() {
    let text = format!(
        "fn admit(x: u8) -> u8 {{\n    #[cfg(test)]\n    if x == 9 {{\n        panic!(\"{{\");\n    }}\n    x\n}}\n\n#[cfg(test)]\npub const PANIC: &str = \"/test/panic\";\n\n{}\n#[cfg(test)]\n{}\n#[cfg(test)]\n#[allow(clippy::panic)]\nmod tests {{\n{}}}\n",
        function("pub fn after_the_test_item()", 81),
        function("fn test_helper()", 90),
        function("    fn long_test()", 100),
    );
    let tree = Tree::new("cfg-test", &[("lib.rs", &text)]);
    let long = long_functions(&tree.0);
    assert_eq!(
        long,
        [format!(
            "{} fn after_the_test_item is 81 lines",
            tree.at("lib.rs", 12)
        )]
    );
}

/// Seven modules in a ring of `use crate::...` lines are a cycle, reported
/// with each file and the line that names the next; the same ring with one
/// link gone is not.
#[test]
fn a_cycle_of_seven_files_is_found() {
    let ring = |closed: bool| -> Vec<(String, String)> {
        let mut files = vec![(
            "lib.rs".to_owned(),
            (1..=7)
                .map(|n| format!("pub mod m{n};\n"))
                .collect::<String>(),
        )];
        for n in 1..=7 {
            let next = n % 7 + 1;
            let import = if n < 7 || closed {
                format!("use crate::m{next}::Item{next};\n")
            } else {
                String::new()
            };
            files.push((
                format!("m{n}.rs"),
                format!("//! Ring {n}.\n\n{import}pub struct Item{n};\n"),
            ));
        }
        files
    };
    let plant = |name: &str, closed: bool| {
        let files = ring(closed);
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        Tree::new(name, &files)
    };
    let tree = plant("ring", true);
    let cycles = import_cycles(&tree.0);
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    for n in 1..=7 {
        let next = n % 7 + 1;
        let line = format!(
            "{} crate::m{n} names crate::m{next}",
            tree.at(&format!("m{n}.rs"), 3)
        );
        assert!(
            cycles[0].contains(&line),
            "missing {line:?} in\n{}",
            cycles[0]
        );
    }
    let open = plant("chain", false);
    assert_eq!(import_cycles(&open.0), Vec::<String>::new());
}

/// A cycle made by paths written in code, not in `use` lines, is found
/// however each link is spelled: `crate::`, `super::`, `self::`, a
/// `mod.rs` naming its own file, a name a `use` brought in
/// (`use crate::config::{self}` then `config::options::find`), a
/// re-export, and a `$crate` path in a macro.
#[test]
fn cycles_through_paths_in_code_are_found() {
    let cases: [(&str, &[(&str, &str)]); 6] = [
        (
            "crate",
            &[
                ("lib.rs", "mod a;\nmod b;\n"),
                ("a.rs", "pub fn f() {\n    crate::b::g();\n}\n"),
                ("b.rs", "pub fn g() {\n    let _ = crate::a::f;\n}\n"),
            ],
        ),
        (
            "super-self",
            &[
                ("lib.rs", "mod m;\n"),
                (
                    "m/mod.rs",
                    "mod a;\nmod b;\npub fn f() {\n    self::a::f();\n}\n",
                ),
                ("m/a.rs", "pub fn f() {\n    super::b::g();\n}\n"),
                ("m/b.rs", "pub fn g() {\n    super::super::m::f();\n}\n"),
            ],
        ),
        (
            "own-file",
            &[
                ("lib.rs", "mod config;\n"),
                (
                    "config/mod.rs",
                    "mod options;\npub struct Config;\npub fn help() -> usize {\n    options::ALL\n}\n",
                ),
                (
                    "config/options.rs",
                    "use super::Config;\npub const ALL: usize = 1;\n",
                ),
            ],
        ),
        (
            "alias",
            &[
                ("lib.rs", "mod config;\n"),
                ("config/mod.rs", "pub mod file;\npub mod options;\n"),
                (
                    "config/file.rs",
                    "use crate::config::{self, file as _};\npub fn apply() {\n    config::options::find();\n}\npub fn render() {}\n",
                ),
                (
                    "config/options.rs",
                    "pub fn find() {}\npub fn help() {\n    super::file::render();\n}\n",
                ),
            ],
        ),
        (
            "re-export",
            &[
                ("lib.rs", "mod a;\nmod b;\npub use a::Item as Thing;\n"),
                (
                    "a.rs",
                    "pub struct Item;\npub fn f() {\n    crate::b::g();\n}\n",
                ),
                (
                    "b.rs",
                    "pub fn g() -> Option<crate::Thing> {\n    None\n}\n",
                ),
            ],
        ),
        (
            "macro",
            &[
                ("lib.rs", "mod a;\nmod b;\n"),
                (
                    "a.rs",
                    "pub fn f() {}\n#[macro_export]\nmacro_rules! m {\n    () => { $crate::b::g() };\n}\n",
                ),
                ("b.rs", "pub fn g() {\n    crate::a::f();\n}\n"),
            ],
        ),
    ];
    for (name, files) in cases {
        let tree = Tree::new(name, files);
        let cycles = import_cycles(&tree.0);
        assert_eq!(cycles.len(), 1, "{name}: {cycles:?}");
        assert!(
            cycles[0].contains(&tree.0.display().to_string()),
            "{name}: {cycles:?}"
        );
    }
}

/// What only looks like a link is not one: a path in a comment or a
/// string, a child naming its parent's items that its parent never
/// names back by code, another crate's path, and a `use` inside the test
/// module.
#[test]
fn look_alikes_are_not_links() {
    let tree = Tree::new(
        "look-alikes",
        &[
            ("lib.rs", "pub mod a;\npub mod b;\npub struct Root;\n"),
            (
                "a.rs",
                "// crate::b::g\npub fn f() -> &'static str {\n    let _ = std::fmt::Error;\n    \"crate::b::g\"\n}\n",
            ),
            (
                "b.rs",
                "use crate::a;\npub fn g() -> Option<crate::Root> {\n    a::f();\n    None\n}\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n",
            ),
            ("c/mod.rs", "mod d;\npub struct C;\n"),
            ("c/d.rs", "use super::C;\n"),
        ],
    );
    assert_eq!(import_cycles(&tree.0), Vec::<String>::new());
    let (_, edges) = imports(&tree.0);
    assert_eq!(
        edges["crate::b"].keys().collect::<Vec<_>>(),
        ["crate", "crate::a"]
    );
    assert!(edges["crate::a"].is_empty(), "{edges:?}");
}

/// The planted `EventLoop`: a tree of the server's shape.
fn event_loop_tree(name: &str, third: Option<&str>) -> Tree {
    let mut files = vec![
        ("lib.rs", "pub mod server;\n"),
        (
            "server/mod.rs",
            "//! The loop.\n\nmod requests;\nmod timers;\n\npub struct EventLoop;\n\nimpl EventLoop {\n    fn turn(&self) {}\n}\n",
        ),
        (
            "server/requests.rs",
            "use super::EventLoop;\n\nimpl EventLoop {\n    fn read(&self) {}\n}\n",
        ),
    ];
    if let Some(text) = third {
        files.push(("server/timers.rs", text));
    }
    Tree::new(name, &files)
}

/// `impl EventLoop` in three files is caught, naming the type and every
/// block's file and line, however the third block names the type (bare
/// through a `use`, by path, as a trait's `for`, generic, `unsafe`, with
/// a `where`); in two files (the most allowed) it is not.
#[test]
fn impl_blocks_in_three_files_are_found() {
    let thirds = [
        "use super::EventLoop;\n\nimpl EventLoop {\n    fn tick(&self) {}\n}\n",
        "//! Timers.\n\nimpl super::EventLoop {\n    fn tick(&self) {}\n}\n",
        "//! Timers.\n\nimpl crate::server::EventLoop {}\n",
        "use super::EventLoop;\n\nimpl Drop for EventLoop {\n    fn drop(&mut self) {}\n}\n",
        "//! Timers.\n\nunsafe impl Send for super::EventLoop {}\n",
        "use crate::server::EventLoop as Loop;\n\nimpl<T: Fn() -> u8> From<T> for Loop\nwhere\n    T: Clone,\n{\n    fn from(_: T) -> Loop {\n        Loop\n    }\n}\n",
        "use super::*;\n\n#[allow(dead_code)]\nimpl<'a> std::fmt::Debug for &'a EventLoop {}\n",
    ];
    for third in thirds {
        let tree = event_loop_tree("impl-three", Some(third));
        let spread = spread_impls(&tree.0);
        assert_eq!(spread.len(), 1, "{third}: {spread:?}");
        assert!(
            spread[0].starts_with("EventLoop (crate::server) has impl blocks in 3 files"),
            "{third}: {spread:?}"
        );
        let line = third.lines().position(|l| l.contains("impl")).unwrap() + 1;
        for at in [
            tree.at("server/mod.rs", 8),
            tree.at("server/requests.rs", 3),
            tree.at("server/timers.rs", line),
        ] {
            assert!(spread[0].contains(&at), "{third}: {at} not in {spread:?}");
        }
    }
    let two = event_loop_tree("impl-two", None);
    assert_eq!(spread_impls(&two.0), Vec::<String>::new());
    assert_eq!(impl_sites(&two.0).values().next().map(Vec::len), Some(2));
}

/// What only looks like an `impl` block of the type is not one: `impl
/// Trait` in a type, an `impl` in a comment, a string or the test module,
/// an impl for a foreign type, and an impl for another type of the same
/// name in another module.
#[test]
fn impl_look_alikes_are_not_counted() {
    let third = "use super::EventLoop;\n\n// impl EventLoop {}\nfn f(_w: &mut impl std::io::Write) -> impl Iterator<Item = u8> {\n    let _ = \"impl EventLoop {}\";\n    std::iter::empty()\n}\nimpl From<EventLoop> for String {\n    fn from(_: EventLoop) -> String {\n        String::new()\n    }\n}\npub struct Other;\nimpl Other {}\n#[cfg(test)]\nmod tests {\n    impl super::EventLoop {}\n}\n";
    let tree = event_loop_tree("impl-look-alikes", Some(third));
    assert_eq!(spread_impls(&tree.0), Vec::<String>::new());
    let code = production_code(&tree.0.join("server/timers.rs"));
    let headers: Vec<String> = impl_blocks(&code).into_iter().map(|b| b.2).collect();
    assert_eq!(
        headers,
        ["impl From<EventLoop> for String", "impl Other"],
        "the blocks in {third}"
    );
    let sites = impl_sites(&tree.0);
    let event_loop = &sites[&("crate::server".to_owned(), "EventLoop".to_owned())];
    assert_eq!(event_loop.len(), 2, "{sites:?}");
    assert!(sites.contains_key(&("crate::server::timers".to_owned(), "Other".to_owned())));

    let same_name = Tree::new(
        "impl-same-name",
        &[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "pub struct Refusal;\nimpl Refusal {}\n"),
            (
                "b.rs",
                "use crate::a::Refusal;\nimpl std::fmt::Debug for Refusal {}\n",
            ),
            ("c.rs", "struct Refusal;\nimpl Refusal {}\n"),
        ],
    );
    assert_eq!(spread_impls(&same_name.0), Vec::<String>::new());
    let sites = impl_sites(&same_name.0);
    assert_eq!(
        sites[&("crate::a".to_owned(), "Refusal".to_owned())].len(),
        2
    );
    assert_eq!(
        sites[&("crate::c".to_owned(), "Refusal".to_owned())].len(),
        1
    );
}
