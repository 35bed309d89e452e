//! TLS served by the loop itself (`--tls-cert`, `--tls-key`, in a build
//! with `--features tls`): [`Certs`], the certificate pair, loaded at start
//! and again on SIGHUP or when either file changes, a pair that fails to
//! load leaving the old one serving; and [`Session`], one connection's
//! rustls state, which its reads and writes go through. rustls does no I/O
//! of its own, so its records travel on the connection's socket, read and
//! written by the loop like any other bytes.
//!
//! Without the feature both types are empty enums: no connection has a
//! session, and asking for TLS is refused at start, naming the feature.

use std::io;
use std::path::Path;

use crate::config::Config;

/// What a plain-HTTP request to a TLS port is told, with a 400.
pub const PLAIN_REFUSAL: &str = "this port speaks TLS (https://)";

/// What one read from a TLS connection's socket came to.
#[derive(Debug)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub enum Input {
    /// `n` bytes were read; the plaintext they carried, if any, was
    /// appended to the input.
    Data(usize),
    WouldBlock,
    /// The peer closed its side (or sent `close_notify`).
    Eof,
    /// The first bytes are not a TLS handshake: plain HTTP, most likely.
    NotTls,
    Failed(io::Error),
}

/// `--tls-cert` and `--tls-key`, both or neither; `None` for plain HTTP.
fn pair(config: &Config) -> Result<Option<(&Path, &Path)>, String> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(_), None) => Err("--tls-cert needs --tls-key, the certificate's private key".into()),
        (None, Some(_)) => Err("--tls-key needs --tls-cert, the key's certificate".into()),
    }
}

#[cfg(feature = "tls")]
pub use on::{Certs, Session, Writer};

#[cfg(not(feature = "tls"))]
pub use off::{Certs, Session, Writer};

