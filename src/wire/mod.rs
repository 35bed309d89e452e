//! The wire formats, parsed and produced without I/O: HTTP/1.1 requests and
//! responses, published JSON, RFC 6455 frames, RFC 7692 compression and
//! the multiplexed protocol's parameters and commands. Each is tested on
//! byte slices.

pub mod deflate;
pub mod http;
pub mod json;
pub mod mux;
pub mod protocol;

/// Encoded bytes shared by every subscriber of one publish: encoded once,
/// referenced by each output queue that holds them.
pub type Shared = std::sync::Arc<[u8]>;
