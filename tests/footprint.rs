//! What an idle server holds: a descriptor table grown once at start for
//! `--max-connections`, and of its code and read-only data only what the
//! loop has used since start.

use statecast_testkit::*;

/// The descriptor table is grown at start to hold `--max-connections`
/// (with the health reserve and the server's own descriptors: 3,080, which
/// the kernel rounds to 4,096), so no accept has to wait for it to double
/// later, which in a process with threads waits out an RCU grace period;
/// within `RLIMIT_NOFILE`, which it never passes.
#[test]
fn the_descriptor_table_is_grown_at_start_for_max_connections() {
    let server = Binary::start_with_fd_limit(&["--max-connections", "3000"], 8192);
    let pid = server.child.id();
    wait_until("the descriptor table to hold 3,080", || {
        proc_status(pid, "FDSize") >= 3080
    });
    // Allowed 100 descriptors, it grows the table to that (the kernel
    // rounds it to 256; it starts at 64) and serves.
    let small = Binary::start_with_fd_limit(&["--max-connections", "3000"], 100);
    let (status, _) = request_at(small.addr, "GET", "/healthz", "", "");
    assert_eq!(status, 200);
    let size = proc_status(small.child.id(), "FDSize");
    assert!((100..=256).contains(&size), "FDSize {size}");
}

/// Resident and mapped KiB of the server binary's own mappings that hold
/// no written (private) page: its code and read-only data.
fn read_only_image(pid: u32, binary: &str) -> (u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let (mut rss, mut size) = (0, 0);
    for entry in smaps.split_inclusive("\nVmFlags:") {
        let Some(head) = entry
            .lines()
            .find(|l| l.contains('-') && l.ends_with(binary))
        else {
            continue;
        };
        let field = |name: &str| {
            entry
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let read_only = head
            .split_whitespace()
            .nth(1)
            .is_some_and(|perms| perms.starts_with('r') && !perms.contains('w'));
        if field("Anonymous:") == 0 && read_only {
            rss += field("Rss:");
            size += field("Size:");
        }
    }
    (rss, size)
}

/// The pages of code and read-only data that starting up touched are
/// unmapped before the loop starts: an idle server holds less than half of
/// them resident (in a debug build on the 2-vCPU test VM, about 30%, and
/// 75% when they were kept; the rest is what the loop runs, mapped back in
/// 64 KiB steps).
#[test]
fn an_idle_server_holds_only_the_code_it_runs() {
    let server = Binary::start(&[]);
    let pid = server.child.id();
    let binary = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let binary = binary.to_string_lossy().into_owned();
    wait_until("the start-up pages to be unmapped", || {
        let (rss, size) = read_only_image(pid, &binary);
        assert!(size > 0, "no read-only mapping of {binary}");
        rss * 2 < size
    });
}