#[cfg(feature = "tls")]
mod on {
    use std::io::{self, IoSlice, Read, Write};
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};

    use log::{info, warn};
    use mio::net::TcpStream;
    use rustls::ServerConfig;
    use rustls::pki_types::pem::{self, PemObject};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use crate::config::Config;
    use crate::server::sock::Sender;
    use crate::server::tls::{Input, pair};
    use crate::topic::adw::rfc3339;

    /// How often the certificate files are looked at for a change:
    /// certbot's renewal swaps them (a rename, a symlink moved) weeks
    /// before expiry, so a few seconds is prompt, and a `stat` of two files
    /// costs nothing.
    pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

    /// The first byte of every TLS connection: a handshake record's type.
    const HANDSHAKE_RECORD: u8 = 0x16;

    /// Bytes a session holds encrypted and unsent before its writer pushes
    /// back: the queue, held to `--max-queue-bytes`, keeps the rest.
    const BUFFER_LIMIT: usize = 64 << 10;

    /// One connection's TLS state.
    pub struct Session {
        conn: rustls::ServerConnection,
        /// Whether its first bytes came, and were a handshake.
        started: bool,
    }

    impl std::fmt::Debug for Session {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Session")
                .field("handshaking", &self.conn.is_handshaking())
                .finish()
        }
    }

    impl Session {
        /// One read from `stream`: the records go into the session, the
        /// plaintext they carry onto `plain`, and what the session has to
        /// say back (the handshake's next flight, an alert) goes out.
        pub fn receive(
            &mut self,
            stream: &TcpStream,
            scratch: &mut [u8],
            plain: &mut Vec<u8>,
        ) -> Input {
            let n = loop {
                match (&*stream).read(scratch) {
                    Ok(0) => return Input::Eof,
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Input::WouldBlock,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Input::Failed(e),
                }
            };
            let mut records = scratch.get(..n).unwrap_or_default();
            if !self.started {
                if records.first() != Some(&HANDSHAKE_RECORD) {
                    return Input::NotTls;
                }
                self.started = true;
            }
            while !records.is_empty() {
                match self.conn.read_tls(&mut records) {
                    // Only after the peer's close_notify.
                    Ok(0) => return Input::Eof,
                    Ok(_) => {}
                    Err(e) => return Input::Failed(e),
                }
                if let Err(e) = self.conn.process_new_packets() {
                    // rustls queued an alert saying why: it goes if it can.
                    let _ = self.send(stream);
                    return Input::Failed(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                // Plaintext is drained each time, so the session's buffer
                // never fills and `read_tls` never refuses.
                match self.conn.reader().read_to_end(plain) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Input::Failed(e),
                }
            }
            match self.send(stream) {
                Ok(_) => Input::Data(n),
                Err(e) => Input::Failed(e),
            }
        }

        /// Sends the session's records until the socket takes no more.
        /// Returns whether some are left: the next WRITABLE edge sends them.
        pub fn send(&mut self, stream: &TcpStream) -> io::Result<bool> {
            while self.conn.wants_write() {
                match self.conn.write_tls(&mut Sender(stream)) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(false)
        }

        /// Whether records wait to be sent.
        pub fn wants_write(&self) -> bool {
            self.conn.wants_write()
        }

        /// Queues `close_notify`, the TLS end of the stream, before the
        /// write side is shut.
        pub fn close_notify(&mut self) {
            self.conn.send_close_notify();
        }

        /// A writer that encrypts into the session and sends what the
        /// socket takes.
        pub fn writer<'a>(&'a mut self, stream: &'a TcpStream) -> Writer<'a> {
            Writer {
                session: self,
                stream,
            }
        }
    }

    /// The queue's writer on a TLS connection: what it takes is encrypted,
    /// and sent as far as the socket allows.
    pub struct Writer<'a> {
        session: &'a mut Session,
        stream: &'a TcpStream,
    }

    impl Write for Writer<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            // Records already waiting go first, to make room.
            let blocked = self.session.send(self.stream)?;
            let taken = self.session.conn.writer().write_vectored(bufs)?;
            if !blocked {
                self.session.send(self.stream)?;
            }
            if taken == 0 {
                // The session's buffer is full and the socket takes nothing.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(taken)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A certificate pair as loaded.
    struct Loaded {
        config: Arc<ServerConfig>,
        /// The leaf certificate's serial, in hex, for the log.
        serial: String,
        /// Its notAfter, in seconds since the Unix epoch.
        not_after: i64,
    }

    /// What a file looked like when last loaded or tried: a rename or a
    /// symlink swap changes the inode (the path is followed) or the final
    /// target; a rewrite in place, the modification time or size.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Stamp {
        dev: u64,
        ino: u64,
        mtime: (i64, i64),
        len: u64,
        target: Option<PathBuf>,
    }

    fn stamp(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            len: meta.len(),
            target: std::fs::canonicalize(path).ok(),
        })
    }

    /// The certificate pair new connections are served with, and how it is
    /// kept current.
    pub struct Certs {
        cert: PathBuf,
        key: PathBuf,
        loaded: Loaded,
        /// Both files as they were when last loaded or tried.
        stamps: [Option<Stamp>; 2],
        /// When the files are next looked at.
        next_look: Instant,
        /// Reloads that took, and that failed.
        reloads: (u64, u64),
    }

    impl std::fmt::Debug for Certs {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Certs")
                .field("cert", &self.cert)
                .field("not_after", &self.loaded.not_after)
                .finish()
        }
    }

    impl Certs {
        /// The pair the configuration names, loaded; `None` without one.
        /// An error names the file and why, never the key's bytes.
        pub fn from_config(config: &Config) -> Result<Option<Certs>, String> {
            let Some((cert, key)) = pair(config)? else {
                return Ok(None);
            };
            let stamps = [stamp(cert), stamp(key)];
            let loaded = load(cert, key)?;
            info!(
                "TLS: serving {} (serial {}, expires {})",
                cert.display(),
                loaded.serial,
                when(loaded.not_after)
            );
            Ok(Some(Certs {
                cert: cert.to_owned(),
                key: key.to_owned(),
                loaded,
                stamps,
                next_look: Instant::now() + WATCH_INTERVAL,
                reloads: (0, 0),
            }))
        }

        /// A session for a new connection, with the pair loaded last.
        pub fn session(&self) -> Result<Session, String> {
            let mut conn = rustls::ServerConnection::new(self.loaded.config.clone())
                .map_err(|e| e.to_string())?;
            conn.set_buffer_limit(Some(BUFFER_LIMIT));
            Ok(Session {
                conn,
                started: false,
            })
        }

        /// The certificate's notAfter, in seconds since the Unix epoch.
        pub fn not_after(&self) -> i64 {
            self.loaded.not_after
        }

        /// Reloads that took, and that failed.
        pub fn reloads(&self) -> (u64, u64) {
            self.reloads
        }

        /// Loads the pair again (SIGHUP, or a file changed): new
        /// connections get it, open ones keep theirs. A pair that fails
        /// leaves the old one serving, and says why.
        pub fn reload(&mut self, why: &str) {
            self.stamps = [stamp(&self.cert), stamp(&self.key)];
            match load(&self.cert, &self.key) {
                Ok(loaded) => {
                    info!(
                        "TLS: reloaded {} ({why}): serial {}, expires {}",
                        self.cert.display(),
                        loaded.serial,
                        when(loaded.not_after)
                    );
                    self.loaded = loaded;
                    self.reloads.0 += 1;
                }
                Err(e) => {
                    warn!(
                        "TLS: not reloaded ({why}): {e}; still serving serial {}, which expires {}",
                        self.loaded.serial,
                        when(self.loaded.not_after)
                    );
                    self.reloads.1 += 1;
                }
            }
        }

        /// Every [`WATCH_INTERVAL`], reloads if either file changed since
        /// it was last loaded or tried (so a broken pair warns once).
        pub fn watch(&mut self, now: Instant) {
            if now < self.next_look {
                return;
            }
            self.next_look = now + WATCH_INTERVAL;
            if [stamp(&self.cert), stamp(&self.key)] != self.stamps {
                self.reload("a file changed");
            }
        }
    }

    /// An instant as RFC 3339, for the log.
    fn when(unix: i64) -> String {
        let at = u64::try_from(unix).unwrap_or_default();
        rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(at))
    }

    /// Why a PEM file could not be read, in words that never quote it: a
    /// key file's lines are the key.
    fn pem_error(e: pem::Error) -> String {
        match e {
            pem::Error::Io(e) => e.to_string(),
            pem::Error::NoItemsFound => "no PEM section of the expected kind in it".into(),
            _ => "not valid PEM".into(),
        }
    }

    fn load(cert: &Path, key: &Path) -> Result<Loaded, String> {
        let named = |flag: &str, path: &Path, e: &str| format!("{flag} {}: {e}", path.display());
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| named("--tls-cert", cert, &pem_error(e)))?;
        let Some(leaf) = chain.first() else {
            return Err(named("--tls-cert", cert, "no CERTIFICATE in it"));
        };
        let Some((serial, not_after)) = x509::serial_and_not_after(leaf) else {
            return Err(named("--tls-cert", cert, "its certificate cannot be read"));
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if not_after <= now {
            let e = format!("the certificate expired at {}", when(not_after));
            return Err(named("--tls-cert", cert, &e));
        }
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| named("--tls-key", key, &pem_error(e)))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| {
                let e = format!("does not go with --tls-cert {}: {e}", cert.display());
                named("--tls-key", key, &e)
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // No TLS 1.3 session tickets (rustls sends two after every
        // handshake, each kept in its 256-entry in-memory cache): with
        // thousands of dashboards a ticket is evicted long before its
        // client reconnects, and a restart, when they all reconnect,
        // forgets them all. Sending them cost 7% of a TLS connect's server
        // CPU (docs/lab/performance.md).
        config.send_tls13_tickets = 0;
        Ok(Loaded {
            config: Arc::new(config),
            serial,
            not_after,
        })
    }

    #[cfg(test)]
    mod tests {
        use std::sync::Arc;

        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName};

        /// Runs `openssl` with `args` in `dir`; it must succeed.
        fn openssl(dir: &std::path::Path, args: &[&str]) {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("the openssl command");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        /// A TLS 1.3 handshake hands the client no session ticket: the
        /// client has nothing to resume with, and the server spent nothing
        /// making, storing and encrypting tickets.
        #[test]
        fn a_tls13_handshake_sends_no_session_tickets() {
            let dir =
                std::env::temp_dir().join(format!("statecast-tickets-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let ec = [
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ];
            let mut ca = vec![
                "req", "-x509", "-days", "1", "-keyout", "ca.key", "-out", "ca.pem",
            ];
            ca.extend(ec);
            ca.extend(["-subj", "/CN=ticket test CA"]);
            openssl(&dir, &ca);
            let mut leaf = vec!["req", "-keyout", "key.pem", "-out", "leaf.csr"];
            leaf.extend(ec);
            leaf.extend(["-subj", "/CN=localhost"]);
            openssl(&dir, &leaf);
            std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    "leaf.csr",
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "1",
                    "-out",
                    "cert.pem",
                    "-extfile",
                    "ext.cnf",
                ],
            );
            let loaded = super::load(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
            let mut roots = rustls::RootCertStore::empty();
            let ca = CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap();
            roots.add(ca).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let client_config = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from("localhost").unwrap();
            let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
            let mut server = rustls::ServerConnection::new(loaded.config).unwrap();
            // Records go back and forth until neither side has more to say:
            // tickets would follow the client's Finished.
            let mut wire = Vec::new();
            for _ in 0..10 {
                while client.wants_write() {
                    client.write_tls(&mut wire).unwrap();
                }
                server.read_tls(&mut wire.as_slice()).unwrap();
                server.process_new_packets().unwrap();
                wire.clear();
                while server.wants_write() {
                    server.write_tls(&mut wire).unwrap();
                }
                client.read_tls(&mut wire.as_slice()).unwrap();
                client.process_new_packets().unwrap();
                wire.clear();
            }
            assert!(!client.is_handshaking() && !server.is_handshaking());
            assert_eq!(
                client.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            assert_eq!(client.tls13_tickets_received(), 0);
        }
    }

    /// The two fields of an X.509 certificate the server reports, read from
    /// its DER by hand: a parser crate would outweigh the rest of TLS here.
    mod x509 {
        /// One DER element at the start of `der`: its tag, its contents and
        /// what follows it.
        fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
            let (&tag, rest) = der.split_first()?;
            let (&first, rest) = rest.split_first()?;
            let (len, rest) = if first < 0x80 {
                (usize::from(first), rest)
            } else {
                let count = usize::from(first & 0x7f);
                if count == 0 || count > 4 {
                    return None;
                }
                let bytes = rest.get(..count)?;
                let len = bytes.iter().fold(0usize, |n, &b| n << 8 | usize::from(b));
                (len, rest.get(count..)?)
            };
            Some((tag, rest.get(..len)?, rest.get(len..)?))
        }

        /// The serial (hex) and notAfter (Unix seconds) of a certificate.
        pub(super) fn serial_and_not_after(cert: &[u8]) -> Option<(String, i64)> {
            let (_, certificate, _) = element(cert)?;
            let (_, tbs, _) = element(certificate)?;
            // An explicit version, [0], comes first in v3 certificates.
            let (tag, _, after_version) = element(tbs)?;
            let fields = if tag == 0xa0 { after_version } else { tbs };
            let (_, serial, rest) = element(fields)?;
            let (_, _signature, rest) = element(rest)?;
            let (_, _issuer, rest) = element(rest)?;
            let (_, validity, _) = element(rest)?;
            let (_, _not_before, rest) = element(validity)?;
            let (tag, time, _) = element(rest)?;
            let serial = serial
                .iter()
                .skip_while(|&&b| b == 0)
                .map(|b| format!("{b:02x}"))
                .collect::<String>();
            Some((serial, asn1_time(tag, time)?))
        }

        /// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`),
        /// the two forms RFC 5280 §4.1.2.5 allows.
        fn asn1_time(tag: u8, text: &[u8]) -> Option<i64> {
            let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
            if !text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let (year, rest) = match tag {
                0x17 => {
                    let yy: i64 = text.get(..2)?.parse().ok()?;
                    let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
                    (year, text.get(2..)?)
                }
                0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
                _ => return None,
            };
            if rest.len() != 10 {
                return None;
            }
            let two = |at: usize| -> Option<i64> { rest.get(at..at + 2)?.parse().ok() };
            let (month, day) = (two(0)?, two(2)?);
            if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
                return None;
            }
            let seconds = two(4)? * 3600 + two(6)? * 60 + two(8)?;
            Some(days_from_civil(year, month, day) * 86_400 + seconds)
        }

        /// Days since 1970-01-01 of a proleptic Gregorian date (Howard
        /// Hinnant's `days_from_civil`).
        fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
            let year = if month <= 2 { year - 1 } else { year };
            let era = year.div_euclid(400);
            let year_of_era = year - era * 400;
            let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
            let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
            era * 146_097 + day_of_era - 719_468
        }

        #[cfg(test)]
        mod tests {
            use super::*;

            /// Both time forms read as the Unix time they name, and a
            /// malformed one is none.
            #[test]
            fn certificate_times_read_as_unix_seconds() {
                assert_eq!(asn1_time(0x17, b"700101000000Z"), Some(0));
                assert_eq!(asn1_time(0x17, b"491231235959Z"), Some(2_524_607_999));
                assert_eq!(asn1_time(0x18, b"20380119031408Z"), Some(2_147_483_648));
                assert_eq!(asn1_time(0x18, b"2038011903140Z"), None);
                assert_eq!(asn1_time(0x17, b"701301000000Z"), None);
                assert_eq!(asn1_time(0x17, b"70010100000+Z"), None);
            }

            /// A truncated element is none, never a slice past its end.
            #[test]
            fn a_short_certificate_is_none() {
                assert_eq!(serial_and_not_after(&[0x30, 0x82, 0x01]), None);
                assert_eq!(serial_and_not_after(&[0x30, 0x05, 0x30, 0x03]), None);
                assert_eq!(serial_and_not_after(&[]), None);
            }
        }
    }
}

