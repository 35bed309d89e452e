//! The fuzz targets' seeds, replayed on stable: every input that once
//! ended the process or reached a client it should not, and whatever the
//! fuzzer kept, goes through the same harness the target drives, under
//! the default limits and the small ones the input picks. None may panic,
//! and each named request-path input gets the answer it must.

use statecast::server::harness::{Setups, client_frames};

/// The statuses each named seed must get, by the start of its file name.
const EXPECTED: &[(&str, &[u16])] = &[
    ("broadcast-1e400", &[400]),
    ("broadcast-lone-surrogate", &[400]),
    ("broadcast-200-nested", &[400]),
    ("publish-1e400-no-schema", &[400]),
    ("publish-lone-surrogate-no-schema", &[400]),
    ("publish-deep-no-schema", &[400]),
    ("publish-bare-cr", &[200]),
    ("publish-duplicate-name", &[400]),
    ("publish-cross-site-text-plain", &[403]),
    ("publish-cross-site-no-origin", &[403]),
    ("websocket-evil-origin", &[403]),
    ("foreign-host", &[421]),
    ("state-without-token", &[401]),
    ("state-with-token", &[200]),
    ("healthz-without-token", &[200]),
    ("metrics-without-token", &[401]),
    ("trailers-over-8k", &[431]),
    ("one-byte-chunks-schema", &[200]),
    ("one-byte-chunks", &[200]),
    ("get-with-body", &[413]),
    ("publish-over-limit-announced", &[413]),
    ("pipelined-mixed", &[200, 200, 200, 200]),
    ("expect-continue", &[200]),
];

#[test]
fn every_seed_replays_and_the_named_ones_get_their_answers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/request_path");
    let mut setups = Setups::new().unwrap();
    let mut named = 0;
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= EXPECTED.len(), "seeds in {}", dir.display());
    for path in files {
        let data = std::fs::read(&path).unwrap();
        let statuses = setups.run(&data);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for statuses in [&statuses, &setups.run_small(&data)] {
            assert!(
                statuses.iter().all(|s| (100..600).contains(s)),
                "{name}: {statuses:?}"
            );
        }
        // The longest matching prefix: "one-byte-chunks-schema" before
        // "one-byte-chunks".
        let expected = EXPECTED
            .iter()
            .filter(|(prefix, _)| {
                name.strip_prefix(prefix).is_some_and(|rest| {
                    rest.starts_with('-') && rest[1..].bytes().all(|b| b.is_ascii_digit())
                })
            })
            .max_by_key(|(prefix, _)| prefix.len());
        if let Some((_, expected)) = expected {
            assert_eq!(&statuses, expected, "{name}");
            named += 1;
        }
    }
    assert_eq!(
        named,
        EXPECTED.len() * 2,
        "each named seed, at two read sizes"
    );
}

/// The client-frame target's seeds decode without a panic under the
/// default limits and the small ones each picks; among them a compressed
/// empty message under a 1-byte limit, which once ended the process.
#[test]
fn every_client_frames_seed_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/client_frames");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        client_frames(&std::fs::read(&path).unwrap());
        seeds += 1;
    }
    assert!(seeds > 400, "{seeds} seeds in {}", dir.display());
    assert!(dir.join("compressed-empty-message-limit-1").is_file());
}
