//! The command line as a user meets it: `--help`, refusals that name the
//! option, and the TOML config file with `--print-config`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn statecast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_statecast"))
        .args(args)
        .output()
        .expect("running statecast")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A config file in the temp dir, removed on drop.
struct File(PathBuf);

impl File {
    fn new(name: &str, text: &str) -> File {
        let path =
            std::env::temp_dir().join(format!("statecast-cli-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        File(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `--help` explains the endpoints and every option with its default.
#[test]
fn help_explains_itself() {
    let out = statecast(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for needle in [
        "/api/v1/ws/<topic>",
        "--listen ADDR",
        "[default: 127.0.0.1:8002]",
        "--config FILE",
        "500ms",
    ] {
        assert!(text.contains(needle), "--help lacks {needle:?}");
    }
}

/// `--help` tells a balancer's operator both times `/readyz` is 503: when
/// the server is full, and when a drain begins (the README and
/// docs/deployment.md say the same).
#[test]
fn help_says_when_readyz_is_503() {
    let help: String = stdout(&statecast(&["--help"]))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let readyz = help
        .split_once("/readyz ")
        .and_then(|(_, rest)| rest.split(" GET").next())
        .expect("a /readyz line");
    assert!(readyz.contains("503 past --max-connections"), "{readyz}");
    assert!(readyz.contains("when a drain begins"), "{readyz}");
}

/// A bad value is refused at start-up with exit 2 and the option's name.
#[test]
fn bad_flags_are_refused_by_name() {
    for (args, needle) in [
        (&["--ping-interval", "20"][..], "--ping-interval:"),
        (&["--max-queue-bytes", "a lot"][..], "--max-queue-bytes:"),
        (&["--listen", "nowhere"][..], "--listen:"),
        (&["--poll", "queue=https://x/"][..], "--poll:"),
        (&["--exec", "queue=echo {}"][..], "--exec:"),
        (&["--frobnicate"][..], "--frobnicate"),
    ] {
        let out = statecast(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    let out = statecast(&["--poll", "nope=http://127.0.0.1:1/"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown topic"), "{}", stderr(&out));
}

/// The file sets options, flags override it, and `--print-config` shows
/// the result as a file that reads back to the same configuration.
#[test]
fn config_file_and_flags() {
    let file = File::new(
        "ok",
        r#"
listen = "127.0.0.1:9100"
ping_interval = "15s"
max_queue_bytes = "2MiB"
topics = ["prices"]

[[poll]]
topic = "queue"
url = "http://127.0.0.1:8000/api/queue"
interval = "1s"
"#,
    );
    let out = statecast(&[
        "--config",
        file.path(),
        "--ping-interval",
        "5s",
        "--print-config",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    for line in [
        r#"listen = "127.0.0.1:9100""#,
        r#"ping_interval = "5s""#,
        r#"max_queue_bytes = "2MiB""#,
        r#"topics = ["prices"]"#,
        r#"url = "http://127.0.0.1:8000/api/queue""#,
        r#"write_timeout = "30s""#,
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "missing {line:?} in\n{printed}"
        );
    }
    let again = File::new("again", &printed);
    let out = statecast(&["--config", again.path(), "--print-config"]);
    assert_eq!(stdout(&out), printed, "--print-config reads back unchanged");
}

/// `--print-config` never prints a URL's password or query from an
/// `--exec` command: such an entry is named in a comment, redacted, and
/// one without a secret is printed whole.
#[test]
fn print_config_hides_secrets_in_commands() {
    let out = statecast(&[
        "--topic",
        "prices",
        "--exec",
        "prices=curl -s https://app:hunter2@api.example/p?apikey=k3y | jq .@5s",
        "--exec",
        "queue=curl -s http://127.0.0.1:8000/api/queue@5s",
        "--print-config",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    for secret in ["hunter2", "k3y", "app:"] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    assert!(
        printed.contains(
            "# [[exec]] for prices is set; its command holds a secret, not printed: \
             curl -s https://***@api.example/p?*** | jq ."
        ),
        "{printed}"
    );
    assert!(
        printed.contains(r#"command = "curl -s http://127.0.0.1:8000/api/queue""#),
        "{printed}"
    );
}

/// Errors in the file name the file, the line and the key.
#[test]
fn config_errors_name_file_line_and_key() {
    let file = File::new(
        "bad",
        "listen = \"127.0.0.1:9100\"\n\nping_interval = \"20\"\n",
    );
    let out = statecast(&["--config", file.path()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:3: ping_interval:", file.path())),
        "{err}"
    );

    let file = File::new("unknown", "ping_intervall = \"20s\"\n");
    let err = stderr(&statecast(&["--config", file.path()]));
    assert!(err.contains(":1: ping_intervall: unknown key"), "{err}");

    let file = File::new("syntax", "ping_interval = \"20s\n");
    let err = stderr(&statecast(&["--config", file.path()]));
    assert!(err.contains("line 1"), "{err}");
}

/// Each of these errors says what is wrong in the user's own terms.
#[test]
fn errors_a_user_can_act_on() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "unknown option --bogus; see --help"),
        (&["--exec", "queue=echo {}"], "no interval: one is required"),
        (&["--poll", "queue="], "--poll: the URL is empty"),
        (&["--poll", "queue=@5s"], "--poll: the URL is empty"),
    ];
    for (args, needle) in cases {
        let out = statecast(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    let help = stdout(&statecast(&["--help"]));
    assert!(help.contains("INTERVAL, which is"), "{help}");
}

/// A `[[poll]]` or `[[exec]]` entry is named by its file and line, in the
/// file's terms: an unknown topic found once the whole configuration is
/// known, and a missing key.
#[test]
fn config_entries_are_named_by_file_and_line() {
    let file = File::new(
        "poll-topic",
        "ping_interval = \"20s\"\n\n[[poll]]\ntopic = \"nope\"\nurl = \"http://127.0.0.1:1/\"\n",
    );
    let out = statecast(&["--config", file.path(), "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}:3: [[poll]]: unknown topic \"nope\"",
            file.path()
        )),
        "{err}"
    );

    let file = File::new(
        "exec-interval",
        "[[exec]]\ntopic = \"queue\"\ncommand = \"cat q.json\"\n",
    );
    let err = stderr(&statecast(&["--config", file.path()]));
    assert!(
        err.contains(&format!(
            "{}:1: [[exec]]: the key \"interval\" is missing",
            file.path()
        )),
        "{err}"
    );
}

/// `--demo` beside another provider writing the same topics is worth one
/// warning at start, naming what they share.
#[test]
fn demo_beside_another_writer_warns_once() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_statecast"))
        .args([
            "--demo",
            "--exec",
            "queue=cat q.json@1h",
            "--listen",
            "127.0.0.1:0",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut warnings = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains("--demo and") {
            warnings.push(line.clone());
        }
        if line.contains("listening on") {
            break;
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("[WARN]") && warnings[0].contains("--exec (queue)"),
        "{warnings:?}"
    );
}

/// `[schema]` in the file is `--schema`: printed back, and a broken schema
/// file stops the server at start naming it.
#[test]
fn schema_table_in_the_config_file() {
    let file = File::new("schema", "[schema]\nqueue = \"/nonexistent/queue.json\"\n");
    let out = statecast(&["--config", file.path(), "--print-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("[schema]\n\"queue\" = \"/nonexistent/queue.json\""),
        "{}",
        stdout(&out)
    );
    let out = statecast(&["--config", file.path(), "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/queue.json"),
        "{}",
        stderr(&out)
    );
}

/// A build without the `tls` feature says how to get `rediss://`, rather
/// than failing to connect.
#[cfg(all(feature = "redis", not(feature = "tls")))]
#[test]
fn rediss_without_tls_says_which_feature() {
    let out = statecast(&[
        "--listen",
        "127.0.0.1:0",
        "--redis",
        "rediss://:s3cret@127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--features tls"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

/// A build without the `tls` feature refuses `--tls-cert`, naming the
/// feature; and the two options come together or not at all.
#[cfg(not(feature = "tls"))]
#[test]
fn tls_cert_without_tls_says_which_feature() {
    let out = statecast(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--features tls"), "{}", stderr(&out));
    let out = statecast(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-key",
        "/nonexistent/key.pem",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--tls-key needs --tls-cert"),
        "{}",
        stderr(&out)
    );
}

/// docs/options.md shows `--help` as the binary prints it, so every flag
/// is documented and no documented flag is stale.
#[test]
fn the_options_page_is_the_help() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/options.md"))
        .expect("docs/options.md");
    let shown = page
        .split("```text\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a text block");
    let help = stdout(&statecast(&["--help"]));
    assert!(
        shown == help,
        "docs/options.md differs from `statecast --help`; paste the new output into its text block"
    );
    for flag in help.split_whitespace().filter(|w| w.starts_with("--")) {
        let flag = flag.trim_end_matches([',', '.', ')', ';']);
        assert!(page.contains(flag), "{flag}");
    }
}

/// Every provider's topics are checked at start, the ADW ones too: one
/// the server does not serve exits 2 naming the provider and the way out.
#[test]
fn a_provider_whose_topics_are_not_served_stops_the_start() {
    for provider in [&["--demo"][..], &["--agents-dir", "/nonexistent"][..]] {
        let mut args = provider.to_vec();
        args.extend(["--preset", "none", "--listen", "127.0.0.1:0"]);
        let out = statecast(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("statecast: {}: unknown topic", provider[0]))
                && err.contains("the ADW topics need --preset adw"),
            "{err}"
        );
    }
}

/// The exit statuses the packaged unit does not restart on, read from
/// debian/statecast.service's `RestartPreventExitStatus=` lines.
fn statuses_the_unit_does_not_restart_on() -> Vec<i32> {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/statecast.service"),
    )
    .unwrap();
    unit.lines()
        .filter_map(|line| line.strip_prefix("RestartPreventExitStatus="))
        .flat_map(|value| value.split_whitespace())
        .filter_map(|status| status.parse().ok())
        .collect()
}

/// A token one character under the minimum stops the start with an exit
/// status the packaged unit does not restart on, and a line naming the
/// option and the minimum, never the token; from the environment (as the
/// unit gives it) and from the command line. The minimum itself starts.
#[test]
fn a_short_token_stops_the_unit_for_good() {
    let short = "fifteen-chars-x";
    assert_eq!(short.len(), 15);
    let stops = statuses_the_unit_does_not_restart_on();
    for (option, variable) in [
        ("--publish-token", "STATECAST_PUBLISH_TOKEN"),
        ("--subscribe-token", "STATECAST_SUBSCRIBE_TOKEN"),
    ] {
        let from_env = Command::new(env!("CARGO_BIN_EXE_statecast"))
            .args(["--listen", "127.0.0.1:0"])
            .env(variable, short)
            .output()
            .unwrap();
        let from_flag = statecast(&["--listen", "127.0.0.1:0", option, short]);
        for out in [from_env, from_flag] {
            let err = stderr(&out);
            let code = out.status.code().unwrap_or_default();
            assert!(stops.contains(&code), "exit {code} not in {stops:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.contains(option) && err.contains("too short") && err.contains("16 characters"),
                "{err}"
            );
            assert!(!err.contains(short), "{err}");
        }
        let sixteen = format!("{short}y");
        let out = statecast(&[option, &sixteen, "--print-config"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}
