//! The command provider (`--exec TOPIC=COMMAND@INTERVAL`): runs a program
//! through `sh -c` in a thread of its own and publishes its stdout when it
//! is valid JSON and differs from the last. A command never outlives its
//! timeout: its whole process group is killed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::ExecSpec;
use crate::providers::source::Source;
use crate::publisher::Publisher;
use crate::wire::json;

/// Limits for one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub max_bytes: usize,
}

/// Runs the command once; returns its stdout if it exits 0 with valid JSON.
pub fn run(command: &str, limits: Limits) -> Result<String, String> {
    let mut sh = Command::new("sh");
    // statecast's own variables carry its secrets (the publish and
    // subscribe tokens, and any added later), and a command needs none of
    // them: it gets none of them, whatever their name after the prefix.
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"STATECAST_") {
            sh.env_remove(name);
        }
    }
    let mut child = sh
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    let max = limits.max_bytes;
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("sh started without its pipes".into());
    };
    // Read both pipes while waiting, so a chatty command never blocks on a
    // full pipe; stop keeping bytes past the limit.
    let out = std::thread::spawn(move || read_capped(&mut stdout, max + 1));
    let err = std::thread::spawn(move || read_capped(&mut stderr, 4096));
    let deadline = Instant::now() + limits.timeout;
    // The group is killed while the child is still unreaped: until it is
    // reaped its pid, which names the group, cannot be given to another
    // process, so the signal cannot reach anyone else's group.
    let status = loop {
        match has_exited(child.id()) {
            Ok(true) => {
                // Anything it left running in its group goes too.
                kill_group(child.id());
                match child.wait() {
                    Ok(status) => break status,
                    Err(e) => return Err(format!("waiting for the command: {e}")),
                }
            }
            Ok(false) if Instant::now() >= deadline => {
                kill_group(child.id());
                let _ = child.wait();
                return Err(format!("timed out after {:?}; killed", limits.timeout));
            }
            Ok(false) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for the command: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        let last_line = String::from_utf8_lossy(&stderr)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| format!(": {}", l.trim()))
            .unwrap_or_default();
        return Err(format!("exited with {status}{last_line}"));
    }
    if stdout.len() > max {
        return Err(format!("output over the limit of {max} bytes"));
    }
    let (_, text) = json::canonical(&stdout).map_err(|e| format!("{e} on stdout"))?;
    Ok(text)
}

fn read_capped(reader: &mut impl Read, cap: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
            }
        }
    }
}

/// SIGKILL to the command's process group (its pid: it leads the group).
/// Whether the child has exited, leaving it unreaped (`WNOWAIT`).
fn has_exited(pid: u32) -> std::io::Result<bool> {
    let id = libc::id_t::from(pid);
    // SAFETY: siginfo_t is plain data, zeroed as waitid(2) asks for
    // WNOHANG; waitid only writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is a valid, writable siginfo_t.
    if unsafe { libc::waitid(libc::P_PID, id, &mut info, flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: waitid filled `info`; si_pid is 0 while the child runs.
    Ok(unsafe { info.si_pid() } != 0)
}

fn kill_group(pid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: killpg only sends a signal; an exited group gives ESRCH,
    // which is what we want to ignore.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// Starts one command thread. It stops when the server does.
pub fn spawn(
    spec: ExecSpec,
    limits: Limits,
    publisher: Publisher,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let source = Source {
        name: format!("exec {}", spec.topic),
        what: format!("`{}`", spec.command),
        topic: spec.topic.clone(),
        interval: spec.interval,
    };
    source.spawn(publisher, move || run(&spec.command, limits))
}

/// One `--exec` entry as a provider.
pub struct Runner {
    spec: ExecSpec,
    limits: Limits,
}

impl Runner {
    /// Every `--exec` (and `[[exec]]`), with `--exec-timeout`.
    pub fn configured(config: &crate::config::Config) -> Vec<Box<dyn super::Provider>> {
        let limits = Limits {
            timeout: config.exec_timeout,
            max_bytes: config.max_publish_bytes,
        };
        config
            .execs
            .iter()
            .map(|spec| {
                Box::new(Runner {
                    spec: spec.clone(),
                    limits,
                }) as Box<dyn super::Provider>
            })
            .collect()
    }
}

impl super::Provider for Runner {
    fn describe(&self) -> String {
        format!("exec {} <- `{}`", self.spec.topic, self.spec.command)
    }

    fn start(
        self: Box<Self>,
        publisher: Publisher,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        spawn(self.spec, self.limits, publisher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        timeout: Duration::from_secs(5),
        max_bytes: 1024,
    };

    #[test]
    fn outcomes() {
        assert_eq!(run(r#"echo '{"a": 1}'"#, LIMITS), Ok(r#"{"a":1}"#.into()));
        let err = run("echo oops >&2; exit 3", LIMITS).unwrap_err();
        assert!(
            err.contains("exit status: 3") && err.contains("oops"),
            "{err}"
        );
        assert!(
            run("echo nope", LIMITS)
                .unwrap_err()
                .contains("invalid JSON")
        );
        let big = run("head -c 5000 /dev/zero | tr '\\0' 1", LIMITS).unwrap_err();
        assert!(big.contains("limit"), "{big}");
    }

    /// A command that exits and leaves a process behind in its group: the
    /// leftover is killed, and it is killed before the command is reaped,
    /// while the group's id cannot yet name anyone else's group.
    #[test]
    fn what_a_command_leaves_running_is_killed_before_it_is_reaped() {
        let pidfile = std::env::temp_dir().join(format!("statecast-exec-{}", std::process::id()));
        let command = format!(
            "sleep 30 >/dev/null 2>&1 & echo $! > {}; echo '{{}}'",
            pidfile.display()
        );
        assert_eq!(run(&command, LIMITS), Ok("{}".into()));
        let leftover: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = std::fs::remove_file(&pidfile);
        // Killed, and reaped by init once its parent has gone: its /proc
        // entry goes, or shows it as a zombie.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat =
                std::fs::read_to_string(format!("/proc/{leftover}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                break;
            }
            assert!(Instant::now() < deadline, "left running: {stat}");
            std::thread::sleep(Duration::from_millis(10));
        }
        // `has_exited` sees an exit without reaping it.
        let mut child = Command::new("true").spawn().unwrap();
        while !has_exited(child.id()).unwrap() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
        assert!(stat.contains(") Z "), "still there, unreaped: {stat}");
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn a_hung_command_is_killed_with_what_it_started() {
        let limits = Limits {
            timeout: Duration::from_millis(200),
            ..LIMITS
        };
        let start = Instant::now();
        let err = run("sleep 30 & sleep 30; echo 1", limits).unwrap_err();
        assert!(err.contains("timed out"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
