//! The whole request path on arbitrary bytes: the HTTP reader (cut into
//! reads of a size the input picks), admission, routing and every
//! endpoint, with and without schemas and tokens, as far as the bytes a
//! subscriber would get, under the default limits and again under small
//! ones the last byte picks (a body of 1 to 64 bytes, 1 to 4 topics).
//! Nothing may panic, and whatever is accepted must reach a subscriber as
//! I-JSON on one SSE line. `tests/fuzz_corpus.rs` replays the seeds on
//! stable.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use statecast::server::harness::Setups;

thread_local! {
    /// Compiling the schemas is slow: built once, reset per input.
    static SETUPS: RefCell<Setups> = RefCell::new(Setups::new().expect("the setups"));
}

fuzz_target!(|data: &[u8]| {
    SETUPS.with(|setups| {
        let mut setups = setups.borrow_mut();
        for statuses in [setups.run(data), setups.run_small(data)] {
            assert!(statuses.iter().all(|s| (100..600).contains(s)));
        }
    });
});
