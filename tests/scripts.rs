//! `scripts/test.sh --check`: what a fresh machine lacks is said in one
//! line before anything is installed, run here on a PATH of stand-ins.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A directory of stand-in programs for PATH, removed on drop.
struct Bin(PathBuf);

impl Bin {
    fn new(name: &str) -> Bin {
        let dir =
            std::env::temp_dir().join(format!("statecast-scripts-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Bin(dir)
    }

    /// A program that prints `says` and exits 0, whatever it is asked.
    fn program(&self, name: &str, says: &str) -> &Bin {
        let path = self.0.join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho '{says}'\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    /// Every prerequisite that is not a Debian package test.sh installs.
    fn with_toolchain(&self, rust: &str) -> &Bin {
        self.program("cargo", &format!("cargo {rust} (stand-in)"))
            .program("rustc", &format!("rustc {rust} (stand-in)"))
            .program("cc", "cc")
            .program("python3", "")
            .program("node", "v20")
            .program("npm", "9")
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `bash scripts/test.sh --check` with only `path` to find programs in.
fn check(path: &Path) -> Output {
    check_on(path, None)
}

/// `check`, on a kernel whose release is `kernel` (the machine's own when
/// `None`).
fn check_on(path: &Path, kernel: Option<&str>) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test.sh");
    let mut command = Command::new("/bin/bash");
    command
        .arg(script)
        .arg("--check")
        .env_clear()
        .env("PATH", path);
    if let Some(kernel) = kernel {
        let release = path.join("osrelease");
        std::fs::write(&release, format!("{kernel}\n")).unwrap();
        command.env("TEST_SH_OSRELEASE", release);
    }
    command.output().expect("running bash")
}

/// What `check` printed on stderr, which must be exactly one line.
#[track_caller]
fn one_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    err
}

/// On a machine with nothing, every prerequisite rustup or apt must give
/// first is named, in one line, and the check fails.
#[test]
fn every_missing_tool_is_named_in_one_line() {
    let empty = Bin::new("empty");
    let out = check(empty.path());
    assert_eq!(out.status.code(), Some(1));
    let err = one_line(&out);
    let rust = env!("CARGO_PKG_RUST_VERSION");
    for needle in [
        &format!("cargo {rust} or newer") as &str,
        &format!("rustc {rust} or newer"),
        "rustfmt",
        "clippy",
        "cc (apt-get install build-essential)",
        "python3",
        "node (apt-get install nodejs)",
        "npm (apt-get install npm)",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
    }
}

/// A Rust older than Cargo.toml's rust-version is named with the version
/// found; the same minor, or a newer one, is not.
#[test]
fn a_rust_older_than_rust_version_is_named() {
    let old = Bin::new("old");
    old.with_toolchain("1.87.9");
    let out = check(old.path());
    assert_eq!(out.status.code(), Some(1));
    let err = one_line(&out);
    assert!(err.contains("rustc 1.88 or newer (found 1.87.9"), "{err}");
    assert!(err.contains("cargo 1.88 or newer (found 1.87.9"), "{err}");

    for fine in ["1.88.0", "1.100.0"] {
        let new = Bin::new(fine);
        new.with_toolchain(fine);
        let out = check(new.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("or newer"), "{fine}: {err}");
    }
}

/// A kernel older than 6.3 (Debian 12's 6.1) is named, with where a new
/// enough one comes from: the package check needs PR_SET_MDWE. 6.3 and
/// later, a backports release string included, are not.
#[test]
fn a_kernel_older_than_6_3_is_named() {
    let bin = Bin::new("kernel");
    bin.with_toolchain("1.95.0");
    let out = check_on(bin.path(), Some("6.1.0-28-amd64"));
    assert_eq!(out.status.code(), Some(1));
    let err = one_line(&out);
    assert!(
        err.contains("Linux 6.3 or newer for the package check (found 6.1;"),
        "{err}"
    );
    assert!(err.contains("bookworm-backports"), "{err}");

    for fine in ["6.3.0", "6.12.12+bpo-amd64", "10.0"] {
        let out = check_on(bin.path(), Some(fine));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("Linux 6.3"), "{fine}: {err}");
    }
}

/// With the toolchain in place, the Debian packages the tests need are
/// named with the exact command to install them, and `--check` installs
/// nothing, even as root.
#[test]
fn missing_debian_packages_come_with_the_command() {
    let bin = Bin::new("toolchain");
    bin.with_toolchain("1.95.0");
    let out = check(bin.path());
    assert_eq!(out.status.code(), Some(1));
    let err = one_line(&out);
    assert!(
        err.contains("as root, run: apt-get install -y redis-server"),
        "{err}"
    );
    for package in ["chromium", "openssl", "curl", "systemd"] {
        assert!(err.contains(package), "{package} not in {err}");
    }
    assert!(!err.contains("installing"), "{err}");
}

/// Without `--check`, the line comes before anything is installed: as
/// root it says what apt-get will install and that nginx and redis-server
/// then run as services (apt-get is not on this PATH, so nothing is);
/// otherwise it stops with the command to run as root.
#[test]
fn a_run_says_what_it_installs_before_installing() {
    let bin = Bin::new("install");
    bin.with_toolchain("1.95.0");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test.sh");
    let out = Command::new("/bin/bash")
        .arg(script)
        .env_clear()
        .env("PATH", bin.path())
        .output()
        .expect("running bash");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let first = err.lines().next().unwrap_or_default();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|id| id.stdout == b"0\n");
    if root {
        assert!(
            first.contains("installing with apt-get: redis-server")
                && first.contains("ports 80 and 6379"),
            "{err}"
        );
        assert!(err.contains("apt-get: command not found"), "{err}");
    } else {
        assert!(
            first.contains("as root, run: apt-get install -y redis-server"),
            "{err}"
        );
    }
}
