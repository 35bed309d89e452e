//! The config file parser on arbitrary text: errors, never a panic, and
//! what it accepts prints back as a file that reads back the same, but for
//! secrets (a Redis password), which are printed only as a comment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statecast::Config;
use statecast::config::file;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut config = Config::default();
    if file::apply_text(text, "fuzz.toml", &mut config).is_ok() {
        let printed = file::render(&config);
        let mut again = Config::default();
        file::apply_text(&printed, "printed.toml", &mut again)
            .unwrap_or_else(|e| panic!("printed config does not read back: {e}\n{printed}"));
        let settings = |text: &str| {
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(settings(&file::render(&again)), settings(&printed));
    }
});
