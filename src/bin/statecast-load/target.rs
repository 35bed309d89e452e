//! The server under test (a process of its own, or a thread in this one)
//! and the CPU and memory figures read from it.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use crate::options::Options;

pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) pid: Option<u32>,
    pub(crate) child: Option<Child>,
    /// `schedstat` of the server's loop thread, for its CPU time.
    pub(crate) cpu_stat: Option<String>,
    /// Set when the server runs in this process (`--publish inproc`).
    pub(crate) inproc: Option<statecast::Publisher>,
}

/// Both sides' CPU clocks at one instant, the start of a measured phase.
pub(crate) struct CpuMark {
    pub(crate) server: Option<u64>,
    pub(crate) own: u64,
}

impl Target {
    pub(crate) fn server_cpu_ns(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.cpu_stat.as_ref()?).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    /// How many times the server's loop thread has gone to sleep (its
    /// voluntary context switches): each one is a wake-up that whoever
    /// sends it the next event pays for. Same file family as `cpu_stat`.
    pub(crate) fn server_sleeps(&self) -> Option<u64> {
        let path = self.cpu_stat.as_ref()?.replace("schedstat", "status");
        let text = std::fs::read_to_string(path).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
            .trim()
            .parse()
            .ok()
    }

    pub(crate) fn cpu_mark(&self) -> CpuMark {
        CpuMark {
            server: self.server_cpu_ns(),
            own: own_cpu_ns(),
        }
    }

    /// CPU ns spent since `mark` by the server's loop thread and by this
    /// process; an in-process server's thread is not the generator's work.
    pub(crate) fn cpu_since(&self, mark: &CpuMark) -> (Option<u64>, u64) {
        let server = match (self.server_cpu_ns(), mark.server) {
            (Some(after), Some(before)) => Some(after - before),
            _ => None,
        };
        let own =
            (own_cpu_ns() - mark.own).saturating_sub(self.inproc.as_ref().and(server).unwrap_or(0));
        (server, own)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(publisher) = &self.inproc {
            let _ = publisher.shutdown();
        }
        if let Some(child) = &mut self.child {
            // A second SIGTERM ends statecast's drain at once: a run's
            // figures are taken, nothing waits on its clients' goodbyes.
            for _ in 0..2 {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                std::thread::sleep(std::time::Duration::from_millis(100));
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
            }
            let _ = child.wait();
        }
    }
}

/// `taskset -c CPU` when available, so server and generator do not share a core.
pub(crate) fn pinned(cpu: usize, program: &str) -> Command {
    if std::path::Path::new("/usr/bin/taskset").exists() {
        let mut c = Command::new("/usr/bin/taskset");
        c.args(["-c", &cpu.to_string(), program]);
        c
    } else {
        Command::new(program)
    }
}

pub(crate) fn start_target(o: &Options) -> io::Result<Target> {
    if let Some(addr) = o.server {
        return Ok(Target {
            addr,
            pid: o.server_pid,
            child: None,
            cpu_stat: o.server_pid.map(|p| format!("/proc/{p}/schedstat")),
            inproc: None,
        });
    }
    let binary = match &o.spawn {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .with_file_name("statecast")
            .to_string_lossy()
            .into_owned(),
    };
    // The dashboards run serves the ADW topics, schemas checked, as a
    // deployment would; the others one topic of their own.
    let topics: &[&str] = if o.dashboards > 0 {
        &["--preset", "adw"]
    } else {
        &["--preset", "none", "--topic", "load"]
    };
    let mut child = pinned(o.server_cpu, &binary)
        .args(["--listen", "127.0.0.1:0"])
        .args(topics)
        .args(["--log-level", "info", "--max-publish-bytes", "4MiB"])
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::other(format!("spawning {binary}: {e}")))?;
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if stderr.read_line(&mut line)? == 0 {
            return Err(io::Error::other("server exited before listening"));
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or_default();
            break addr
                .parse()
                .map_err(|_| io::Error::other(format!("bad address in {line:?}")))?;
        }
    };
    // Keep draining the server's log (warns about slow consumers).
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("WARN") && !line.contains("slow consumer") {
                eprintln!("server: {line}");
            }
        }
    });
    Ok(Target {
        addr,
        pid: Some(child.id()),
        cpu_stat: Some(format!("/proc/{}/schedstat", child.id())),
        child: Some(child),
        inproc: None,
    })
}

/// Runs the server in a thread of this process, pinned to the server's CPU,
/// and publishes through its `Publisher`. Both ends of every connection
/// are then in this process, so it holds at most half the file limit.
pub(crate) fn start_inproc(o: &Options) -> io::Result<Target> {
    let config = statecast::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        preset: statecast::Preset::None,
        topics: vec!["load".into()],
        max_publish_bytes: 4 << 20,
        ..statecast::Config::default()
    };
    let server = statecast::Server::bind(config)?;
    let addr = server.local_addr()?;
    let publisher = server.publisher();
    let (tx, rx) = std::sync::mpsc::channel();
    let cpu = o.server_cpu;
    std::thread::Builder::new()
        .name("server".into())
        .spawn(move || {
            let tid = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| p.file_name()?.to_str()?.parse::<u32>().ok());
            if let (Some(tid), true) = (tid, std::path::Path::new("/usr/bin/taskset").exists()) {
                let _ = Command::new("/usr/bin/taskset")
                    .args(["-pc", &cpu.to_string(), &tid.to_string()])
                    .stdout(Stdio::null())
                    .status();
            }
            let _ = tx.send(tid);
            if let Err(e) = server.run() {
                eprintln!("statecast-load: in-process server failed: {e}");
            }
        })?;
    let tid = rx
        .recv()
        .map_err(|_| io::Error::other("the in-process server did not start"))?;
    Ok(Target {
        addr,
        pid: None,
        child: None,
        cpu_stat: tid.map(|t| format!("/proc/self/task/{t}/schedstat")),
        inproc: Some(publisher),
    })
}

/// CPU time of this process in ns, exact to the moment of the call.
/// `/proc/self/schedstat` would do for long spans, but it is only brought up
/// to date at scheduler ticks, which for a floor round of a few
/// milliseconds is an error of tens of percent.
pub(crate) fn process_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of this whole process (all threads) in ns.
pub(crate) fn own_cpu_ns() -> u64 {
    let mut total = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
