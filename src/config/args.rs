//! The command line: `--help`, the flags that take a value and those that
//! do not, and reading them (and `--config FILE` first, and the tokens'
//! environment variables) into a [`Config`] through [`set`].

use super::{ArgError, Config, set};
use super::{file, options};

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    /// Print the effective configuration as TOML and exit.
    PrintConfig(Box<Config>),
    Help,
    Version,
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
    use crate::config::file;

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
            f if f.ends_with("-timeout") || f.ends_with("-interval") => "3s",
            f if f.ends_with("-bytes") || f.ends_with("-message") => "8KiB",
            _ => "7",
        }
    }
}
