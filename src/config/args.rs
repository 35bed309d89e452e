//! The command line: `--help`, the flags that take a value and those that
//! do not, and reading them (and `--config FILE` first, and the tokens'
//! environment variables) into a [`Config`] through [`set`].

use super::{ArgError, Config, Secret, parse_duration, set};
use super::{file, options};
use crate::server::jwt::Minting;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    /// Print the effective configuration as TOML and exit.
    PrintConfig(Box<Config>),
    Help,
    Version,
    /// `statecast token ...`: mint an HS256 token with the secret in
    /// `STATECAST_JWT_SECRET` and print it.
    Token(Box<Minting>),
    /// `statecast token --help`.
    TokenHelp,
}

/// `statecast token --help`.
pub const TOKEN_HELP: &str = "\
statecast token: print a signed token (JWT, HS256) for testing, signed with the
secret in STATECAST_JWT_SECRET

USAGE:
    statecast token [--topics LIST] [--publish LIST] [--exp DURATION]
                    [--sub NAME] [--aud AUD] [--iss ISS]

    --topics LIST     topics it may read: names, or prefixes ending in *
                      (queue,adw-state/*; * for every topic, /metrics and the
                      details of /healthz); repeatable
    --publish LIST    topics it may publish to, the same way (* also lets it
                      broadcast); repeatable
    --exp DURATION    how long it is valid [default: 1h]
    --sub NAME        who it is for, as logged
    --aud AUD         its aud, for a server with --jwt-audience AUD
    --iss ISS         its iss, for a server with --jwt-issuer ISS
";

/// The HS256 key from `STATECAST_JWT_SECRET`, held to the token rules.
pub fn jwt_secret_from_env() -> Result<Option<Secret>, ArgError> {
    let mut config = Config::default();
    read_environment(&mut config)?;
    Ok(config.jwt_secret)
}

/// The settings only the environment gives ([`options::ENVIRONMENT`]).
fn read_environment(config: &mut Config) -> Result<(), ArgError> {
    for setting in options::ENVIRONMENT {
        setting.read(config).map_err(ArgError)?;
    }
    Ok(())
}

/// Parses `statecast token`'s options (after the word `token`).
fn parse_token<I>(args: I) -> Result<Command, ArgError>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::prelude::*;

    let mut minting = Minting {
        lifetime: std::time::Duration::from_secs(3600),
        ..Minting::default()
    };
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        let name = match arg {
            Long("help") | Short('h') => return Ok(Command::TokenHelp),
            Long(name) => format!("--{name}"),
            Short(c) => format!("-{c}"),
            Value(v) => {
                return Err(ArgError(format!(
                    "token: unexpected argument {:?}; see statecast token --help",
                    v.to_string_lossy()
                )));
            }
        };
        let known = ["--topics", "--publish", "--exp", "--sub", "--aud", "--iss"];
        if !known.contains(&name.as_str()) {
            return Err(ArgError(format!(
                "token: unknown option {name}; see statecast token --help"
            )));
        }
        let value = parser
            .value()?
            .into_string()
            .map_err(|_| ArgError(format!("{name}: value is not valid UTF-8")))?;
        let at = |msg: String| ArgError(format!("{name}: {msg}"));
        match name.as_str() {
            "--topics" => minting.topics.extend(patterns(&value).map_err(at)?),
            "--publish" => minting.publish.extend(patterns(&value).map_err(at)?),
            "--exp" => minting.lifetime = parse_duration(&value).map_err(at)?,
            field => {
                if value.is_empty() {
                    return Err(at("must not be empty".into()));
                }
                let slot = match field {
                    "--sub" => &mut minting.sub,
                    "--aud" => &mut minting.aud,
                    _ => &mut minting.iss,
                };
                *slot = Some(value);
            }
        }
    }
    if minting.topics.is_empty() && minting.publish.is_empty() {
        return Err(ArgError(
            "token: a token grants nothing without --topics or --publish".into(),
        ));
    }
    Ok(Command::Token(Box::new(minting)))
}

/// A comma-separated list of topic names and prefixes ending in `*`.
fn patterns(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(|p| {
            let p = p.trim();
            let star_inside = p.find('*').is_some_and(|at| at + 1 != p.len());
            if p.is_empty() || star_inside || p.contains(char::is_whitespace) {
                Err(format!(
                    "{p:?} is not a topic name or a prefix ending in * (e.g. queue,adw-state/*)"
                ))
            } else {
                Ok(p.to_owned())
            }
        })
        .collect()
}

/// Parses the command line (without the program name). A `--config FILE`
/// is read first, wherever it stands; every other option then overrides it,
/// and repeatable ones (`--topic`, `--poll`, `--exec`) add to its lists.
pub fn parse_args<I>(args: I) -> Result<Command, ArgError>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    use lexopt::prelude::*;

    let mut args = args
        .into_iter()
        .map(Into::<std::ffi::OsString>::into)
        .peekable();
    if args.peek().is_some_and(|first| first == "token") {
        return parse_token(args.skip(1));
    }
    let mut options: Vec<(String, Option<String>)> = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next()? {
        let name = match arg {
            Long(name) => format!("--{name}"),
            Short(c) => format!("-{c}"),
            Value(v) => {
                return Err(ArgError(format!(
                    "unexpected argument {:?}; see --help",
                    v.to_string_lossy()
                )));
            }
        };
        let value = match options::find(&name) {
            // Before asking for a value: `--bogus` alone is not "missing
            // an argument", it is unknown.
            None => return Err(ArgError(format!("unknown option {name}; see --help"))),
            Some(opt) if opt.value.is_none() => None,
            Some(_) => {
                let v = parser.value()?;
                Some(
                    v.into_string()
                        .map_err(|_| ArgError(format!("{name}: value is not valid UTF-8")))?,
                )
            }
        };
        options.push((name, value));
    }

    let mut config = Config::default();
    if let Some((_, Some(path))) = options.iter().find(|(name, _)| name == "--config") {
        file::load(std::path::Path::new(path), &mut config)?;
    }
    // The environment keeps tokens off the command line, where any user
    // of the host could read them; a flag still wins.
    for opt in options::ALL {
        let Some(var) = opt.env else { continue };
        if let Ok(value) = std::env::var(var) {
            set(&mut config, opt.flag, Some(&value))
                .map_err(|e| ArgError(format!("{var}: {e}")))?;
        }
    }
    read_environment(&mut config)?;
    let mut print = false;
    for (name, value) in options {
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--print-config" => print = true,
            "--config" => {}
            _ => set(&mut config, &name, value.as_deref()).map_err(ArgError)?,
        }
    }
    Ok(if print {
        Command::PrintConfig(Box::new(config))
    } else {
        Command::Run(Box::new(config))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{file, kinds};
    use crate::server::jwt::SECRET_ENV;

    /// Every option in the table is taken by the parser, and every switch
    /// and option with a value but the command-line-only ones is named in
    /// --print-config (commented out when unset or secret), under its key.
    #[test]
    fn every_option_is_parsed_and_printed() {
        let printed = file::render(&Config::default());
        let with_tables = {
            let mut c = Config::default();
            set(&mut c, "--schema", Some("queue=q.json")).unwrap();
            set(&mut c, "--poll", Some("queue=http://h/q")).unwrap();
            set(&mut c, "--exec", Some("routes=echo []@1s")).unwrap();
            file::render(&c)
        };
        // Repeatable options are lists or tables in the file.
        let key_of = |opt: &options::Opt| match opt.flag {
            "--topic" => "topics".to_owned(),
            "--allow-origin" => "allow_origins".to_owned(),
            "--allow-host" => "allow_hosts".to_owned(),
            "--schema" => "[schema]".to_owned(),
            "--poll" => "[[poll]]".to_owned(),
            "--exec" => "[[exec]]".to_owned(),
            _ => opt.key(),
        };
        for opt in options::ALL.iter().filter(|o| !o.command_line_only()) {
            let mut config = Config::default();
            let value = opt.value.map(|_| sample(opt.flag));
            assert!(
                set(&mut config, opt.flag, value).is_ok(),
                "the parser refuses {} {value:?}",
                opt.flag
            );
            let key = key_of(opt);
            let named = printed.lines().chain(with_tables.lines()).any(|line| {
                let line = line.trim_start_matches("# ");
                line == key
                    || line.starts_with(&format!("{key} "))
                    || line.starts_with(&format!("{key}:"))
            });
            assert!(named, "--print-config does not name {key} ({})", opt.flag);
        }
        assert!(set(&mut Config::default(), "--bogus", None).is_err());
        // And the other way: every key --print-config writes is declared.
        for line in printed.lines().chain(with_tables.lines()) {
            let line = line.trim_start_matches("# ");
            let key = line.split([' ', ':']).next().unwrap_or_default();
            if key.is_empty()
                || key.starts_with(['[', '"'])
                || ["topic", "url", "command", "interval"].contains(&key)
            {
                continue;
            }
            let declared = options::ALL
                .iter()
                .any(|o| o.key() == key || format!("{}s", o.key()) == key);
            assert!(
                declared,
                "--print-config writes {key}, which no option declares"
            );
        }
    }

    /// Every option is read back from the file `--print-config` writes, to
    /// the same value: the file reader and the printout are both the
    /// option's kind, so none is left out. A token reads back unset, as it
    /// is never printed.
    #[test]
    fn every_option_reads_back_from_print_config() {
        for opt in options::ALL.iter().filter(|o| !o.command_line_only()) {
            let mut config = Config::default();
            set(&mut config, opt.flag, opt.value.map(|_| sample(opt.flag))).unwrap();
            let printed = file::render(&config);
            let mut again = Config::default();
            file::apply_text(&printed, "printed.toml", &mut again)
                .unwrap_or_else(|e| panic!("{}: {e}\n{printed}", opt.flag));
            let shown = opt.field.map(|f| (f.show)(&config));
            let secret = matches!(shown, Some(kinds::Shown::Secret { .. }));
            let expected = if secret {
                assert!(!printed.contains(sample(opt.flag)), "{} printed", opt.flag);
                file::render(&Config::default())
            } else {
                printed
            };
            assert_eq!(
                file::render(&again),
                expected,
                "{} does not read back",
                opt.flag
            );
        }
    }

    /// An option without a value is a switch, and one with a value is not:
    /// the command line reads a value for it exactly when the file wants a
    /// string rather than true or false.
    #[test]
    fn switches_are_declared_as_switches() {
        for opt in options::ALL {
            let Some(field) = opt.field else { continue };
            assert_eq!(
                opt.value.is_none(),
                field.shape == kinds::Shape::Switch,
                "{} has a value syntax that its kind does not agree with",
                opt.flag
            );
        }
    }

    /// With nothing set, `--print-config` shows the `[[poll]]`, `[[exec]]`
    /// and `[schema]` tables as commented examples, and each example, taken
    /// out of its comment, is a valid entry.
    #[test]
    fn print_config_shows_examples_of_the_tables() {
        let printed = file::render(&Config::default());
        for header in ["# [[poll]]", "# [[exec]]", "# [schema]"] {
            assert!(printed.lines().any(|l| l == header), "{header}\n{printed}");
        }
        let tables = printed.split_once("\n\n").map_or("", |(_, t)| t);
        let uncommented: String = tables
            .lines()
            .map(|l| l.trim_start_matches("# ").to_owned() + "\n")
            .collect();
        let mut config = Config::default();
        file::apply_text(&uncommented, "example.toml", &mut config).unwrap();
        assert_eq!(
            (config.polls.len(), config.execs.len(), config.schemas.len()),
            (1, 1, 1),
            "{uncommented}"
        );
    }

    /// The signed-token secret comes from the environment alone: it is not
    /// a flag, not a file key, and `--print-config` says only that it is
    /// set, and only when it is.
    #[test]
    fn the_jwt_secret_is_environment_only() {
        let key = "0123456789abcdef-jwt";
        let mut config = Config::default();
        let e = set(&mut config, "--jwt-secret", Some(key)).unwrap_err();
        assert_eq!(e, "unknown option --jwt-secret; see --help");
        let e = file::apply_text(&format!("jwt_secret = \"{key}\""), "f", &mut config);
        assert!(e.unwrap_err().0.contains("jwt_secret: unknown key"));
        assert!(!file::render(&config).contains(SECRET_ENV));
        assert!(options::ENVIRONMENT.iter().any(|e| e.var == SECRET_ENV));
        config.jwt_secret = Some(Secret::new(key));
        let printed = file::render(&config);
        assert!(printed.contains(&format!("# {SECRET_ENV} is set; not printed")));
        assert!(!printed.contains(key), "{printed}");
    }

    /// A list's key is plural (`topics = [..]`); the singular gives one
    /// item, as the flag does.
    #[test]
    fn a_list_takes_its_singular_key_too() {
        let mut config = Config::default();
        file::apply_text("topic = \"one\"\ntopics = [\"two\"]\n", "f", &mut config).unwrap();
        assert_eq!(config.topics, ["one", "two"]);
        let e = file::apply_text("topics = \"one\"", "f", &mut config).unwrap_err();
        assert!(e.0.contains("topics: expected a list"), "{e}");
    }

    /// A value each option takes.
    fn sample(flag: &str) -> &'static str {
        match flag {
            "--listen" => "127.0.0.1:1",
            "--preset" => "none",
            "--topic" => "extra",
            "--schema" => "queue=q.json",
            "--agent-program" => "aider",
            "--poll" => "queue=http://h/q",
            "--exec" => "queue=true@1s",
            "--agents-dir" | "--config" => "/tmp",
            "--github-repo" => "acme/app",
            "--redis" => "redis://127.0.0.1:6379",
            "--log-level" => "debug",
            "--allow-origin" => "https://dash.example.com",
            "--allow-host" => "dash.example.com",
            "--publish-token" | "--subscribe-token" => "0123456789abcdef0123",
            "--jwt-public-key" => "/etc/statecast/jwt.pem",
            "--jwt-audience" | "--jwt-issuer" => "dash",
            f if f.ends_with("-timeout") || f.ends_with("-interval") || f == "--drain" => "3s",
            f if f.ends_with("-bytes") || f.ends_with("-message") => "8KiB",
            _ => "7",
        }
    }
}
