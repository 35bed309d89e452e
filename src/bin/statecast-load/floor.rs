//! The kernel floor: a child process that `write()`s the same frame to as
//! many loopback sockets, read by the same kind of reader, back to back and
//! at the run's own pacing.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::measure::percentile;
use crate::options::Options;
use crate::target::{Target, pinned, process_cpu_ns};

/// The floor process: accepts N plain TCP connections, then for each round
/// read from stdin writes the frame to every socket, one `write()` per
/// delivery (or `batch` frames per write), and reports its CPU time.
pub(crate) fn floor_child() -> io::Result<()> {
    let listener = StdListener::bind("127.0.0.1:0")?;
    let mut out = io::stdout();
    writeln!(out, "{}", listener.local_addr()?)?;
    out.flush()?;
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    let header = lines.next().ok_or_else(|| io::Error::other("no setup"))??;
    let mut parts = header
        .split_whitespace()
        .map(|p| p.parse::<usize>().unwrap_or(0));
    let (n, frame_len) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let (s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        sockets.push(s);
    }
    let frame = vec![b'f'; frame_len];
    writeln!(out, "ready")?;
    out.flush()?;
    for line in lines {
        let line = line?;
        let batch: usize = line.trim().parse().unwrap_or(1);
        let burst = frame.repeat(batch);
        let cpu = process_cpu_ns();
        let start = Instant::now();
        for s in &mut sockets {
            s.write_all(&burst)?;
        }
        let wall = start.elapsed().as_nanos();
        writeln!(out, "{} {}", process_cpu_ns() - cpu, wall)?;
        out.flush()?;
    }
    Ok(())
}

pub(crate) struct Floor {
    /// CPU ns per write of one frame, one write per delivery.
    pub(crate) per_write_ns: f64,
    /// CPU ns per delivered frame when 10 frames go in one write.
    pub(crate) batched_ns: f64,
    /// Wall time to write the frame once to every socket.
    pub(crate) round_wall_ns: f64,
    /// Wall time until this process has read that frame from every socket:
    /// the floor's publish-to-last-client latency, with the same reader.
    pub(crate) round_delivered_ns: f64,
    /// p50 and p99 latency in us when rounds come at the run's rate, and
    /// the CPU ns per write at that pacing (caches cool between rounds,
    /// as they do for the server).
    pub(crate) paced_us: Option<(u32, u32, f64)>,
}

/// The floor process and this side's sockets to it.
struct FloorRun {
    /// Killed on every way out, so an error never leaves it behind.
    child: Target,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The same kind of reader as the server's clients: mio, large reads.
    poll: Poll,
    sockets: Vec<TcpStream>,
    frame_len: usize,
}

