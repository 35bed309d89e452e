//! What an operator sees in the log: a start line with the URLs and the
//! providers, and refusals aggregated per reason per `--stats-interval`
//! rather than a line per client.

use statecast_testkit::*;

/// Five unknown paths and two refused publishes make two lines, with
/// their counts, in the next summary; the start line names the provider.
#[test]
fn refusals_are_logged_once_per_reason_per_interval() {
    let server = Binary::start(&[
        "--stats-interval",
        "1s",
        "--exec",
        "webhook-status=echo {}@1h",
    ]);
    for _ in 0..5 {
        assert_eq!(server.request("GET", "/nope", "").0, 404);
    }
    for _ in 0..2 {
        assert_eq!(
            server.request("POST", "/api/v1/publish/queue", "null").0,
            422
        );
    }
    wait_until("a stats line", || {
        server
            .log
            .lock()
            .unwrap()
            .contains("refused in the last 1s: 2 x 422")
    });
    let log = server.log.lock().unwrap().clone();
    assert_eq!(log.matches("404 Not Found").count(), 1, "{log}");
    assert!(
        log.contains("refused in the last 1s: 5 x 404 Not Found"),
        "{log}"
    );
    assert!(log.contains("stats: "), "{log}");
    let start = log
        .lines()
        .find(|l| l.contains("WebSockets at ws://"))
        .expect("a start line");
    assert!(
        start.contains(&format!("http://{}/healthz", server.addr)),
        "{start}"
    );
    assert!(
        start.contains("exec webhook-status <- `echo {}`"),
        "{start}"
    );
}
