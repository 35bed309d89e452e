//! Publishing: over HTTP keep-alive (paced or pipelined) or through an
//! in-process `Publisher`, on one schedule that stamps each payload with
//! its send time.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::measure::now_ns;
use crate::options::Options;
use crate::tls;

pub(crate) struct PublishReport {
    pub(crate) sent: usize,
    pub(crate) elapsed: Duration,
}

/// Publishes over one keep-alive connection. Paced: one request at a time,
/// each sent at its scheduled instant. Burst: requests are pipelined, a
/// reader thread counting the responses, so the server sees many publishes
/// per turn, as it would from many producers.
pub(crate) fn publisher(
    addr: SocketAddr,
    o: &Options,
    stop: Arc<AtomicBool>,
) -> io::Result<PublishReport> {
    let path = if o.event {
        "/api/v1/broadcast"
    } else {
        "/api/v1/publish/load"
    };
    if tls::on() {
        return publish_paced(addr, o, &stop, path);
    }
    let mut stream = StdStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut reader = Some(BufReader::new(stream.try_clone()?));
    let responses = if o.rate <= 0.0 {
        let messages = o.messages;
        let mut reader = reader.take().expect("reader");
        Some(std::thread::spawn(move || -> io::Result<()> {
            for _ in 0..messages {
                read_response(&mut reader)?;
            }
            Ok(())
        }))
    } else {
        None
    };
    let mut request = Vec::with_capacity(o.payload + 200);
    let start = Instant::now();
    let report = schedule(o, &stop, |data| {
        publish_request(&mut request, o, path, data)?;
        stream.write_all(&request)?;
        match reader.as_mut() {
            Some(reader) => read_response(reader).map(drop),
            None => Ok(()),
        }
    })?;
    if let Some(responses) = responses {
        responses
            .join()
            .map_err(|_| io::Error::other("response reader panicked"))??;
    }
    // A pipelined publish counts once the server has answered it.
    Ok(PublishReport {
        elapsed: start.elapsed(),
        ..report
    })
}

/// A publish of `data` to `path` as an HTTP request, into `request`.
fn publish_request(request: &mut Vec<u8>, o: &Options, path: &str, data: String) -> io::Result<()> {
    let body = if o.event {
        format!(r#"{{"type":"load","data":{data}}}"#)
    } else {
        data
    };
    request.clear();
    write!(
        request,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Under `--tls`: one request at a time on one keep-alive connection, each
/// answered before the next (a TLS stream has no second handle for a
/// reader thread, so pipelined publishing is left to plain HTTP).
fn publish_paced(
    addr: SocketAddr,
    o: &Options,
    stop: &AtomicBool,
    path: &str,
) -> io::Result<PublishReport> {
    if o.rate <= 0.0 {
        return Err(io::Error::other(
            "--tls publishes one at a time: give --rate above 0",
        ));
    }
    let mut conn = BufReader::new(tls::dial(addr)?);
    let mut request = Vec::with_capacity(o.payload + 200);
    schedule(o, stop, |data| {
        publish_request(&mut request, o, path, data)?;
        conn.get_mut().write_all(&request)?;
        conn.get_mut().flush()?;
        read_response(&mut conn).map(drop)
    })
}

/// Reads `stream` to its end; a TLS peer that closes without
/// `close_notify` has still said all it had to.
fn read_to_end(stream: &mut dyn tls::Stream) -> io::Result<String> {
    let mut all = Vec::new();
    match stream.read_to_end(&mut all) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&all).into_owned())
}

/// Publishes through an in-process `Publisher`, paced or as fast as it goes.
pub(crate) fn publish_inproc(
    p: &statecast::Publisher,
    o: &Options,
    stop: Arc<AtomicBool>,
) -> io::Result<PublishReport> {
    schedule(o, &stop, |data| {
        let result = if o.event {
            let raw = serde_json::value::RawValue::from_string(data).map_err(io::Error::other)?;
            p.event("load", &raw)
        } else {
            p.publish_json("load", &data)
        };
        result.map_err(io::Error::other)
    })
}

/// The publishing schedule both paths share: `--messages` payloads, each
/// stamped with its send time, one every `1/--rate` seconds or back to
/// back, handed to `send`.
pub(crate) fn schedule(
    o: &Options,
    stop: &AtomicBool,
    mut send: impl FnMut(String) -> io::Result<()>,
) -> io::Result<PublishReport> {
    let pad = "x".repeat(o.payload.saturating_sub(40));
    let filler = format!(r#""p":"{pad}"}}"#);
    // The fixture's object, opened up so the index and time go first.
    let body = if o.history {
        let fixture = statecast::providers::demo::history_fixture(50, 7).to_string();
        fixture[1..].to_owned()
    } else {
        filler
    };
    let interval = (o.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / o.rate));
    let start = Instant::now();
    let mut sent = 0;
    for i in 0..o.messages {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(interval) = interval {
            let due = start + interval * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        send(format!(r#"{{"i":{i},"t":{},{body}"#, now_ns()))?;
        sent += 1;
    }
    Ok(PublishReport {
        sent,
        elapsed: start.elapsed(),
    })
}

/// Reads one HTTP response: its body, or an error (with the body) unless
/// it is a 200.
pub(crate) fn read_response(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(io::Error::other(format!(
            "publish refused: {} {}",
            status.trim_end(),
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(body)
}

/// What the server says compression cost it: messages compressed, and
/// microseconds per message; `None` before the first.
pub(crate) fn compression(addr: SocketAddr) -> Option<(f64, f64)> {
    let seconds = metric(addr, "statecast_compress_seconds_total").ok()?;
    let messages = metric(addr, "statecast_compressed_messages_total").ok()?;
    (messages > 0.0).then(|| (messages, seconds * 1e6 / messages))
}

/// The value of an unlabelled sample in the server's `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> io::Result<f64> {
    let mut stream = tls::dial(addr)?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let response = read_to_end(&mut *stream)?;
    response
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .ok_or_else(|| io::Error::other(format!("{name} not in /metrics")))
}

/// One POST on its own connection, for set-up.
pub(crate) fn http_post(addr: SocketAddr, path: &str, body: &str) -> io::Result<()> {
    let mut stream = tls::dial(addr)?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    let response = read_to_end(&mut *stream)?;
    if !response.starts_with("HTTP/1.1 200") {
        return Err(io::Error::other(format!(
            "set-up publish refused: {response}"
        )));
    }
    Ok(())
}
