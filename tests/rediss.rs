//! `--redis rediss://`: nodes joined through Debian's `redis-server` on a
//! TLS port, with a certificate authority and a server certificate made
//! here with `openssl`. A publish crosses from one node to the other over
//! TLS; a node that does not trust the authority, and one that speaks
//! plain `redis://` to the TLS port, both stay degraded. Needs the `tls`
//! feature: `scripts/test.sh` runs `cargo test --features tls --test
//! rediss`.
#![cfg(feature = "tls")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use statecast_testkit::*;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A self-signed authority named `cn`, as `name.key` and `name.pem`.
fn authority(dir: &Path, name: &str, cn: &str) {
    let (key, pem, subject) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN={cn}"),
    );
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", &key, "-out",
            &pem, "-subj", &subject,
        ],
    );
}

/// A throwaway authority and a certificate for 127.0.0.1 signed by it, and
/// another authority that signed nothing here, for a node that trusts
/// only it.
fn certificates() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("statecast-rediss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    authority(&dir, "ca", "statecast test CA");
    authority(&dir, "other", "some other CA");
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "server.pem",
            "-extfile",
            "ext.cnf",
        ],
    );
    dir
}

/// A node that trusts the authorities in `ca`, as an operator points
/// SSL_CERT_FILE at their own.
fn node(url: &str, ca: &Path) -> Binary {
    Binary::start_with(&["--redis", url, "--topic", "counter"], |c| {
        c.env("SSL_CERT_FILE", ca);
    })
}

fn redis_state(node: &Binary) -> serde_json::Value {
    node.health()["providers"]["redis"].clone()
}

#[test]
fn nodes_join_over_tls_and_check_the_certificate() {
    let dir = certificates();
    let port = free_port();
    let redis = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run redis-server ({e}): scripts/test.sh installs it"));
    let _redis = Killed(redis);
    wait_until("redis-server's TLS port", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("rediss://127.0.0.1:{port}");
    let ca = dir.join("ca.pem");
    let a = node(&url, &ca);
    let b = node(&url, &ca);
    for n in [&a, &b] {
        wait_until("the link over TLS", || redis_state(n)["ok"] == true);
    }
    // `counter` has no snapshot yet: the first frame is the publish.
    let mut ws = b.subscribe("counter");
    let (status, body) = request_at(a.addr, "POST", "/api/v1/publish/counter", r#"{"n":1}"#, "");
    assert_eq!(status, 200, "{body}");
    let message = read_data_frame(&mut ws).json();
    assert_eq!(message["data"]["n"], 1, "{message}");
    assert_eq!(message["seq"], 1, "ordered by Redis: {message}");

    // Verification is on: an authority the node does not trust, and plain
    // text to the TLS port, both fail and say so.
    let untrusting = node(&url, &dir.join("other.pem"));
    let plain = node(&format!("redis://127.0.0.1:{port}"), &ca);
    for (n, what) in [
        (&untrusting, "an untrusted certificate"),
        (&plain, "plain text"),
    ] {
        wait_until(what, || {
            let state = redis_state(n);
            state["ok"] == false && state["last_error"].is_string()
        });
    }
    let why = redis_state(&untrusting)["last_error"].to_string();
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    let _ = std::fs::remove_dir_all(&dir);
}
