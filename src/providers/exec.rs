//! The command provider (`--exec TOPIC=COMMAND@INTERVAL`): runs a program
//! through `sh -c` in a thread of its own and publishes its stdout when it
//! is valid JSON and differs from the last. A command never outlives its
//! timeout: its whole process group is killed, and its output is read on
//! the same deadline, so a process that left the group cannot hold the
//! thread by keeping the pipe open.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
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
    let mut child = start(command)?;
    let max = limits.max_bytes;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        kill_group(child.id());
        let _ = child.wait();
        return Err("sh started without its pipes".into());
    };
    // Both pipes are read while it runs, so a chatty command never blocks
    // on a full pipe; bytes past the limit are not kept.
    let mut out = Pipe::new(stdout, max.saturating_add(1));
    let mut err = Pipe::new(stderr, 4096);
    // The group is killed while the child is still unreaped: until it is
    // reaped its pid, which names the group, cannot be given to another
    // process, so the signal cannot reach anyone else's group.
    if let Err(e) = drain(&child, &mut out, &mut err, limits.timeout) {
        kill_group(child.id());
        let _ = child.wait();
        return Err(e);
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the command: {e}"))?;
    let (stdout, stderr) = (out.kept, err.kept);
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

/// Starts `sh -c command` in a process group of its own, so a timeout
/// kills what it started too.
fn start(command: &str) -> Result<Child, String> {
    let mut sh = Command::new("sh");
    // statecast's own variables carry its secrets (the publish and
    // subscribe tokens, and any added later), and a command needs none of
    // them: it gets none of them, whatever their name after the prefix.
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"STATECAST_") {
            sh.env_remove(name);
        }
    }
    sh.args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))
}

/// Reads both pipes until the command has exited and both are closed;
/// its group is killed as soon as it exits, before it is reaped. An error
/// (the timeout among them) leaves the child for the caller to kill and
/// reap.
fn drain(child: &Child, out: &mut Pipe, err: &mut Pipe, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut exited = false;
    loop {
        if !exited {
            exited = has_exited(child.id()).map_err(|e| format!("waiting for the command: {e}"))?;
            if exited {
                // Anything it left running in its group goes too.
                kill_group(child.id());
            }
        }
        if exited && out.is_closed() && err.is_closed() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            // A process that left the group (`setsid`) outlives the kill
            // and can hold the pipes open for ever: the read is bounded
            // by the same deadline as the run, and its output dropped.
            return Err(if exited {
                format!(
                    "timed out after {timeout:?}: the command exited, but something it started \
                     outside its process group (setsid?) still holds its output open"
                )
            } else {
                format!("timed out after {timeout:?}; killed")
            });
        }
        // While it runs, its exit is looked for every few milliseconds;
        // once it has exited, only its output is waited for.
        let left = deadline.saturating_duration_since(now);
        let wait = if exited {
            left
        } else {
            left.min(Duration::from_millis(5))
        };
        read_ready(&mut [&mut *out, &mut *err], wait)
            .map_err(|e| format!("reading the command's output: {e}"))?;
    }
}

/// One of the command's output pipes, and what was read from it.
struct Pipe {
    /// `None` once it reached end of file (or failed).
    file: Option<File>,
    /// What was read, up to `cap` bytes.
    kept: Vec<u8>,
    cap: usize,
}

impl Pipe {
    fn new(pipe: impl Into<OwnedFd>, cap: usize) -> Pipe {
        Pipe {
            file: Some(File::from(pipe.into())),
            kept: Vec::new(),
            cap,
        }
    }

    fn is_closed(&self) -> bool {
        self.file.is_none()
    }

    /// One read, after poll(2) said it would not block: bytes, or the end.
    fn read_once(&mut self) {
        let Some(file) = &mut self.file else { return };
        let mut buf = [0u8; 8192];
        match file.read(&mut buf) {
            Ok(0) => self.file = None,
            Ok(n) => {
                let room = self.cap.saturating_sub(self.kept.len());
                self.kept
                    .extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => self.file = None,
        }
    }
}

/// Waits at most `wait` for any open pipe to have bytes or its end, and
/// reads once from each that has. Nothing here blocks past `wait`, so the
/// deadline holds whoever keeps the pipes open.
fn read_ready(pipes: &mut [&mut Pipe], wait: Duration) -> std::io::Result<()> {
    let mut fds: Vec<libc::pollfd> = pipes
        .iter()
        .filter_map(|p| p.file.as_ref())
        .map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Rounded up, so a wait under a millisecond does not spin.
    let ms = libc::c_int::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
    let nfds = libc::nfds_t::try_from(fds.len()).unwrap_or_default();
    // SAFETY: `fds` is a live array of `nfds` pollfd structs, which poll
    // only writes `revents` into.
    if unsafe { libc::poll(fds.as_mut_ptr(), nfds, ms) } < 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            std::io::ErrorKind::Interrupted => Ok(()),
            _ => Err(e),
        };
    }
    let open = pipes.iter_mut().filter(|p| p.file.is_some());
    for (pipe, fd) in open.zip(&fds) {
        if fd.revents != 0 {
            pipe.read_once();
        }
    }
    Ok(())
}

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

/// SIGKILL to the command's process group (its pid: it leads the group).
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
        what: format!("`{}`", crate::config::redacted_urls(&spec.command)),
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
        let command = crate::config::redacted_urls(&self.spec.command);
        format!("exec {} <- `{command}`", self.spec.topic)
    }

    fn origin(&self) -> String {
        self.spec.origin.clone()
    }

    fn topics(&self) -> Vec<String> {
        vec![self.spec.topic.clone()]
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