impl FloorRun {
    /// Starts the floor process on the server's CPU and connects to it.
    fn start(o: &Options, frame_len: usize) -> io::Result<FloorRun> {
        let exe = std::env::current_exe()?;
        let process = pinned(o.server_cpu, &exe.to_string_lossy())
            .arg("--floor-child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut child = Target {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid: None,
            child: Some(process),
            cpu_stat: None,
            inproc: None,
        };
        let process = child.child.as_mut().expect("spawned");
        let stdin = process.stdin.take().expect("piped");
        let stdout = BufReader::new(process.stdout.take().expect("piped"));
        let mut run = FloorRun {
            child,
            stdin,
            stdout,
            poll: Poll::new()?,
            sockets: Vec::with_capacity(o.connections),
            frame_len,
        };
        let addr: SocketAddr = run
            .read_line()?
            .trim()
            .parse()
            .map_err(|_| io::Error::other("floor child gave no address"))?;
        writeln!(run.stdin, "{} {frame_len}", o.connections)?;
        run.stdin.flush()?;
        for i in 0..o.connections {
            let std = StdStream::connect(addr)?;
            std.set_nonblocking(true)?;
            let mut s = TcpStream::from_std(std);
            run.poll
                .registry()
                .register(&mut s, Token(i), Interest::READABLE)?;
            run.sockets.push(s);
        }
        // "ready"
        run.read_line()?;
        Ok(run)
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line)
    }

    /// `rounds` back-to-back rounds of `batch` frames per write: CPU ns per
    /// frame, and wall ns per round to write it and until it was all read.
    fn rounds(&mut self, batch: usize, rounds: usize) -> io::Result<(f64, f64, f64)> {
        let (mut cpu, mut wall, mut delivered) = (0u64, 0u64, 0u64);
        for _ in 0..rounds {
            let expect = (self.sockets.len() * self.frame_len * batch) as u64;
            let start = Instant::now();
            writeln!(self.stdin, "{batch}")?;
            self.stdin.flush()?;
            drain(&mut self.poll, &mut self.sockets, expect)?;
            delivered += start.elapsed().as_nanos() as u64;
            let line = self.read_line()?;
            let mut p = line
                .split_whitespace()
                .map(|v| v.parse::<u64>().unwrap_or(0));
            cpu += p.next().unwrap_or(0);
            wall += p.next().unwrap_or(0);
        }
        let writes = (self.sockets.len() * rounds * batch) as f64;
        let per_round = |total: u64| total as f64 / (rounds * batch) as f64;
        Ok((cpu as f64 / writes, per_round(wall), per_round(delivered)))
    }

    /// Rounds at the run's pacing: p50 and p99 latency in us, and CPU ns
    /// per write.
    fn paced(&mut self, interval: Duration, rounds: usize) -> io::Result<(u32, u32, f64)> {
        let mut latencies = paced_floor(
            &mut self.poll,
            &mut self.sockets,
            &mut self.stdin,
            interval,
            rounds,
            self.frame_len,
        )?;
        let mut cpu = 0u64;
        for _ in 0..rounds {
            let line = self.read_line()?;
            cpu += line
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        latencies.sort_unstable();
        let per_write = cpu as f64 / (rounds * self.sockets.len()) as f64;
        Ok((
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            per_write,
        ))
    }

    /// Closes the floor's stdin, which ends it, and waits for it.
    fn finish(self) {
        let FloorRun {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        if let Some(mut process) = child.child.take() {
            let _ = process.wait();
        }
    }
}

/// Measures the floor for `o.connections` sockets and frames of
/// `frame_len` bytes, warmed up as the server's clients were.
pub(crate) fn measure_floor(o: &Options, frame_len: usize) -> io::Result<Floor> {
    let mut run = FloorRun::start(o, frame_len)?;
    if o.warmup > 0 {
        run.rounds(1, o.warmup)?;
    }
    let (per_write_ns, round_wall_ns, round_delivered_ns) = run.rounds(1, 20)?;
    let (batched_ns, _, _) = run.rounds(10, 20)?;
    let paced_us = if o.rate > 0.0 {
        let interval = Duration::from_secs_f64(1.0 / o.rate);
        Some(run.paced(interval, o.messages.clamp(1, 30))?)
    } else {
        None
    };
    run.finish();
    Ok(Floor {
        per_write_ns,
        batched_ns,
        round_wall_ns,
        round_delivered_ns,
        paced_us,
    })
}

/// The floor's latency under the run's own pacing: a round (one frame to
/// every socket) is started every `interval`, whether or not the reader
/// has caught up, exactly as publishes arrive at the server, and every
/// frame's latency is taken from its round's start to its arrival here.
pub(crate) fn paced_floor(
    poll: &mut Poll,
    sockets: &mut [TcpStream],
    stdin: &mut ChildStdin,
    interval: Duration,
    rounds: usize,
    frame_len: usize,
) -> io::Result<Vec<u32>> {
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 256 << 10];
    let mut received = vec![0usize; sockets.len()];
    let mut starts: Vec<Instant> = Vec::with_capacity(rounds);
    let mut latencies = Vec::with_capacity(sockets.len() * rounds);
    let total = sockets.len() * rounds;
    let begin = Instant::now();
    while latencies.len() < total {
        let now = Instant::now();
        if starts.len() < rounds && now >= begin + interval * starts.len() as u32 {
            writeln!(stdin, "1")?;
            stdin.flush()?;
            starts.push(Instant::now());
        }
        let timeout = if starts.len() < rounds {
            (begin + interval * starts.len() as u32).saturating_duration_since(Instant::now())
        } else {
            Duration::from_secs(10)
        };
        poll.poll(&mut events, Some(timeout))?;
        if events.is_empty() && starts.len() == rounds {
            return Err(io::Error::other("floor: no data for 10 s"));
        }
        for event in events.iter() {
            let i = event.token().0;
            loop {
                match sockets[i].read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let at = Instant::now();
                        let before = received[i] / frame_len;
                        received[i] += n;
                        let after = received[i] / frame_len;
                        for start in &starts[before..after] {
                            latencies.push(at.duration_since(*start).as_micros() as u32);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(latencies)
}

pub(crate) fn drain(poll: &mut Poll, sockets: &mut [TcpStream], expect: u64) -> io::Result<()> {
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    while got < expect {
        poll.poll(&mut events, Some(Duration::from_secs(10)))?;
        if events.is_empty() {
            return Err(io::Error::other("floor: no data for 10 s"));
        }
        for event in events.iter() {
            let s = &mut sockets[event.token().0];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}