/// The build without TLS: nothing to serve, and asking for it refused.
#[cfg(not(feature = "tls"))]
mod off {
    use std::io::{self, IoSlice, Write};
    use std::time::Instant;

    use mio::net::TcpStream;

    use crate::config::Config;
    use crate::server::tls::{Input, pair};

    /// No connection has one in this build.
    #[derive(Debug)]
    pub enum Session {}

    impl Session {
        pub fn receive(&mut self, _: &TcpStream, _: &mut [u8], _: &mut Vec<u8>) -> Input {
            match *self {}
        }

        pub fn send(&mut self, _: &TcpStream) -> io::Result<bool> {
            match *self {}
        }

        pub fn wants_write(&self) -> bool {
            match *self {}
        }

        pub fn close_notify(&mut self) {
            match *self {}
        }

        pub fn writer<'a>(&'a mut self, _: &'a TcpStream) -> Writer<'a> {
            match *self {}
        }
    }

    /// No session, so no writer.
    pub struct Writer<'a>(&'a mut Session);

    impl Write for Writer<'_> {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            match *self.0 {}
        }

        fn write_vectored(&mut self, _: &[IoSlice<'_>]) -> io::Result<usize> {
            match *self.0 {}
        }

        fn flush(&mut self) -> io::Result<()> {
            match *self.0 {}
        }
    }

    /// Never loaded in this build.
    #[derive(Debug)]
    pub enum Certs {}

    impl Certs {
        /// Refuses `--tls-cert`: this build has no TLS.
        pub fn from_config(config: &Config) -> Result<Option<Certs>, String> {
            match pair(config)? {
                None => Ok(None),
                Some(_) => Err("--tls-cert: serving TLS needs a build with --features tls".into()),
            }
        }

        pub fn session(&self) -> Result<Session, String> {
            match *self {}
        }

        pub fn not_after(&self) -> i64 {
            match *self {}
        }

        pub fn reloads(&self) -> (u64, u64) {
            match *self {}
        }

        pub fn reload(&mut self, _: &str) {
            match *self {}
        }

        pub fn watch(&mut self, _: Instant) {
            match *self {}
        }
    }
}
