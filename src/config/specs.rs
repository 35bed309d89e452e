//! The provider entries of a configuration: `--poll TOPIC=URL[#POINTER][@INTERVAL]`
//! and `--exec TOPIC=COMMAND@INTERVAL`, parsed here so the command line and
//! the config file accept and refuse the same text, and each entry remembers
//! where it was written for the errors that come later.

use std::fmt;
use std::time::Duration;

use super::values::{parse_duration, redacted_url, redacted_urls};

/// How often `--poll` fetches when the entry names no interval.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Where an entry was written: `--poll`, or `statecast.toml:7: [[poll]]`.
pub type Origin = String;

/// One `--poll` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollSpec {
    pub topic: String,
    /// An `http://` URL, or `https://` in a build with the `https` feature.
    pub url: String,
    /// A JSON pointer (RFC 6901) to the part of the answer that is the
    /// topic's value, written after the URL as its fragment (`#/routes`);
    /// the whole answer without one.
    pub pointer: Option<String>,
    pub interval: Duration,
    pub origin: Origin,
}

impl fmt::Display for PollSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)?;
        match &self.pointer {
            Some(pointer) => write!(f, "#{pointer}"),
            None => Ok(()),
        }
    }
}

/// Parses `TOPIC=URL[#POINTER][@INTERVAL]`; an `@` followed by a `/`
/// belongs to the URL. The fragment, never sent to the server, is a JSON
/// pointer to the part of the answer to publish.
pub fn parse_poll(s: &str, default_interval: Duration) -> Result<PollSpec, String> {
    let (topic, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not TOPIC=URL[@INTERVAL]"))?;
    if topic.is_empty() {
        return Err(format!("{s:?} names no topic (TOPIC=URL[@INTERVAL])"));
    }
    let (url, interval) = match rest.rsplit_once('@') {
        Some((url, interval)) if !interval.contains('/') => (url, parse_duration(interval)?),
        _ => (rest, default_interval),
    };
    let (url, pointer) = match url.split_once('#') {
        Some((_, pointer)) if !pointer.is_empty() && !pointer.starts_with('/') => {
            return Err(format!(
                "#{pointer} is not a JSON pointer (expected e.g. #/routes)"
            ));
        }
        Some((url, pointer)) => (url, (!pointer.is_empty()).then(|| pointer.to_owned())),
        None => (url, None),
    };
    check_url(url)?;
    Ok(PollSpec {
        topic: topic.to_owned(),
        url: url.to_owned(),
        pointer,
        interval,
        origin: "--poll".into(),
    })
}

fn check_url(url: &str) -> Result<(), String> {
    // What the errors show: a URL's user info and query are secrets.
    let shown = redacted_url(url);
    if url.is_empty() {
        return Err("the URL is empty (expected TOPIC=http://HOST[:PORT]/PATH)".into());
    }
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if let Some(rest) = url.strip_prefix("https://") {
        if !cfg!(feature = "https") {
            return Err(format!(
                "{shown:?}: https:// needs statecast built with `--features https`"
            ));
        }
        rest
    } else {
        return Err(format!("{shown:?} is not an http:// or https:// URL"));
    };
    if rest.is_empty() || rest.starts_with(['/', ':', '?', '#']) {
        return Err(format!("{shown:?} has no host"));
    }
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("{shown:?}: {e}"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{shown:?} has no host"));
    }
    Ok(())
}

/// One `--exec` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    pub topic: String,
    pub command: String,
    pub interval: Duration,
    pub origin: Origin,
}

