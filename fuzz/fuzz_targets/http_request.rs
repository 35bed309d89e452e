//! The HTTP request parser on arbitrary bytes: a head, then a body as the
//! head delimits it. Nothing may panic, and a complete head never claims
//! more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statecast::wire::http::{self, ParsedBody, ParsedHead};

fuzz_target!(|data: &[u8]| {
    if let Ok(ParsedHead::Complete { head, len }) = http::parse_head(data) {
        assert!(len <= data.len());
        if let Ok(ParsedBody::Complete(body, used)) =
            http::parse_body(head.body, &data[len..], 1 << 20)
        {
            assert!(used <= data.len() - len);
            assert!(body.len() <= used);
        }
        let _ = http::route(&head.method, &head.path);
        let _ = http::check_upgrade(&head);
        let _ = head.query_param("token");
        let _ = head.bearer();
    }
});
