//! The client-frame decoder on arbitrary bytes, frame after frame as the
//! server feeds it, with permessage-deflate agreed when the first byte is
//! odd (so compressed messages are inflated too), under the default limits
//! and again under small ones the first byte picks (messages of 1 to 63
//! bytes, 1 to 4 frames): nothing may panic, it never consumes more than
//! it was given, and no text message passes its limit.
//! `tests/fuzz_corpus.rs` replays the seeds on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statecast::server::harness::client_frames;

fuzz_target!(|data: &[u8]| client_frames(data));
