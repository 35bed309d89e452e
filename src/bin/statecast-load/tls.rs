//! `--tls`: every connection the generator makes (the WebSockets, the
//! publisher, the set-up requests) speaks TLS, as `wss://` and `https://`,
//! through rustls with ring, the server's own stack (the `tls` feature).
//! The server's certificate is taken as it comes: this measures a server
//! the bench started with a throwaway certificate, and checking a chain is
//! the client's cost, not the server's. Every connect is a full handshake
//! (no session resumption), as a browser's first visit is, so the servers
//! compared pay the same.
//!
//! Without the feature `--tls` is refused, naming the feature.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::OnceLock;

/// Set once at start when `--tls` is given.
static TLS: OnceLock<Config> = OnceLock::new();

/// Turns TLS on for every connection from here on.
pub(crate) fn enable() -> io::Result<()> {
    let config = Config::new()?;
    let _ = TLS.set(config);
    Ok(())
}

/// Whether `--tls` is on.
pub(crate) fn on() -> bool {
    TLS.get().is_some()
}

/// A blocking connection to `addr`: TLS when `--tls` is on.
pub(crate) fn dial(addr: SocketAddr) -> io::Result<Box<dyn Stream>> {
    let stream = StdStream::connect(addr)?;
    stream.set_nodelay(true)?;
    match TLS.get() {
        Some(config) => config.wrap(stream),
        None => Ok(Box::new(stream)),
    }
}

/// A session for a new non-blocking client, when `--tls` is on.
pub(crate) fn session() -> io::Result<Option<Session>> {
    TLS.get().map(Config::session).transpose()
}

/// What `dial` returns: plain or TLS, read and written alike.
pub(crate) trait Stream: Read + Write + Send {}

impl<T: Read + Write + Send> Stream for T {}

#[cfg(feature = "tls")]
pub(crate) use on::{Config, Session};

#[cfg(not(feature = "tls"))]
pub(crate) use off::{Config, Session};

#[cfg(feature = "tls")]
mod on {
    use std::io::{self, Read, Write};
    use std::net::TcpStream as StdStream;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

    use crate::tls::Stream;

    /// Takes any certificate; the handshake's signatures are still checked
    /// against it, so the session is a real one.
    #[derive(Debug)]
    struct AnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// The client configuration every connection shares.
    pub(crate) struct Config(Arc<ClientConfig>);

    impl Config {
        pub(crate) fn new() -> io::Result<Config> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(io::Error::other)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            config.resumption = rustls::client::Resumption::disabled();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Config(Arc::new(config)))
        }

        fn connection(&self) -> io::Result<ClientConnection> {
            let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
            ClientConnection::new(self.0.clone(), name).map_err(io::Error::other)
        }

        pub(crate) fn wrap(&self, stream: StdStream) -> io::Result<Box<dyn Stream>> {
            Ok(Box::new(rustls::StreamOwned::new(
                self.connection()?,
                stream,
            )))
        }

        pub(crate) fn session(&self) -> io::Result<Session> {
            Ok(Session(self.connection()?))
        }
    }

    /// One non-blocking client's TLS state.
    pub(crate) struct Session(ClientConnection);

    impl Session {
        /// Encrypts `plain` (held until the handshake is done, if it is
        /// not) and sends what can go.
        pub(crate) fn send(&mut self, stream: &mut impl Write, plain: &[u8]) -> io::Result<()> {
            self.0.writer().write_all(plain)?;
            self.flush(stream)
        }

        /// Sends the session's records until the socket takes no more.
        pub(crate) fn flush(&mut self, stream: &mut impl Write) -> io::Result<()> {
            while self.0.wants_write() {
                match self.0.write_tls(stream) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }

        /// Plaintext into `buf`, reading records from `stream` as needed:
        /// `Ok(0)` at the end, `WouldBlock` when the socket is empty.
        pub(crate) fn recv(
            &mut self,
            stream: &mut (impl Read + Write),
            buf: &mut [u8],
        ) -> io::Result<usize> {
            loop {
                match self.0.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The server closed without close_notify.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
                if self.0.read_tls(stream)? == 0 {
                    return Ok(0);
                }
                self.0
                    .process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                // The handshake's next flight, and the request it held.
                self.flush(stream)?;
            }
        }
    }
}

#[cfg(not(feature = "tls"))]
mod off {
    use std::io::{self, Read, Write};
    use std::net::TcpStream as StdStream;

    use crate::tls::Stream;

    /// Never made: `new` refuses.
    pub(crate) enum Config {}

    impl Config {
        pub(crate) fn new() -> io::Result<Config> {
            Err(io::Error::other("--tls needs a build with --features tls"))
        }

        pub(crate) fn wrap(&self, _: StdStream) -> io::Result<Box<dyn Stream>> {
            match *self {}
        }

        pub(crate) fn session(&self) -> io::Result<Session> {
            match *self {}
        }
    }

    /// Never made.
    pub(crate) enum Session {}

    impl Session {
        pub(crate) fn send(&mut self, _: &mut impl Write, _: &[u8]) -> io::Result<()> {
            match *self {}
        }

        pub(crate) fn flush(&mut self, _: &mut impl Write) -> io::Result<()> {
            match *self {}
        }

        pub(crate) fn recv(
            &mut self,
            _: &mut (impl Read + Write),
            _: &mut [u8],
        ) -> io::Result<usize> {
            match *self {}
        }
    }
}
