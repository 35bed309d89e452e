//! The files the binary serves as they are: the live page, and the
//! JavaScript client built from its sources, `web/statecast.mjs` with
//! `web/delta.js` (the delta applier) in place of its include line: as an
//! ES module and as a classic script (the same text), both made at compile
//! time, and with its TypeScript declarations.

/// `/`: the ADW panels over one multiplexed connection, compiled into the
/// binary, nothing from a CDN.
pub const PAGE: &str = include_str!("web/index.html");

/// `/statecast.d.ts`: the module's declarations, written by hand beside it.
pub const TYPES: &str = include_str!("web/statecast.d.ts");

/// The client's source.
const SOURCE: &str = include_str!("web/statecast.mjs");

/// The delta applier, a plain function the source includes as it is.
const DELTA: &str = include_str!("web/delta.js");

/// The source's line that [`DELTA`] replaces. `web/build.mjs` follows the
/// same rule for the npm package.
const INCLUDE: &[u8] = b"// @include delta.js\n";

/// `/statecast.mjs`: the ES module.
pub static MODULE: &str = match std::str::from_utf8(&MODULE_BYTES) {
    Ok(module) => module,
    // Cut and joined at ASCII bytes only, so this cannot happen.
    Err(_) => "",
};

/// `/statecast.js`: [`MODULE`] as a classic script for a `<script src>`:
/// wrapped in a function, its one `export { .. }` statement turned into
/// the `statecast` global. Made here rather than kept as a second file, so
/// the two can never differ.
pub static SCRIPT: &str = match std::str::from_utf8(&SCRIPT_BYTES) {
    Ok(script) => script,
    // As above.
    Err(_) => "",
};

/// The module's export statement, which must be its last and only one.
const EXPORT: &[u8] = b"\nexport {";
const OPEN: &[u8] = b"(function () {\n\"use strict\";\n";
const GLOBAL: &[u8] = b"\nglobalThis.statecast = {";
const CLOSE: &[u8] = b"})();\n";

/// Where [`INCLUDE`] starts in [`SOURCE`]; a source without it fails the
/// build: a compile-time check, never a runtime panic.
#[allow(clippy::panic)]
const INCLUDE_AT: usize = match find(SOURCE.as_bytes(), INCLUDE) {
    Some(at) => at,
    None => panic!("web/statecast.mjs has no `// @include delta.js` line"),
};

const MODULE_LEN: usize = SOURCE.len() - INCLUDE.len() + DELTA.len();

static MODULE_BYTES: [u8; MODULE_LEN] = module();

const fn module() -> [u8; MODULE_LEN] {
    let source = SOURCE.as_bytes();
    let (before, rest) = match source.split_at_checked(INCLUDE_AT) {
        Some(parts) => parts,
        None => (source, b"".as_slice()),
    };
    let after = match rest.split_at_checked(INCLUDE.len()) {
        Some((_, after)) => after,
        None => b"".as_slice(),
    };
    let mut out = [0; MODULE_LEN];
    let tail = put(&mut out, before);
    let tail = put(tail, DELTA.as_bytes());
    put(tail, after);
    out
}

/// Where [`EXPORT`] starts in the module. The classic script could not run
/// an `import` or a second `export`, so a module with either fails the
/// build here.
#[allow(clippy::panic)]
const EXPORT_AT: usize = {
    let module = &module();
    let Some(at) = find(module, EXPORT) else {
        panic!("web/statecast.mjs must end with one `export {{ .. }};` statement");
    };
    let Some((_, after)) = module.split_at_checked(at + EXPORT.len()) else {
        panic!("unreachable: `find` returned a position inside the module");
    };
    if find(after, b"export").is_some() || find(module, b"\nimport ").is_some() {
        panic!("web/statecast.mjs: one `export {{ .. }};` statement, last, and no import");
    }
    at
};

const SCRIPT_LEN: usize = MODULE_LEN - EXPORT.len() + OPEN.len() + GLOBAL.len() + CLOSE.len();

static SCRIPT_BYTES: [u8; SCRIPT_LEN] = {
    let module = &module();
    let (body, exports) = match module.split_at_checked(EXPORT_AT) {
        Some(parts) => parts,
        None => (module.as_slice(), b"".as_slice()),
    };
    let names = match exports.split_at_checked(EXPORT.len()) {
        Some((_, names)) => names,
        None => b"".as_slice(),
    };
    let mut out = [0; SCRIPT_LEN];
    let rest = put(&mut out, OPEN);
    let rest = put(rest, body);
    let rest = put(rest, GLOBAL);
    let rest = put(rest, names);
    put(rest, CLOSE);
    out
};

/// Copies `from` to the front of `out` and returns what is left of it.
const fn put<'a>(out: &'a mut [u8], mut from: &[u8]) -> &'a mut [u8] {
    let mut out = out;
    while let [byte, rest @ ..] = from {
        let [slot, tail @ ..] = out else {
            return out;
        };
        *slot = *byte;
        out = tail;
        from = rest;
    }
    out
}

/// Where `needle` first occurs in `hay`.
const fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let mut rest = hay;
    let mut at = 0;
    loop {
        if starts_with(rest, needle) {
            return Some(at);
        }
        let [_, tail @ ..] = rest else {
            return None;
        };
        rest = tail;
        at += 1;
    }
}

const fn starts_with(mut hay: &[u8], mut needle: &[u8]) -> bool {
    while let [want, needle_rest @ ..] = needle {
        let [got, hay_rest @ ..] = hay else {
            return false;
        };
        if *got != *want {
            return false;
        }
        hay = hay_rest;
        needle = needle_rest;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The module is the source with the delta applier in place of its
    /// include line, and nothing else.
    #[test]
    fn the_module_is_the_source_with_the_applier_included() {
        let (before, after) = SOURCE.split_once("// @include delta.js\n").unwrap();
        assert_eq!(MODULE, format!("{before}{DELTA}{after}"));
        assert!(MODULE.contains("function applyDelta(format, base, delta)"));
        assert!(!MODULE.contains("@include"));
    }

    /// The classic script is the module's text, wrapped, with the export
    /// list become the global: nothing else differs.
    #[test]
    fn the_classic_script_is_the_module_with_its_exports_as_a_global() {
        let (body, exports) = MODULE.split_at(EXPORT_AT);
        let names = exports.strip_prefix("\nexport {").unwrap();
        assert_eq!(
            SCRIPT,
            format!(
                "(function () {{\n\"use strict\";\n{body}\nglobalThis.statecast = {{{names}}})();\n"
            )
        );
        assert!(!SCRIPT.contains("\nexport "), "{SCRIPT}");
        for name in ["connect", "subscribe", "applyDelta", "VERSION"] {
            assert!(names.contains(name), "{name} is not exported: {names}");
        }
        assert!(names.trim_end().ends_with("};"), "{names}");
    }

    /// The byte helpers the build runs: a needle at either end, one
    /// longer than the text, and an output shorter than the input.
    #[test]
    fn find_and_put_work_at_the_edges() {
        assert_eq!(find(b"abc", b"abc"), Some(0));
        assert_eq!(find(b"xabc", b"bc"), Some(2));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"", b""), Some(0));
        let mut out = [0; 3];
        let rest = put(&mut out, b"abcd");
        assert!(rest.is_empty());
        assert_eq!(&out, b"abc");
    }
}
