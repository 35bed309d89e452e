//! The documentation a user reads stays a user's: the user pages
//! (`README.md`, `SECURITY.md`, and `docs/*.md` outside `docs/lab/`) carry
//! no lab-notebook words ("session", "this machine", "tonight") and no
//! commit hash without the word "commit" before it, and `docs/README.md`
//! links every page under `docs/` and `SECURITY.md` (and the README links
//! it).
//!
//! The checks are functions over text, so each is also run over planted
//! text below and seen to catch what it is for.

use std::path::{Path, PathBuf};

/// Phrases that belong in the lab's logs, not on a user's page.
const LAB_WORDS: [&str; 3] = ["session", "this machine", "tonight"];

/// Uses of a lab word that mean something else.
const ALLOWED: [&str; 4] = [
    "TLS session",
    "TLS 1.3 session",
    "session cache",
    "session IDs",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.md` file under `dir`, recursively, as paths relative to `dir`.
fn markdown_under(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            markdown_under(&path, &format!("{prefix}{name}/"), out);
        } else if name.ends_with(".md") {
            out.push(format!("{prefix}{name}"));
        }
    }
}

/// The user pages, relative to the repository.
fn user_pages() -> Vec<String> {
    let mut docs = Vec::new();
    markdown_under(&root().join("docs"), "docs/", &mut docs);
    let mut pages = vec!["README.md".to_owned(), "SECURITY.md".to_owned()];
    pages.extend(docs.into_iter().filter(|p| !p.starts_with("docs/lab/")));
    pages
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `word` occurs in `text` at `at` as a whole word.
fn whole_word(text: &str, at: usize, word: &str) -> bool {
    let before = text[..at].chars().next_back().is_none_or(|c| !is_word(c));
    let rest = &text[at + word.len()..];
    let after = rest.strip_prefix('s').unwrap_or(rest);
    before && after.chars().next().is_none_or(|c| !is_word(c))
}

/// The lab words in `text`, each as `line N: "..."`.
fn lab_words(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut cleaned = line.to_owned();
        for allowed in ALLOWED {
            cleaned = cleaned.replace(allowed, "");
        }
        let lower = cleaned.to_lowercase();
        for word in LAB_WORDS {
            let hit = lower
                .match_indices(word)
                .any(|(at, _)| whole_word(&lower, at, word));
            if hit {
                found.push(format!("line {}: {word:?} in {line:?}", n + 1));
            }
        }
    }
    found
}

/// Commit hashes in `text` (7 to 40 hex digits, at least one a letter and
/// one a digit, outside a quoted JSON string) without "commit" in the 40
/// characters before them.
fn bare_hashes(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if !bytes[i].is_ascii_hexdigit() || (i > 0 && is_word(bytes[i - 1] as char)) {
                i += 1;
                continue;
            }
            let end = (i..bytes.len())
                .find(|&j| !is_word(bytes[j] as char))
                .unwrap_or(bytes.len());
            let token = &line[i..end];
            let hex = token
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let mixed = token.bytes().any(|b| b.is_ascii_digit())
                && token.bytes().any(|b| b.is_ascii_alphabetic());
            let quoted = i > 0 && bytes[i - 1] == b'"';
            let before: String = line[..i].chars().rev().take(40).collect();
            let before: String = before.chars().rev().collect::<String>().to_lowercase();
            if hex
                && mixed
                && (7..=40).contains(&token.len())
                && !quoted
                && !before.contains("commit")
            {
                found.push(format!("line {}: {token}", n + 1));
            }
            i = end;
        }
    }
    found
}

/// The pages a page's text links to, relative to the page's folder.
fn link_targets(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|target| target.split('#').next().unwrap_or("").to_owned())
        .collect()
}

/// The pages under `docs/` (and `SECURITY.md`) that `index` does not link.
fn unlisted(index: &str, pages: &[String]) -> Vec<String> {
    let targets = link_targets(index);
    pages
        .iter()
        .filter(|page| {
            let relative = match page.strip_prefix("docs/") {
                Some(inside) => inside.to_owned(),
                None => format!("../{page}"),
            };
            relative != "README.md" && !targets.contains(&relative)
        })
        .cloned()
        .collect()
}

/// The text of `markdown` outside its fenced code blocks.
fn outside_fences(markdown: &str) -> String {
    let mut fenced = false;
    let mut out = String::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The anchors GitHub gives `markdown`'s headings: lower case, spaces as
/// `-`, punctuation other than `-` and `_` dropped.
fn anchors(markdown: &str) -> Vec<String> {
    outside_fences(markdown)
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|heading| {
            heading
                .trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// The relative links in `page` (a path from the repository's root) that
/// land nowhere: no such file, or no such heading in it.
fn broken_links(page: &str, read: &dyn Fn(&Path) -> Option<String>) -> Vec<String> {
    let Some(text) = read(Path::new(page)) else {
        return vec![format!("{page} itself")];
    };
    let folder = Path::new(page).parent().unwrap_or(Path::new(""));
    let mut broken = Vec::new();
    for rest in outside_fences(&text).split("](").skip(1) {
        let target = rest.split([')', ' ']).next().unwrap_or("");
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
        let mut path = folder.to_path_buf();
        for part in file.split('/').filter(|p| !p.is_empty()) {
            if part == ".." {
                path.pop();
            } else {
                path.push(part);
            }
        }
        let path = if file.is_empty() {
            PathBuf::from(page)
        } else {
            path
        };
        match read(&path) {
            None if !root().join(&path).is_dir() => broken.push(target.to_owned()),
            Some(linked)
                if !anchor.is_empty()
                    && path.extension().is_some_and(|e| e == "md")
                    && !anchors(&linked).iter().any(|a| a == anchor) =>
            {
                broken.push(target.to_owned())
            }
            _ => {}
        }
    }
    broken
}

/// Every relative link on every page a user or contributor reads lands on
/// a file that exists, and on a heading of it when it names one.
#[test]
fn every_relative_link_lands() {
    let mut pages = vec![
        "README.md".to_owned(),
        "SECURITY.md".to_owned(),
        "CONTRIBUTING.md".to_owned(),
        "CHANGELOG.md".to_owned(),
    ];
    markdown_under(&root().join("docs"), "docs/", &mut pages);
    let read = |path: &Path| std::fs::read_to_string(root().join(path)).ok();
    let broken: Vec<String> = pages
        .iter()
        .flat_map(|page| {
            broken_links(page, &read)
                .into_iter()
                .map(move |link| format!("{page}: {link}"))
        })
        .collect();
    assert!(
        broken.is_empty(),
        "links that land nowhere:\n{}",
        broken.join("\n")
    );
}

/// The `[source, destination, mode]` assets of Cargo.toml's Debian
/// package, as (source, destination).
fn package_assets(manifest: &str) -> Vec<(String, String)> {
    manifest
        .lines()
        .map(str::trim)
        .filter_map(|line| line.strip_prefix("[\""))
        .filter_map(|rest| {
            let mut fields = rest.split('"').step_by(2);
            Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
        })
        .collect()
}

/// The user pages (`page`, a path in the repository) that `assets` do
/// not install where an installed README's relative links find them:
/// `/usr/share/doc/statecast/` plus the same path.
fn unshipped(assets: &[(String, String)], pages: &[String]) -> Vec<String> {
    pages
        .iter()
        .filter(|page| {
            let (folder, name) = page.rsplit_once('/').unwrap_or(("", page));
            let wanted = match folder {
                "" => "usr/share/doc/statecast/".to_owned(),
                folder => format!("usr/share/doc/statecast/{folder}/"),
            };
            let glob = match folder {
                "" => "*.md".to_owned(),
                folder => format!("{folder}/*.md"),
            };
            !assets.iter().any(|(source, to)| {
                *to == wanted && (*source == **page || (*source == glob && name.ends_with(".md")))
            })
        })
        .cloned()
        .collect()
}

/// The Debian package installs every user page beside its README, at the
/// path the README's links give, so that the installed README's links
/// (SECURITY.md, docs/protocol.md, ...) land.
#[test]
fn the_package_ships_every_user_page() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let missing = unshipped(&package_assets(&manifest), &user_pages());
    assert!(
        missing.is_empty(),
        "the package (Cargo.toml's assets) does not ship: {missing:?}"
    );
}

/// No user page reads as a lab notebook: no "session", "this machine" or
/// "tonight", and no commit hash left unexplained.
#[test]
fn user_pages_carry_no_lab_notes() {
    let mut problems = Vec::new();
    for page in user_pages() {
        let text = std::fs::read_to_string(root().join(&page)).unwrap();
        for found in lab_words(&text).into_iter().chain(bare_hashes(&text)) {
            problems.push(format!("{page} {found}"));
        }
    }
    assert!(
        problems.is_empty(),
        "lab notes on user pages (move them to docs/lab/, or say what the hash is):\n{}",
        problems.join("\n")
    );
}

/// docs/README.md links every page under docs/, the lab's included, and
/// SECURITY.md; the README links docs/README.md.
#[test]
fn the_docs_index_links_every_page() {
    let mut pages = Vec::new();
    markdown_under(&root().join("docs"), "docs/", &mut pages);
    pages.push("SECURITY.md".to_owned());
    let index = std::fs::read_to_string(root().join("docs/README.md")).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        link_targets(&readme).contains(&"docs/README.md".to_owned()),
        "the README does not link docs/README.md"
    );
    let missing = unlisted(&index, &pages);
    assert!(
        missing.is_empty(),
        "docs/README.md does not link: {missing:?}"
    );
}

/// The checks catch what they are for, on planted text, and let pass
/// what is no lab note.
#[test]
fn the_checks_catch_planted_lab_notes() {
    assert_eq!(lab_words("Measured in this session.").len(), 1);
    assert_eq!(lab_words("Two Sessions later").len(), 1);
    assert_eq!(lab_words("on This Machine, 5 us").len(), 1);
    assert_eq!(lab_words("run it tonight").len(), 1);
    assert!(lab_words("a TLS session per connection; sessional; tonightly").is_empty());

    assert_eq!(bare_hashes("base (`1dc6cae`, before this work)").len(), 1);
    assert_eq!(bare_hashes("at 59d6433 the figures").len(), 1);
    assert!(bare_hashes("at commit `1dc6cae`, before this work").is_empty());
    assert_eq!(
        bare_hashes("µs µs µs µs µs µs µs µs µs µs µs µs µs µs at 59d6433").len(),
        1
    );
    assert!(
        bare_hashes(
            r#"{"adw_id":"a1b2c3d4"}, change-me-0123456789, 1000000000000000, deadbeefcafe"#
        )
        .is_empty()
    );

    let pages = [
        "docs/a.md".to_owned(),
        "docs/lab/b.md".to_owned(),
        "SECURITY.md".to_owned(),
    ];
    assert_eq!(
        unlisted("[a](a.md) [b](lab/b.md#x)", &pages),
        ["SECURITY.md"]
    );
    assert!(unlisted("[a](a.md) [b](lab/b.md) [s](../SECURITY.md)", &pages).is_empty());

    let read = |path: &Path| match path.to_str() {
        Some("docs/a.md") => Some(
            "[up](../README.md#a-b) [x](x.md) [s](#no) [w](https://e.x/y) [t](lab/)\n\
             ```\n[in a fence](nowhere.md)\n```\n"
                .to_owned(),
        ),
        Some("README.md") => Some("# A, `b`\n## No\n".to_owned()),
        _ => None,
    };
    assert_eq!(broken_links("docs/a.md", &read), ["x.md", "#no"]);
    assert_eq!(
        anchors("### What a `--schema` file may hold"),
        ["what-a---schema-file-may-hold"]
    );

    let assets = package_assets(
        "assets = [\n    [\"README.md\", \"usr/share/doc/statecast/\", \"644\"],\n    \
         [\"docs/*.md\", \"usr/share/doc/statecast/docs/\", \"644\"],\n    \
         [\"docs/lab/x.md\", \"usr/share/doc/statecast/\", \"644\"],\n]\n",
    );
    let pages = ["README.md", "SECURITY.md", "docs/a.md", "docs/lab/x.md"].map(String::from);
    assert_eq!(unshipped(&assets, &pages), ["SECURITY.md", "docs/lab/x.md"]);
}
