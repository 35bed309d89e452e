//! The client-frame decoder on arbitrary bytes, frame after frame as the
//! server feeds it, with permessage-deflate agreed when the first byte is
//! odd (so compressed messages are inflated too): nothing may panic, and it
//! never consumes more than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statecast::wire::protocol::{Decoder, Limits};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mut buf = data.to_vec();
    let mut decoder = Decoder::new(mode & 1 == 1);
    let mut at = 0;
    while at < buf.len() {
        let limits = Limits {
            max_message: 4096,
            max_fragments: 128,
        };
        match decoder.decode(&mut buf[at..], limits) {
            Ok((0, _)) | Err(_) => break,
            Ok((n, _)) => {
                assert!(n <= buf.len() - at);
                at += n;
            }
        }
    }
});
