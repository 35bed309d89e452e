//! The syntax of option values: addresses, counts, `500ms`, `1MiB`,
//! tokens (held to their rules, never shown), and URLs as they may be shown
//! (their secrets hidden).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// A token: never printed, not even by `{:?}`, so it cannot reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(token: &str) -> Secret {
        Secret(token.to_owned())
    }

    /// The token itself, for the one comparison that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A token or key as the rules for one go: 16 characters at least, no
/// spaces. Said without the value: a secret must not reach a terminal log.
pub fn secret(text: &str) -> Result<Secret, String> {
    // Two messages, so the operator knows which rule to fix: a service
    // that restarts on a bad token only says so in its journal.
    if text.len() < MIN_SECRET_LEN {
        return Err(format!(
            "too short: a token or key needs at least {MIN_SECRET_LEN} characters"
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a token or key must not hold spaces or control characters".into());
    }
    Ok(Secret::new(text))
}

/// The shortest token or key taken: guessing 16 characters is out of reach.
pub const MIN_SECRET_LEN: usize = 16;

pub(super) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?} is not an address (expected HOST:PORT): {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

pub(super) fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive whole number")),
    }
}

/// Splits `"500ms"` into `(500, "ms")`.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let number = s[..digits].parse().ok()?;
    Some((number, s[digits..].trim()))
}

/// Parses `500ms`, `20s`, `5m`, `1h`. A unit is required: a bare `20` is
/// ambiguous and a wrong guess is an outage.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (expected e.g. 500ms, 20s, 5m, 1h)");
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if duration.is_zero() {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok(duration)
}

/// Parses `4096`, `4KiB`, `1MiB`, `1GiB` (also `B`, and `K`/`M`/`G` as the
/// binary units).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let bad = || format!("{s:?} is not a size (expected e.g. 4096, 64KiB, 1MiB)");
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(scale).ok_or_else(bad)?;
    if bytes == 0 {
        return Err(format!("{s:?} must be more than zero"));
    }
    usize::try_from(bytes).map_err(|_| bad())
}

/// Formats a duration the way the options take it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `url` as logs, errors, `/healthz` and `--print-config` may show it:
/// user info and the query string, where secrets go (`user:pass@`,
/// `?apikey=`), become `***`. User info ends at the last `@`, as URL
/// parsers read it, so a password holding `@` is hidden whole; an `@` in
/// the query hides more than it needs to, never less.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (shown, hid_user) = match rest.rsplit_once('@') {
        Some((_, host)) => (host, true),
        None => (rest, false),
    };
    let user = if hid_user { "***@" } else { "" };
    // The fragment, if any, goes with the query: it is never sent anyway.
    match shown.split_once(['?', '#']) {
        Some((before, _)) => format!("{scheme}://{user}{before}?***"),
        None => format!("{scheme}://{user}{shown}"),
    }
}

/// `text`, a command line, with each word holding a URL shown as
/// [`redacted_url`] shows it: a command may name a URL with its password
/// or key, and is shown in logs and `--print-config` like any URL.
pub fn redacted_urls(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .map(|word| {
            let bare = word.trim_end_matches(char::is_whitespace);
            let space = word.get(bare.len()..).unwrap_or_default();
            redacted_url(bare) + space
        })
        .collect()
}

/// Whether `url` holds what [`redacted_url`] hides.
pub fn has_secret(url: &str) -> bool {
    redacted_url(url) != url
}
