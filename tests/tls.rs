//! `--tls-cert` and `--tls-key`: statecast serving https:// and wss:// on
//! its own port, with an authority and server certificates made here with
//! `openssl`. A WebSocket and curl over TLS; the pair reloaded on SIGHUP and
//! when a file is renamed or a symlink swapped, as certbot does, checked by
//! the certificate a new connection is served; a broken pair keeps the old
//! one; plain HTTP to the port is refused; a stalled handshake times out.
//! And the no-proxy recipe of `docs/deployment.md`, run from the doc's own
//! blocks. Needs the `tls` feature: `scripts/test.sh` runs `cargo test
//! --features tls,jwt --test tls`.
#![cfg(feature = "tls")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use statecast_testkit::*;

/// A temporary directory with a throwaway authority, `ca.pem`.
struct Pki(PathBuf);

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("statecast-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-days", "1", "-keyout", "ca.key", "-out", "ca.pem"]);
        args.extend(["-subj", "/CN=statecast test CA"]);
        openssl(&dir, &args);
        Pki(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A certificate for 127.0.0.1 and localhost with `serial`, signed by
    /// the authority, valid for `days` (negative: expired), as `NAME.pem`
    /// and `NAME.key`.
    fn server(&self, name: &str, serial: u32, days: i32) {
        self.server_for(name, serial, days, "IP:127.0.0.1,DNS:localhost");
    }

    /// The same, for the names in `alt_names` (`subjectAltName`'s syntax).
    fn server_for(&self, name: &str, serial: u32, days: i32, alt_names: &str) {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
        openssl(&self.0, &args);
        std::fs::write(
            self.path("ext.cnf"),
            format!("subjectAltName={alt_names}\n"),
        )
        .unwrap();
        let (serial, days) = (format!("{serial}"), format!("{days}"));
        openssl(
            &self.0,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial,
                "-days",
                &days,
                "-out",
                &pem,
                "-extfile",
                "ext.cnf",
            ],
        );
    }

    /// The DER of the first certificate in `name`.
    fn der(&self, name: &str) -> Vec<u8> {
        CertificateDer::from_pem_file(self.path(name))
            .unwrap()
            .to_vec()
    }

    /// A client that trusts this authority only, speaking `versions`.
    fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.path("ca.pem")).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr`, its handshake done.
fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Tls {
    connect_as(addr, config, "127.0.0.1")
}

/// A TLS connection to `addr` for the server `name` (SNI, and the name
/// the certificate must carry), its handshake done.
fn connect_as(addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> Tls {
    let tcp = connect_to(addr);
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("the TLS handshake");
    }
    tls
}

/// The certificate a new connection to `addr` is served.
fn served(addr: SocketAddr, config: &Arc<ClientConfig>) -> Vec<u8> {
    let tls = connect(addr, config);
    let certs = tls.conn.peer_certificates().expect("a certificate");
    certs[0].to_vec()
}

/// A request over TLS with `Connection: close`: status and body.
fn https(addr: SocketAddr, config: &Arc<ClientConfig>, path: &str) -> (u16, String) {
    let mut tls = connect(addr, config);
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    // The server ends with close_notify; a bare EOF would be an error here.
    tls.read_to_end(&mut answer)
        .expect("the answer, then close_notify");
    let answer = String::from_utf8(answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

fn tls_server(
    pki: &Pki,
    cert: &str,
    key: &str,
    configure: impl FnOnce(&mut statecast::Config),
) -> TestServer {
    let (cert, key) = (pki.path(cert), pki.path(key));
    TestServer::with(|c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        configure(c);
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A WebSocket over wss:// gets the topic's snapshot and a publish after
/// it, over TLS 1.3 and over TLS 1.2, with ALPN http/1.1; https:// serves
/// the same routes (curl, trusting the test authority), and /metrics shows
/// when the certificate expires.
#[test]
fn wss_and_https_serve_the_same_routes() {
    let pki = Pki::new("serve");
    pki.server("a", 0x1001, 1);
    let server = tls_server(&pki, "a.pem", "a.key", |_| {});
    for (total, version) in [(7, &rustls::version::TLS13), (8, &rustls::version::TLS12)] {
        let tls = connect(server.addr, &pki.client(&[version]));
        assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(tls.conn.protocol_version(), Some(version.version));
        let url = format!("wss://127.0.0.1:{}/api/v1/ws/queue", server.addr.port());
        let (mut ws, response) = tungstenite::client(url.as_str(), tls).expect("the upgrade");
        assert_eq!(response.status(), 101);
        let snapshot = ws.read().unwrap();
        assert!(
            snapshot
                .to_text()
                .unwrap()
                .contains(r#""type":"queue_update""#),
            "{snapshot}"
        );
        server
            .publisher
            .publish(
                "queue",
                &serde_json::json!({"phases": [], "total": total, "paused": false}),
            )
            .unwrap();
        let update = ws.read().unwrap();
        assert!(
            update
                .to_text()
                .unwrap()
                .contains(&format!(r#""total":{total}"#)),
            "{update}"
        );
    }

    let url = format!("https://127.0.0.1:{}/healthz", server.addr.port());
    let ca = pki.path("ca.pem");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .arg(&url)
        .output()
        .expect("curl is installed");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains(r#""status":"ok""#), "{body}");

    let (status, metrics) = https(
        server.addr,
        &pki.client(&[&rustls::version::TLS13]),
        "/metrics",
    );
    assert_eq!(status, 200);
    let expiry: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("statecast_tls_certificate_expiry_seconds "))
        .expect("the expiry gauge")
        .parse()
        .unwrap();
    let day_ahead = unix_now() + 86_400;
    assert!((expiry - day_ahead).abs() < 600, "{expiry} vs {day_ahead}");
}

/// Plain HTTP to the TLS port is answered at once with a plain-text 400
/// saying so, then closed, rather than left waiting for a handshake.
#[test]
fn plain_http_to_the_tls_port_is_refused_promptly() {
    let pki = Pki::new("plain");
    pki.server("a", 0x1001, 1);
    // A long handshake timeout: the answer must not be waiting for it.
    let server = tls_server(&pki, "a.pem", "a.key", |c| {
        c.handshake_timeout = Duration::from_secs(600);
    });
    let mut stream = connect_to(server.addr);
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("an answer, then EOF");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(
        answer.contains("this port speaks TLS (https://)"),
        "{answer}"
    );
    // The server goes on serving TLS.
    let config = pki.client(&[&rustls::version::TLS13]);
    assert_eq!(https(server.addr, &config, "/healthz").0, 200);
}

/// A client that connects and says nothing, and one that stops halfway
/// through its ClientHello, are closed by --handshake-timeout, counted as
/// handshake timeouts.
#[test]
fn a_stalled_handshake_is_closed_by_the_handshake_timeout() {
    let pki = Pki::new("stall");
    pki.server("a", 0x1001, 1);
    let server = tls_server(&pki, "a.pem", "a.key", |c| {
        c.handshake_timeout = Duration::from_millis(300);
    });
    let silent = connect_to(server.addr);
    let mut halfway = connect_to(server.addr);
    // A handshake record's header promising 512 bytes, and no more.
    halfway
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    for mut stream in [silent, halfway] {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut rest = Vec::new();
        stream
            .read_to_end(&mut rest)
            .expect("closed within the deadline");
        assert!(rest.is_empty(), "{rest:?}");
    }
    let config = pki.client(&[&rustls::version::TLS13]);
    let (_, metrics) = https(server.addr, &config, "/metrics");
    assert!(
        metrics.contains("statecast_closes_total{cause=\"handshake_timeout\"} 2\n"),
        "{metrics}"
    );
}

/// SIGHUP loads the pair again: a new connection gets the new certificate,
/// one already open keeps working, and the process does not end (SIGHUP's
/// default).
#[test]
fn sighup_reloads_the_certificate() {
    let pki = Pki::new("sighup");
    pki.server("a", 0x1001, 1);
    pki.server("b", 0x1002, 1);
    std::fs::copy(pki.path("a.pem"), pki.path("live.pem")).unwrap();
    std::fs::copy(pki.path("a.key"), pki.path("live.key")).unwrap();
    let (cert, key) = (pki.path("live.pem"), pki.path("live.key"));
    let server = Binary::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--topic",
        "counter",
    ]);
    let config = pki.client(&[&rustls::version::TLS13]);
    assert_eq!(served(server.addr, &config), pki.der("a.pem"));
    let mut open = connect(server.addr, &config);

    std::fs::copy(pki.path("b.pem"), &cert).unwrap();
    std::fs::copy(pki.path("b.key"), &key).unwrap();
    // SAFETY: a plain kill(2) of the child this test started.
    assert_eq!(
        unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) },
        0
    );
    wait_until("a reload on SIGHUP", || {
        server.log.lock().unwrap().contains("(SIGHUP)")
    });
    assert_eq!(served(server.addr, &config), pki.der("b.pem"));

    open.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    open.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(
        open.conn.peer_certificates().unwrap()[0].to_vec(),
        pki.der("a.pem")
    );
}

/// A changed file is reloaded without a signal: a certificate renamed over
/// the old one, and then, as certbot renews, the live names made symlinks
/// into an archive and swapped to a new one.
#[test]
fn a_renamed_file_or_a_swapped_symlink_is_reloaded() {
    let pki = Pki::new("watch");
    for (name, serial) in [("a", 0x1001), ("b", 0x1002), ("c", 0x1003)] {
        pki.server(name, serial, 1);
    }
    let (cert, key) = (pki.path("live.pem"), pki.path("live.key"));
    std::fs::copy(pki.path("a.pem"), &cert).unwrap();
    std::fs::copy(pki.path("a.key"), &key).unwrap();
    let server = tls_server(&pki, "live.pem", "live.key", |_| {});
    let config = pki.client(&[&rustls::version::TLS13]);
    assert_eq!(served(server.addr, &config), pki.der("a.pem"));

    // Written beside, then renamed over: the key first, as a tool would.
    std::fs::copy(pki.path("b.key"), pki.path("new.key")).unwrap();
    std::fs::copy(pki.path("b.pem"), pki.path("new.pem")).unwrap();
    std::fs::rename(pki.path("new.key"), &key).unwrap();
    std::fs::rename(pki.path("new.pem"), &cert).unwrap();
    wait_until("the renamed certificate served", || {
        served(server.addr, &config) == pki.der("b.pem")
    });

    // certbot: live/ names are symlinks into archive/, replaced by rename.
    for (link, target) in [("live.key", "c.key"), ("live.pem", "c.pem")] {
        let tmp = pki.path(&format!("{link}.tmp"));
        std::os::unix::fs::symlink(pki.path(target), &tmp).unwrap();
        std::fs::rename(&tmp, pki.path(link)).unwrap();
    }
    wait_until("the certificate the symlink now names served", || {
        served(server.addr, &config) == pki.der("c.pem")
    });
}

/// A pair that fails to load (a key that does not match, a file that is
/// not PEM, an expired certificate) leaves the old one serving, and the
/// failure is counted; the process carries on.
#[test]
fn a_broken_pair_keeps_the_old_certificate() {
    let pki = Pki::new("broken");
    pki.server("a", 0x1001, 1);
    pki.server("b", 0x1002, 1);
    pki.server("old", 0x1003, -1);
    let (cert, key) = (pki.path("live.pem"), pki.path("live.key"));
    std::fs::copy(pki.path("a.pem"), &cert).unwrap();
    std::fs::copy(pki.path("a.key"), &key).unwrap();
    let server = tls_server(&pki, "live.pem", "live.key", |_| {});
    let config = pki.client(&[&rustls::version::TLS13]);
    let failed = |n: u32| {
        let (_, metrics) = https(server.addr, &config, "/metrics");
        metrics.contains(&format!(
            "statecast_tls_reloads_total{{result=\"failed\"}} {n}\n"
        ))
    };

    let breakages: [(&str, &str); 3] = [
        // b's key beside a's certificate.
        ("a.pem", "b.key"),
        // Not PEM at all.
        ("a.pem", "ca.srl-missing"),
        // Expired yesterday, with its own key.
        ("old.pem", "old.key"),
    ];
    for (n, (new_cert, new_key)) in breakages.into_iter().enumerate() {
        std::fs::copy(pki.path(new_cert), &cert).unwrap();
        if new_key == "ca.srl-missing" {
            std::fs::write(&key, "not a key\n").unwrap();
        } else {
            std::fs::copy(pki.path(new_key), &key).unwrap();
        }
        server.publisher.reload().unwrap();
        wait_until("the failed reload counted", || failed(n as u32 + 1));
        assert_eq!(served(server.addr, &config), pki.der("a.pem"));
    }
}

/// A pair that cannot be loaded at start stops the start (exit 2), naming
/// the file and why, and never quoting the key.
#[test]
fn a_bad_pair_at_start_names_the_file_and_not_the_key() {
    let pki = Pki::new("start");
    pki.server("a", 0x1001, 1);
    pki.server("b", 0x1002, 1);
    let key_text = std::fs::read_to_string(pki.path("b.key")).unwrap();
    let key_line = key_text.lines().nth(1).unwrap();
    let start = |cert: &str, key: &str| {
        Command::new(env!("CARGO_BIN_EXE_statecast"))
            .args(["--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(pki.path(cert))
            .arg("--tls-key")
            .arg(pki.path(key))
            .output()
            .unwrap()
    };
    let out = start("a.pem", "b.key");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--tls-key") && err.contains("b.key"), "{err}");
    assert!(err.contains("does not go with --tls-cert"), "{err}");
    assert!(!err.contains(key_line), "{err}");

    let out = start("b.key", "b.key");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--tls-cert") && err.contains("b.key"), "{err}");
    assert!(!err.contains(key_line), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_statecast"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(pki.path("a.pem"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--tls-cert needs --tls-key"), "{err}");
}

/// The deployment notes, whose no-proxy section the recipe test runs.
const NOTES: &str = include_str!("../docs/deployment.md");

/// The package's unit, which the notes' reload hook and drop-in act on.
const UNIT: &str = include_str!("../debian/statecast.service");

/// The fenced block after `<!-- recipe: NAME -->` in the deployment notes,
/// its list indent taken off.
fn recipe(name: &str) -> String {
    let marker = format!("<!-- recipe: {name} -->\n");
    let block = NOTES
        .split(&marker)
        .nth(1)
        .and_then(|rest| rest.split_once("```").map(|(_, fenced)| fenced))
        .and_then(|fenced| fenced.split_once('\n').map(|(_, body)| body))
        .and_then(|body| body.split("```").next())
        .unwrap_or_else(|| panic!("docs/deployment.md has no block marked {marker}"));
    block
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `KEY=VALUE` lines of a unit or drop-in, in order, comments left out.
fn directives(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// What systemd makes of a capability list set in several places: an
/// empty assignment resets it, the others add to it.
fn capabilities(settings: &[(String, String)], key: &str) -> Vec<String> {
    let mut set = Vec::new();
    for (_, v) in settings.iter().filter(|(k, _)| k == key) {
        if v.is_empty() {
            set.clear();
        }
        set.extend(v.split_whitespace().map(str::to_owned));
    }
    set
}

/// `systemctl reload UNIT`, as systemd runs it: the unit's `ExecReload=`
/// commands, `$MAINPID` the service's pid.
fn systemctl_reload(hook: &str, pid: u32) {
    let words: Vec<&str> = hook.split_whitespace().collect();
    assert_eq!(
        words[..2],
        ["systemctl", "reload"],
        "the test runs `systemctl reload UNIT` hooks, not {hook:?}"
    );
    assert_eq!(words.get(2), Some(&"statecast"), "{hook:?}");
    let reloads: Vec<String> = directives(UNIT)
        .into_iter()
        .filter(|(k, _)| k == "ExecReload")
        .map(|(_, v)| v)
        .collect();
    assert!(
        !reloads.is_empty(),
        "`{hook}` fails: debian/statecast.service has no ExecReload="
    );
    for command in reloads {
        let command = command
            .replace("${MAINPID}", &pid.to_string())
            .replace("$MAINPID", &pid.to_string());
        let mut words = command.split_whitespace();
        let program = words.next().unwrap();
        let status = Command::new(program).args(words).status().unwrap();
        assert!(status.success(), "ExecReload={command}: {status}");
    }
}

/// The serial (hex, as openssl prints it) of the certificate a new
/// connection to `addr`, asking for `name`, is served.
fn served_serial(pki: &Pki, addr: SocketAddr, config: &Arc<ClientConfig>, name: &str) -> String {
    let tls = connect_as(addr, config, name);
    let der = tls.conn.peer_certificates().expect("a certificate")[0].to_vec();
    let file = pki.path("served.der");
    std::fs::write(&file, der).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-serial", "-in"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim().trim_start_matches("serial=").to_lowercase()
}

/// certbot's layout for `name` under `root`: renewal `n`'s chain (leaf,
/// then the authority) and key in `archive/`, and `live/`'s two names
/// symlinks to them, each swapped by a rename as certbot does.
fn certbot_renewal(pki: &Pki, root: &std::path::Path, n: u32, serial: u32) {
    let public_name = "dash.example.com";
    let leaf = format!("renewal{n}");
    pki.server_for(&leaf, serial, 1, &format!("DNS:{public_name}"));
    let archive = root.join("archive").join(public_name);
    let live = root.join("live").join(public_name);
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::create_dir_all(&live).unwrap();
    let chain = std::fs::read_to_string(pki.path(&format!("{leaf}.pem"))).unwrap()
        + &std::fs::read_to_string(pki.path("ca.pem")).unwrap();
    std::fs::write(archive.join(format!("fullchain{n}.pem")), chain).unwrap();
    std::fs::copy(
        pki.path(&format!("{leaf}.key")),
        archive.join(format!("privkey{n}.pem")),
    )
    .unwrap();
    for file in ["privkey", "fullchain"] {
        let target = format!("../../archive/{public_name}/{file}{n}.pem");
        let tmp = live.join(format!("{file}.pem.new"));
        std::os::unix::fs::symlink(target, &tmp).unwrap();
        std::fs::rename(&tmp, live.join(format!("{file}.pem"))).unwrap();
    }
}

/// The no-proxy recipe of docs/deployment.md, run from its own blocks:
/// its statecast.toml (certbot's paths moved to a test-made layout, the
/// address to port 0) and its tokens' names serve https:// (curl); a
/// subscriber without the subscribe token is refused; the doc's curl
/// publish with the publish token reaches a wss:// subscriber; the doc's
/// deploy hook, `systemctl reload statecast` run as the unit's
/// `ExecReload=`, makes a new connection see the renewed serial, and so
/// does a later renewal with no hook (the file watch). What cannot run
/// here, the unit and its port-443 drop-in, is read: the unit reads the
/// files the doc names, and with the drop-in may bind 443.
#[test]
fn the_no_proxy_recipe_runs_as_documented() {
    let pki = Pki::new("recipe");
    let letsencrypt = pki.path("letsencrypt");
    certbot_renewal(&pki, &letsencrypt, 1, 0x1001);

    let toml = recipe("no-proxy statecast.toml");
    for line in [
        r#"listen = "0.0.0.0:443""#,
        r#"tls_cert = "/etc/letsencrypt/live/dash.example.com/fullchain.pem""#,
        r#"tls_key = "/etc/letsencrypt/live/dash.example.com/privkey.pem""#,
    ] {
        assert!(toml.contains(line), "the recipe's toml has {line}:\n{toml}");
    }
    let toml = toml
        .replace("0.0.0.0:443", "127.0.0.1:0")
        .replace("/etc/letsencrypt/", &format!("{}/", letsencrypt.display()));
    let file = pki.path("statecast.toml");
    std::fs::write(&file, toml).unwrap();

    // The tokens' names from the env file the notes give, as the unit's
    // EnvironmentFile= hands them over.
    let env = recipe("env");
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
        .filter(|name| !name.starts_with('#'))
        .collect();
    assert_eq!(
        names,
        ["STATECAST_PUBLISH_TOKEN", "STATECAST_SUBSCRIBE_TOKEN"],
        "{env}"
    );
    let tokens = [
        (names[0], "publish-token-0123456789"),
        (names[1], "subscribe-token-0123456789"),
    ];
    let server = Binary::start_with(
        &["--config", file.to_str().unwrap(), "--log-level", "info"],
        |c| {
            c.envs(tokens);
        },
    );
    let port = server.addr.port();
    let public = "dash.example.com";
    let ca = pki.path("ca.pem");
    let curl = |args: &[&str]| {
        let resolve = format!("{public}:{port}:127.0.0.1");
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--resolve", &resolve, "--cacert"])
            .arg(&ca)
            .args(args)
            .output()
            .expect("curl is installed")
    };

    // https:// serves, under the public name.
    let out = curl(&[&format!("https://{public}:{port}/healthz")]);
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains(r#""status":"ok""#), "{body}");

    // A subscriber without the subscribe token is refused; with it, served.
    let config = pki.client(&[&rustls::version::TLS13]);
    let url = format!("wss://{public}:{port}/api/v1/ws/webhook-status");
    let without = tungstenite::client(url.as_str(), connect_as(server.addr, &config, public));
    match without {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("a subscriber without the token: {:?}", other.map(|r| r.1)),
    }
    let with = format!("{url}?token={}", tokens[1].1);
    let (mut ws, _) =
        tungstenite::client(with.as_str(), connect_as(server.addr, &config, public)).unwrap();
    let snapshot = ws.read().unwrap();
    assert!(
        snapshot
            .to_text()
            .unwrap()
            .contains("webhook_status_update"),
        "{snapshot}"
    );

    // The doc's publish, run by sh with the token in its environment.
    let publish = recipe("no-proxy publish").replace("\\\n", " ");
    let at = format!("https://{public}/");
    assert!(
        publish.starts_with("curl ") && publish.contains(&at),
        "{publish}"
    );
    let publish = publish.replacen(
        "curl ",
        &format!(
            "curl --max-time 10 --resolve {public}:{port}:127.0.0.1 --cacert '{}' ",
            ca.display()
        ),
        1,
    );
    let publish = publish.replace(&at, &format!("https://{public}:{port}/"));
    let out = Command::new("sh")
        .args(["-c", &publish])
        .env(tokens[0].0, tokens[0].1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{publish}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let update = ws.read().unwrap();
    assert!(update.to_text().unwrap().contains("renewed"), "{update}");
    // The same publish without the token is refused.
    let out = Command::new("sh")
        .args(["-c", &publish])
        .env(tokens[0].0, "")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a publish without the token went through"
    );

    // Renewal with the doc's deploy hook.
    assert_eq!(served_serial(&pki, server.addr, &config, public), "1001");
    let certbot = recipe("no-proxy deploy hook");
    let hook = certbot
        .split("--deploy-hook \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the certbot command gives a --deploy-hook: {certbot}"));
    certbot_renewal(&pki, &letsencrypt, 2, 0x1002);
    systemctl_reload(hook, server.child.id());
    wait_until("a reload on the hook's SIGHUP", || {
        server.log.lock().unwrap().contains("(SIGHUP): serial 1002")
    });
    assert_eq!(served_serial(&pki, server.addr, &config, public), "1002");

    // Renewal with no hook: statecast notices.
    certbot_renewal(&pki, &letsencrypt, 3, 0x1003);
    wait_until("the renewed certificate noticed", || {
        served_serial(&pki, server.addr, &config, public) == "1003"
    });
    // The socket opened before both renewals still works.
    ws.send(tungstenite::Message::text(
        r#"{"type":"ping","timestamp":1}"#,
    ))
    .unwrap();
    let pong = ws.read().unwrap();
    assert!(pong.to_text().unwrap().contains("pong"), "{pong}");

    // The unit reads the files the notes name.
    let unit = directives(UNIT);
    let has = |key: &str, value: &str| unit.iter().any(|(k, v)| k == key && v.contains(value));
    assert!(has("ExecStart", "--config /etc/statecast/statecast.toml"));
    assert!(NOTES.contains("`/etc/statecast/statecast.toml`"));
    assert!(has("EnvironmentFile", "/etc/statecast/env"));
    assert!(NOTES.contains("`/etc/statecast/env`"));

    // With the drop-in, the unit may bind 443.
    let drop_in = recipe("no-proxy drop-in");
    assert!(
        drop_in.contains("/etc/systemd/system/statecast.service.d/"),
        "{drop_in}"
    );
    let settings: Vec<_> = unit.into_iter().chain(directives(&drop_in)).collect();
    for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
        assert!(
            capabilities(&settings, key).contains(&"CAP_NET_BIND_SERVICE".to_owned()),
            "{key} with the drop-in lacks CAP_NET_BIND_SERVICE"
        );
    }
    // systemd's own reading of the unit with the drop-in beside it (its
    // program moved to this build, which verify wants to exist).
    let units = pki.path("units");
    std::fs::create_dir_all(units.join("statecast.service.d")).unwrap();
    std::fs::write(
        units.join("statecast.service"),
        UNIT.replace("/usr/bin/statecast", env!("CARGO_BIN_EXE_statecast")),
    )
    .unwrap();
    std::fs::write(units.join("statecast.service.d/override.conf"), &drop_in).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("statecast.service"))
        .output()
        .expect("systemd-analyze (scripts/test.sh installs systemd)");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.is_empty(), "{said}");
    // A capability inside a user namespace of the service's own does not
    // reach the host's network namespace, where port 443 is.
    let private_users = settings
        .iter()
        .rev()
        .find(|(k, _)| k == "PrivateUsers")
        .map(|(_, v)| v.as_str());
    assert!(
        !matches!(
            private_users,
            Some("yes" | "true" | "1" | "self" | "identity" | "full")
        ),
        "PrivateUsers={private_users:?} with the drop-in: 443 stays refused"
    );
}