/// Parses `TOPIC=COMMAND@INTERVAL`; the interval is required, and is what
/// follows the last `@`.
pub fn parse_exec(s: &str) -> Result<ExecSpec, String> {
    // What the errors show: a URL in the command may hold a password.
    let shown = redacted_urls(s);
    let (topic, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("{shown:?} is not TOPIC=COMMAND@INTERVAL"))?;
    if topic.is_empty() {
        return Err(format!("{shown:?} names no topic (TOPIC=COMMAND@INTERVAL)"));
    }
    let (command, interval) = rest.rsplit_once('@').ok_or_else(|| {
        let rest = redacted_urls(rest);
        format!("{shown:?} has no interval: one is required, as in {topic}={rest}@30s")
    })?;
    if command.trim().is_empty() {
        return Err(format!("{shown:?} names no command"));
    }
    Ok(ExecSpec {
        topic: topic.to_owned(),
        command: command.to_owned(),
        // Without an interval, the last `@` may be a URL's, and what
        // follows it its query: quoted only if redacting left it as is.
        interval: parse_duration(interval).map_err(|e| {
            if shown.ends_with(&format!("@{interval}")) {
                e
            } else {
                format!("{shown:?} has no interval after its last @ (e.g. @30s)")
            }
        })?,
        origin: "--exec".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_specs_parse() {
        let d = Duration::from_secs(2);
        let spec = parse_poll("queue=http://localhost:8000/api/queue@500ms", d).unwrap();
        assert_eq!(spec.url, "http://localhost:8000/api/queue");
        assert_eq!(spec.interval, Duration::from_millis(500));
        let s = parse_poll("system-status=http://backend/status?x=1", d).unwrap();
        assert_eq!(
            (s.url.as_str(), s.interval),
            ("http://backend/status?x=1", d)
        );
        let v6 = parse_poll("queue=http://[::1]:8000/q", d).unwrap();
        assert_eq!(v6.to_string(), "http://[::1]:8000/q");
        assert!(parse_poll("queue", d).is_err());
        assert!(parse_poll("queue=http://x/@20", d).is_err());
        assert!(
            parse_poll("queue=ftp://x/", d)
                .unwrap_err()
                .contains("http://")
        );
        assert!(
            parse_poll("queue=http:///x", d)
                .unwrap_err()
                .contains("no host")
        );
    }

    /// The fragment is a JSON pointer to the part of the answer; it is not
    /// part of the URL fetched, and prints back the way it was written.
    #[test]
    fn a_pointer_picks_part_of_the_answer() {
        let d = Duration::from_secs(2);
        let s = parse_poll("routes=http://b:8000/api/v1/routes#/routes@5s", d).unwrap();
        assert_eq!(s.url, "http://b:8000/api/v1/routes");
        assert_eq!(s.pointer.as_deref(), Some("/routes"));
        assert_eq!(s.interval, Duration::from_secs(5));
        assert_eq!(s.to_string(), "http://b:8000/api/v1/routes#/routes");
        let e = parse_poll("routes=http://b/x#routes", d).unwrap_err();
        assert!(e.contains("JSON pointer"), "{e}");
        // Errors never show a URL's secrets.
        let e = parse_poll("q=ftp://user:s3cret@b/x?key=k3y", d).unwrap_err();
        assert!(!e.contains("s3cret") && !e.contains("k3y"), "{e}");
    }

    #[test]
    fn an_empty_url_is_named_as_such() {
        let e = parse_poll("queue=", Duration::from_secs(2)).unwrap_err();
        assert!(e.starts_with("the URL is empty"), "{e}");
        let e = parse_poll("queue=@5s", Duration::from_secs(2)).unwrap_err();
        assert!(e.starts_with("the URL is empty"), "{e}");
    }

    #[test]
    fn https_needs_the_feature() {
        let r = parse_poll("queue=https://example.com/q", Duration::from_secs(2));
        if cfg!(feature = "https") {
            assert!(r.is_ok(), "{r:?}");
        } else {
            assert!(r.unwrap_err().contains("--features https"));
        }
    }

    #[test]
    fn exec_specs_parse() {
        let spec = parse_exec("qc-metrics=./qc.sh --json@30s").unwrap();
        assert_eq!(
            (spec.topic.as_str(), spec.command.as_str(), spec.interval),
            ("qc-metrics", "./qc.sh --json", Duration::from_secs(30))
        );
        let e = parse_exec("qc-metrics=./qc.sh").unwrap_err();
        assert!(e.contains("no interval: one is required"), "{e}");
        assert!(parse_exec("=x@1s").is_err());
        assert!(parse_exec("t=x@soon").is_err());
    }

    /// A refused `--exec` is quoted with the URLs in its command redacted.
    #[test]
    fn exec_errors_never_show_a_url_secret() {
        for spec in [
            "=curl https://u:hunter2@h/x@1s",
            "curl https://u:hunter2@h/x",
            "t=curl https://u:hunter2@h/x?key=k3y",
        ] {
            let e = parse_exec(spec).unwrap_err();
            assert!(e.contains("https://***@"), "{e}");
            assert!(!e.contains("hunter2") && !e.contains("k3y"), "{e}");
        }
    }
}
