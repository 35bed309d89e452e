//! Signed tokens (JWT): the verifier built at start from the key the
//! configuration gives (an HS256 secret from `STATECAST_JWT_SECRET`, or an
//! Ed25519 or EC P-256 public key from `--jwt-public-key`), what a valid
//! token grants (`topics` to read, `publish` to write), and minting the
//! HS256 tokens `statecast token` prints. Signatures are ring's, the
//! crypto library rustls already brings, so a TLS build carries one; the
//! token's three parts, the claims and the key file's PEM are read here.
//! Only in builds with the `jwt` feature; without it a configured key
//! stops the start, saying so. The claims' times are checked here, against
//! one clock reading the caller passes.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(feature = "jwt")]
use base64::Engine;
#[cfg(feature = "jwt")]
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
#[cfg(feature = "jwt")]
use ring::{hmac, signature};
#[cfg(feature = "jwt")]
use serde::{Deserialize, Serialize};
#[cfg(feature = "jwt")]
use serde_json::Value;

use crate::config::{Config, Secret};

/// How far ahead of ours the issuer's clock may be: `nbf` and `iat` up to
/// this far in the future are taken. `exp` gets none, so a token is never
/// accepted at or past its `exp`, and a connection opened with it is
/// closed at that second, the same instant either way.
pub const SKEW: Duration = Duration::from_secs(30);

/// The environment variable the HS256 secret comes from; never a flag or
/// a config file key, where other users of the host could read it.
pub const SECRET_ENV: &str = crate::config::options::JWT_SECRET_ENV;

/// Checks tokens against the one key the configuration gives. The
/// algorithm is the key's: a token whose header names another is refused,
/// whatever it says.
pub struct Verifier {
    #[cfg(feature = "jwt")]
    key: Key,
    /// `--jwt-audience`: when set, `aud` must name it.
    #[cfg(feature = "jwt")]
    audience: Option<String>,
    /// `--jwt-issuer`: when set, `iss` must name it.
    #[cfg(feature = "jwt")]
    issuer: Option<String>,
    /// Without the `jwt` feature no verifier is ever made.
    #[cfg(not(feature = "jwt"))]
    never: std::convert::Infallible,
}

/// The algorithms statecast takes, one for each kind of key.
#[cfg(feature = "jwt")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC with SHA-256, under the shared secret.
    HS256,
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// ECDSA on P-256 with SHA-256, the signature as r and s, 32 bytes
    /// each (RFC 7518 §3.4), not ASN.1.
    ES256,
}

#[cfg(feature = "jwt")]
impl Algorithm {
    /// How a token's header names it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
        }
    }
}

/// The key, in the form ring verifies with.
#[cfg(feature = "jwt")]
enum Key {
    /// The HS256 secret.
    Hs256(hmac::Key),
    /// An Ed25519 public key, its 32 bytes.
    EdDSA(Vec<u8>),
    /// A P-256 public key, the uncompressed point (65 bytes, `04 x y`).
    Es256(Vec<u8>),
}

#[cfg(feature = "jwt")]
impl Key {
    fn algorithm(&self) -> Algorithm {
        match self {
            Key::Hs256(_) => Algorithm::HS256,
            Key::EdDSA(_) => Algorithm::EdDSA,
            Key::Es256(_) => Algorithm::ES256,
        }
    }

    /// Whether `signature` is this key's over `signed`; the HMAC is
    /// compared in constant time (ring's `verify`).
    fn verifies(&self, signed: &[u8], sig: &[u8]) -> bool {
        let public = |alg, key: &[u8]| {
            signature::UnparsedPublicKey::new(alg, key)
                .verify(signed, sig)
                .is_ok()
        };
        match self {
            Key::Hs256(key) => hmac::verify(key, signed, sig).is_ok(),
            Key::EdDSA(key) => public(&signature::ED25519, key),
            Key::Es256(key) => public(&signature::ECDSA_P256_SHA256_FIXED, key),
        }
    }
}

#[cfg(feature = "jwt")]
impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is not printed: an HS256 key is the secret itself.
        write!(f, "Verifier({:?})", self.algorithm())
    }
}

#[cfg(not(feature = "jwt"))]
impl fmt::Debug for Verifier {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.never {}
    }
}

/// Why a token was refused: said in the 401's body, never with the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not three base64url parts of JSON, or claims of the wrong type, or
    /// a header with `crit` (no extension is understood here).
    Malformed,
    /// Its header names an algorithm other than the key's (`none` too).
    Algorithm,
    /// The signature does not match the key.
    Signature,
    /// It has no `exp`.
    NoExpiry,
    /// `exp` has passed.
    Expired,
    /// `nbf` is more than [`SKEW`] ahead.
    NotYetValid,
    /// `iat` is more than [`SKEW`] ahead.
    IssuedInFuture,
    /// `aud` is missing or not `--jwt-audience`.
    Audience,
    /// `iss` is missing or not `--jwt-issuer`.
    Issuer,
    /// A `topics` or `publish` entry with `*` anywhere but at its end.
    Pattern,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Malformed => "malformed token",
            Refusal::Algorithm => "token signed with an algorithm this server does not take",
            Refusal::Signature => "bad token signature",
            Refusal::NoExpiry => "token has no exp",
            Refusal::Expired => "token expired",
            Refusal::NotYetValid => "token not valid yet (nbf)",
            Refusal::IssuedInFuture => "token issued in the future (iat)",
            Refusal::Audience => "token audience is not --jwt-audience",
            Refusal::Issuer => "token issuer is not --jwt-issuer",
            Refusal::Pattern => "token grants a pattern with * before its end",
        })
    }
}

#[cfg(feature = "jwt")]
/// The header fields statecast reads; the rest (`typ`, `kid`, ...) are
/// ignored.
#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    /// Extensions a verifier must understand or refuse the token (RFC 7515
    /// §4.1.11); none is understood here.
    crit: Option<serde::de::IgnoredAny>,
    /// `false` would mean a payload that is not base64url (RFC 7797).
    b64: Option<bool>,
}

#[cfg(feature = "jwt")]
/// The claims statecast reads, and the rest are ignored. `exp` is
/// optional here only so that its absence has its own refusal; `aud` and
/// `iss` are read only when configured, so they take any JSON here.
#[derive(Debug, Deserialize)]
struct Claims {
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    sub: Option<String>,
    aud: Option<Value>,
    iss: Option<Value>,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

#[cfg(feature = "jwt")]
/// The claims `statecast token` writes.
#[derive(Debug, Serialize)]
struct Minted<'a> {
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    topics: &'a [String],
    publish: &'a [String],
}

/// What a valid token allows, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Its `exp`, in seconds since the Unix epoch.
    pub exp: u64,
    /// Its `sub`: who the peer is, for the log.
    pub sub: Option<String>,
    /// Topics it may read (`topics`).
    topics: Vec<String>,
    /// Topics it may publish to (`publish`).
    publish: Vec<String>,
}

impl Grant {
    /// Whether `topics` covers `topic`.
    pub fn may_read(&self, topic: &str) -> bool {
        covers(&self.topics, topic)
    }

    /// Whether `topics` names anything: a token for publishing only may
    /// read nothing, not even the broadcasts every reader gets.
    pub fn may_read_some(&self) -> bool {
        !self.topics.is_empty()
    }

    /// Whether `publish` covers `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        covers(&self.publish, topic)
    }

    /// Whether `topics` has `*`: every topic, so also `/metrics` and the
    /// details of `/healthz`, which are about every topic.
    pub fn may_read_all(&self) -> bool {
        self.topics.iter().any(|p| p == "*")
    }

    /// Whether `publish` has `*`: a broadcast reaches every subscriber of
    /// every topic, so it needs that.
    pub fn may_publish_all(&self) -> bool {
        self.publish.iter().any(|p| p == "*")
    }

    /// When it expires, as an instant on `now`'s clock; `None` if that is
    /// past what an `Instant` can hold (never, in practice).
    pub fn expires_at(&self, now: std::time::Instant) -> Option<std::time::Instant> {
        let exp = UNIX_EPOCH.checked_add(Duration::from_secs(self.exp))?;
        let left = exp
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        now.checked_add(left)
    }
}

/// An exact name, or a prefix ending in `*` (`adw-state/*`, `*`).
fn covers(patterns: &[String], topic: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => p == topic,
    })
}

/// Seconds since the Unix epoch now; 0 on a clock set before it.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Verifier {
    /// The verifier the configuration asks for: none without a key; an
    /// error, naming the file or the variable but never the key, for a
    /// key that cannot be used.
    pub fn from_config(config: &Config) -> Result<Option<Verifier>, String> {
        let (aud, iss) = (config.jwt_audience.as_deref(), config.jwt_issuer.as_deref());
        match (&config.jwt_secret, &config.jwt_public_key) {
            (Some(_), Some(path)) => Err(format!(
                "{SECRET_ENV} and --jwt-public-key {} are both set: give one key, \
                 whose type fixes the algorithm",
                path.display()
            )),
            (Some(secret), None) => Verifier::hs256(secret, aud, iss).map(Some),
            (None, Some(path)) => Verifier::from_pem_file(path, aud, iss).map(Some),
            (None, None) if aud.is_some() || iss.is_some() => Err(
                "--jwt-audience and --jwt-issuer need a key: --jwt-public-key FILE or \
                 STATECAST_JWT_SECRET"
                    .into(),
            ),
            (None, None) => Ok(None),
        }
    }
}

/// Why a build without the `jwt` feature cannot take a key.
#[cfg(not(feature = "jwt"))]
fn left_out() -> String {
    format!(
        "signed tokens ({SECRET_ENV}, --jwt-public-key, statecast token) need the jwt \
         feature, which this build leaves out: build with --features jwt (the Debian \
         package has it)"
    )
}

#[cfg(not(feature = "jwt"))]
impl Verifier {
    fn hs256(_: &Secret, _: Option<&str>, _: Option<&str>) -> Result<Verifier, String> {
        Err(left_out())
    }

    fn from_pem_file(_: &Path, _: Option<&str>, _: Option<&str>) -> Result<Verifier, String> {
        Err(left_out())
    }

    pub fn verify(&self, _: &str, _: u64) -> Result<Grant, Refusal> {
        match self.never {}
    }
}

/// Without the `jwt` feature nothing is minted.
#[cfg(not(feature = "jwt"))]
pub fn mint(_: &Secret, _: &Minting, _: u64) -> Result<String, String> {
    Err(left_out())
}

#[cfg(feature = "jwt")]
impl Verifier {
    /// HS256 with a shared secret.
    pub fn hs256(
        secret: &Secret,
        aud: Option<&str>,
        iss: Option<&str>,
    ) -> Result<Verifier, String> {
        let key = hmac_key(secret)?;
        Ok(Verifier::new(Key::Hs256(key), aud, iss))
    }

    /// EdDSA or ES256, by the type of the public key in the PEM file at
    /// `path`.
    pub fn from_pem_file(
        path: &Path,
        aud: Option<&str>,
        iss: Option<&str>,
    ) -> Result<Verifier, String> {
        let file = path.display();
        let pem = std::fs::read(path)
            .map_err(|e| format!("--jwt-public-key: cannot read {file}: {e}"))?;
        let key = public_key(&pem).map_err(|why| format!("--jwt-public-key {file}: {why}"))?;
        Ok(Verifier::new(key, aud, iss))
    }

    fn new(key: Key, aud: Option<&str>, iss: Option<&str>) -> Verifier {
        Verifier {
            key,
            audience: aud.map(str::to_owned),
            issuer: iss.map(str::to_owned),
        }
    }

    /// The algorithm every token must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// Checks `token` at `now` (seconds since the Unix epoch): its header's
    /// algorithm, then the signature, then the claims' types, `iss` and
    /// `aud` when configured, the times and the patterns. Nothing past the
    /// header is read before the signature holds.
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, Refusal> {
        let (signed, sig) = token.rsplit_once('.').ok_or(Refusal::Malformed)?;
        let (header, payload) = signed.split_once('.').ok_or(Refusal::Malformed)?;
        if payload.contains('.') {
            return Err(Refusal::Malformed);
        }
        let header: Header = json_part(header)?;
        if header.crit.is_some() || header.b64 == Some(false) {
            return Err(Refusal::Malformed);
        }
        // The header is never believed: it must name the key's algorithm,
        // so `none`, or HS256 against a public key, goes no further.
        if header.alg != self.algorithm().name() {
            return Err(Refusal::Algorithm);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| Refusal::Malformed)?;
        if !self.key.verifies(signed.as_bytes(), &sig) {
            return Err(Refusal::Signature);
        }
        let claims: Claims = json_part(payload)?;
        if let Some(iss) = &self.issuer
            && !names(claims.iss.as_ref(), iss)
        {
            return Err(Refusal::Issuer);
        }
        if let Some(aud) = &self.audience
            && !names(claims.aud.as_ref(), aud)
        {
            return Err(Refusal::Audience);
        }
        let skew = SKEW.as_secs();
        let exp = claims.exp.ok_or(Refusal::NoExpiry)?;
        if now >= exp {
            return Err(Refusal::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
            return Err(Refusal::NotYetValid);
        }
        if claims.iat.is_some_and(|iat| iat > now.saturating_add(skew)) {
            return Err(Refusal::IssuedInFuture);
        }
        let misplaced_star = |p: &String| p.find('*').is_some_and(|at| at + 1 != p.len());
        if claims
            .topics
            .iter()
            .chain(&claims.publish)
            .any(misplaced_star)
        {
            return Err(Refusal::Pattern);
        }
        Ok(Grant {
            exp,
            sub: claims.sub,
            topics: claims.topics,
            publish: claims.publish,
        })
    }
}

/// A token's part: base64url without padding, of JSON.
#[cfg(feature = "jwt")]
fn json_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, Refusal> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Refusal::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Refusal::Malformed)
}

/// Whether `aud` or `iss` names `wanted`: one string, or a list of
/// strings one of which it is (RFC 7519 §4.1.3 allows either for `aud`;
/// the list is taken for `iss` too, as issuers' libraries write it).
#[cfg(feature = "jwt")]
fn names(claim: Option<&Value>, wanted: &str) -> bool {
    match claim {
        Some(Value::String(one)) => one == wanted,
        Some(Value::Array(list)) => {
            list.iter().all(Value::is_string) && list.iter().any(|v| v.as_str() == Some(wanted))
        }
        _ => false,
    }
}

/// The secret as an HMAC-SHA256 key; an empty one is refused.
#[cfg(feature = "jwt")]
fn hmac_key(secret: &Secret) -> Result<hmac::Key, String> {
    let bytes = secret.expose().as_bytes();
    if bytes.is_empty() {
        return Err(format!("{SECRET_ENV} is empty"));
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, bytes))
}

/// DER tags and object identifiers a public key file's SPKI (RFC 5280
/// §4.1.2.7) is read with.
#[cfg(feature = "jwt")]
mod der {
    pub const SEQUENCE: u8 = 0x30;
    pub const BIT_STRING: u8 = 0x03;
    pub const OID: u8 = 0x06;
    /// 1.3.101.112 (RFC 8410).
    pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    /// 1.2.840.10045.2.1, id-ecPublicKey (RFC 5480).
    pub const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// 1.2.840.10045.3.1.7, secp256r1 (RFC 5480).
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// 1.2.840.113549.1.1.1, rsaEncryption (RFC 8017).
    pub const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

    /// One element at the start of `input`: its tag, its contents and
    /// what follows it. Lengths up to 65535 bytes, which a public key's
    /// never passes; `None` for anything cut short.
    pub fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = match first {
            0..=0x7f => (usize::from(first), rest),
            0x81 => {
                let (&len, rest) = rest.split_first()?;
                (usize::from(len), rest)
            }
            0x82 => {
                let (len, rest) = rest.split_first_chunk::<2>()?;
                (usize::from(u16::from_be_bytes(*len)), rest)
            }
            _ => return None,
        };
        Some((tag, rest.get(..len)?, rest.get(len..)?))
    }

    /// What a SubjectPublicKeyInfo holds.
    pub struct Spki<'a> {
        /// The algorithm's object identifier.
        pub algorithm: &'a [u8],
        /// Its parameter, when that is an object identifier (an EC key's
        /// curve).
        pub curve: Option<&'a [u8]>,
        /// The key's bytes.
        pub key: &'a [u8],
    }

    /// A SubjectPublicKeyInfo; `None` unless `input` is exactly one.
    pub fn spki(input: &[u8]) -> Option<Spki<'_>> {
        let (SEQUENCE, info, []) = element(input)? else {
            return None;
        };
        let (SEQUENCE, algorithm, rest) = element(info)? else {
            return None;
        };
        let (BIT_STRING, bits, []) = element(rest)? else {
            return None;
        };
        let (OID, oid, parameters) = element(algorithm)? else {
            return None;
        };
        let curve = match element(parameters) {
            Some((OID, curve, [])) => Some(curve),
            _ => None,
        };
        // A key is whole bytes: no unused bits in the last.
        let (0, key) = bits.split_first()? else {
            return None;
        };
        Some(Spki {
            algorithm: oid,
            curve,
            key,
        })
    }
}

/// The key in a PEM file, with the one algorithm it is for. Errors say
/// what the file holds, never its bytes.
#[cfg(feature = "jwt")]
fn public_key(pem: &[u8]) -> Result<Key, String> {
    const NOT_A_KEY: &str =
        "not an Ed25519 or EC P-256 public key in PEM (-----BEGIN PUBLIC KEY-----)";
    const RSA: &str = "an RSA key: only Ed25519 (EdDSA) and EC P-256 (ES256) keys are supported";
    let text = String::from_utf8_lossy(pem);
    if text.contains("PRIVATE KEY-----") {
        return Err("holds a private key; give its public half \
                    (openssl pkey -in KEY -pubout)"
            .into());
    }
    if text.contains("-----BEGIN RSA PUBLIC KEY-----") {
        return Err(RSA.into());
    }
    let der = pem_block(&text, "PUBLIC KEY").ok_or(NOT_A_KEY)?;
    let der::Spki {
        algorithm,
        curve,
        key,
    } = der::spki(&der).ok_or(NOT_A_KEY)?;
    match (algorithm, curve) {
        (der::ED25519, None) if key.len() == 32 => Ok(Key::EdDSA(key.to_vec())),
        (der::ED25519, _) => Err("not a usable Ed25519 public key".into()),
        // ring takes the uncompressed point, which openssl writes; whether
        // it is on the curve ring sees only when a token comes, so a
        // point off it refuses every token's signature.
        (der::EC, Some(der::P256)) if key.len() == 65 && key.first() == Some(&4) => {
            Ok(Key::Es256(key.to_vec()))
        }
        (der::EC, Some(der::P256)) => Err(
            "not a usable EC P-256 public key (give its uncompressed form: \
                 openssl pkey -pubin -in KEY -pubout)"
                .into(),
        ),
        (der::EC, _) => Err("an EC key not on P-256: only P-256 (ES256) is supported".into()),
        (der::RSA, _) => Err(RSA.into()),
        _ => Err(NOT_A_KEY.into()),
    }
}

/// The bytes of the first `-----BEGIN {label}-----` block (RFC 7468),
/// whatever text surrounds it.
#[cfg(feature = "jwt")]
fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    let (_, rest) = text.split_once(&format!("-----BEGIN {label}-----"))?;
    let (body, _) = rest.split_once(&format!("-----END {label}-----"))?;
    let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(base64).ok()
}

/// What `statecast token` puts in a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Minting {
    pub topics: Vec<String>,
    pub publish: Vec<String>,
    /// How long from now it is valid.
    pub lifetime: Duration,
    pub sub: Option<String>,
    pub aud: Option<String>,
    pub iss: Option<String>,
}

/// The header of every token `statecast token` mints.
#[cfg(feature = "jwt")]
const MINTED_HEADER: &str = r#"{"typ":"JWT","alg":"HS256"}"#;

/// An HS256 token signed with `secret`, issued at `now`.
#[cfg(feature = "jwt")]
pub fn mint(secret: &Secret, what: &Minting, now: u64) -> Result<String, String> {
    let claims = Minted {
        exp: now.saturating_add(what.lifetime.as_secs()),
        iat: now,
        sub: what.sub.as_deref(),
        aud: what.aud.as_deref(),
        iss: what.iss.as_deref(),
        topics: &what.topics,
        publish: &what.publish,
    };
    let key = hmac_key(secret)?;
    let claims = serde_json::to_vec(&claims).map_err(|e| format!("cannot sign the token: {e}"))?;
    let mut token = URL_SAFE_NO_PAD.encode(MINTED_HEADER);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut token);
    let tag = hmac::sign(&key, token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    Ok(token)
}

#[cfg(test)]
mod tests {
    /// Builds without signed tokens.
    #[cfg(not(feature = "jwt"))]
    mod without {
        use super::super::*;

        /// A build without the feature says so, and names the way out, when a
        /// key is given or a token asked for.
        #[test]
        fn a_key_needs_the_feature() {
            let config = Config {
                jwt_secret: Some(Secret::new("a-secret-of-enough-length-for-hs256")),
                ..Config::default()
            };
            let e = Verifier::from_config(&config).unwrap_err();
            assert!(e.contains("--features jwt"), "{e}");
            let e = mint(
                &Secret::new("a-secret-of-enough-length-for-hs256"),
                &Minting::default(),
                0,
            );
            assert!(e.unwrap_err().contains("--features jwt"));
        }
    }

    /// Builds with them.
    #[cfg(feature = "jwt")]
    mod signed {
        use super::super::*;
        // The tokens are signed by another library than the one verifying.
        use jsonwebtoken::{Algorithm as Signing, EncodingKey, Header};
        use serde_json::json;

        const SECRET: &str = "hs256-test-secret-0123456789abcd";
        const NOW: u64 = 1_800_000_000;
        /// base64url of `{"alg":"none","typ":"JWT"}`.
        const NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";

        /// A test key under tests/data/jwt (test-only keys, made with openssl).
        fn data(name: &str) -> std::path::PathBuf {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/jwt")
                .join(name)
        }

        fn read(name: &str) -> Vec<u8> {
            std::fs::read(data(name)).unwrap()
        }

        fn claims() -> serde_json::Value {
            json!({"exp": NOW + 60, "sub": "alice", "topics": ["queue", "adw-state/*"], "publish": ["queue"]})
        }

        fn sign(alg: Signing, key: &EncodingKey, claims: &serde_json::Value) -> String {
            jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
        }

        fn hs(claims: &serde_json::Value) -> String {
            sign(
                Signing::HS256,
                &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
                claims,
            )
        }

        fn ed(claims: &serde_json::Value) -> String {
            let key = EncodingKey::from_ed_pem(&read("ed25519.key")).unwrap();
            sign(Signing::EdDSA, &key, claims)
        }

        fn es(claims: &serde_json::Value) -> String {
            let key = EncodingKey::from_ec_pem(&read("p256.key")).unwrap();
            sign(Signing::ES256, &key, claims)
        }

        fn hs_verifier() -> Verifier {
            Verifier::hs256(&Secret::new(SECRET), None, None).unwrap()
        }

        fn pem_verifier(name: &str) -> Verifier {
            Verifier::from_pem_file(&data(name), None, None).unwrap()
        }

        /// A valid token of each kind gives its topics, its publish rights,
        /// its exp and its sub.
        #[test]
        fn each_key_type_accepts_its_own_tokens() {
            for (verifier, token, alg) in [
                (hs_verifier(), hs(&claims()), Algorithm::HS256),
                (pem_verifier("ed25519.pub"), ed(&claims()), Algorithm::EdDSA),
                (pem_verifier("p256.pub"), es(&claims()), Algorithm::ES256),
            ] {
                assert_eq!(verifier.algorithm(), alg);
                let grant = verifier.verify(&token, NOW).unwrap();
                assert_eq!(grant.exp, NOW + 60);
                assert_eq!(grant.sub.as_deref(), Some("alice"));
                assert!(grant.may_read("queue") && grant.may_read("adw-state/abc12345"));
                assert!(!grant.may_read("workflows") && !grant.may_read("adw-statex"));
                assert!(grant.may_publish("queue") && !grant.may_publish("adw-state/abc12345"));
                assert!(!grant.may_read_all() && !grant.may_publish_all());
            }
        }

        /// `exp` is exact: refused at that second and after; a token without
        /// one, or with one that is not a number, is refused.
        #[test]
        fn expired_and_missing_exp_are_refused() {
            let v = hs_verifier();
            let token = hs(&claims());
            assert!(v.verify(&token, NOW + 59).is_ok());
            assert_eq!(v.verify(&token, NOW + 60), Err(Refusal::Expired));
            assert_eq!(v.verify(&token, NOW + 6000), Err(Refusal::Expired));
            let no_exp = hs(&json!({"topics": ["*"]}));
            assert_eq!(v.verify(&no_exp, NOW), Err(Refusal::NoExpiry));
            let text_exp = hs(&json!({"exp": "tomorrow", "topics": ["*"]}));
            assert_eq!(v.verify(&text_exp, NOW), Err(Refusal::Malformed));
        }

        /// `nbf` and `iat` up to `SKEW` ahead pass; one second more is refused.
        #[test]
        fn nbf_and_iat_in_the_future_are_refused_past_the_skew() {
            let v = hs_verifier();
            let skew = SKEW.as_secs();
            let with = |claim: &str, at: u64| {
                let mut c = claims();
                c[claim] = json!(at);
                c["exp"] = json!(NOW + 3600);
                v.verify(&hs(&c), NOW)
            };
            assert!(with("nbf", NOW + skew).is_ok());
            assert_eq!(with("nbf", NOW + skew + 1), Err(Refusal::NotYetValid));
            assert!(with("iat", NOW + skew).is_ok());
            assert_eq!(with("iat", NOW + skew + 1), Err(Refusal::IssuedInFuture));
            assert!(with("iat", NOW - 600).is_ok());
        }

        /// A token signed with another secret or another key fails its
        /// signature.
        #[test]
        fn a_wrong_key_is_refused() {
            let other = EncodingKey::from_secret(b"another-secret-0123456789").unwrap();
            let token = sign(Signing::HS256, &other, &claims());
            assert_eq!(hs_verifier().verify(&token, NOW), Err(Refusal::Signature));
            let v = pem_verifier("other-ed25519.pub");
            assert_eq!(v.verify(&ed(&claims()), NOW), Err(Refusal::Signature));
            // A payload changed after signing.
            let token = hs(&claims());
            let forged = hs(&json!({"exp": NOW + 60, "topics": ["*"]}));
            let parts: Vec<&str> = token.split('.').collect();
            let forged_parts: Vec<&str> = forged.split('.').collect();
            let spliced = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
            assert_eq!(hs_verifier().verify(&spliced, NOW), Err(Refusal::Signature));
        }

        /// `alg: none` is refused by every key, with or without a signature,
        /// as an algorithm the server does not take.
        #[test]
        fn alg_none_is_refused() {
            let token = hs(&claims());
            let payload = token.split('.').nth(1).unwrap();
            for v in [
                hs_verifier(),
                pem_verifier("ed25519.pub"),
                pem_verifier("p256.pub"),
            ] {
                for unsigned in [
                    format!("{NONE_HEADER}.{payload}."),
                    format!(
                        "{NONE_HEADER}.{payload}.{}",
                        token.split('.').nth(2).unwrap()
                    ),
                ] {
                    assert_eq!(
                        v.verify(&unsigned, NOW),
                        Err(Refusal::Algorithm),
                        "{v:?} on alg none"
                    );
                }
            }
        }

        /// The key confusion attack: an HS256 token whose HMAC key is the
        /// public key (its PEM text, or its raw bytes) is refused by a server
        /// holding that public key, since the algorithm is the key's.
        #[test]
        fn hs256_against_a_public_key_is_refused() {
            for name in ["ed25519.pub", "p256.pub"] {
                let v = pem_verifier(name);
                let pem = read(name);
                let raw = match &v.key {
                    Key::EdDSA(raw) | Key::Es256(raw) => raw.clone(),
                    Key::Hs256(_) => unreachable!("{name} is a public key"),
                };
                for secret in [pem.clone(), raw] {
                    let key = EncodingKey::from_secret(&secret).unwrap();
                    let token = sign(Signing::HS256, &key, &claims());
                    assert_eq!(v.verify(&token, NOW), Err(Refusal::Algorithm), "{name}");
                }
            }
        }

        /// The right key with another algorithm of its family is refused: an
        /// HS512 token under the HS256 secret; an EdDSA token against the
        /// ES256 key and the other way round.
        #[test]
        fn the_right_key_with_another_algorithm_is_refused() {
            let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
            for alg in [Signing::HS384, Signing::HS512] {
                let token = sign(alg, &key, &claims());
                assert_eq!(hs_verifier().verify(&token, NOW), Err(Refusal::Algorithm));
            }
            let es_verifier = pem_verifier("p256.pub");
            assert_eq!(
                es_verifier.verify(&ed(&claims()), NOW),
                Err(Refusal::Algorithm)
            );
            let ed_verifier = pem_verifier("ed25519.pub");
            assert_eq!(
                ed_verifier.verify(&es(&claims()), NOW),
                Err(Refusal::Algorithm)
            );
        }

        /// With `--jwt-audience` and `--jwt-issuer`, a token must name them:
        /// another value, or none, is refused. Without them, neither is read.
        #[test]
        fn audience_and_issuer_are_checked_when_configured() {
            let strict = Verifier::hs256(&Secret::new(SECRET), Some("dash"), Some("auth")).unwrap();
            let with = |aud: Option<&str>, iss: Option<&str>| {
                let mut c = claims();
                if let Some(aud) = aud {
                    c["aud"] = json!(aud);
                }
                if let Some(iss) = iss {
                    c["iss"] = json!(iss);
                }
                hs(&c)
            };
            assert!(
                strict
                    .verify(&with(Some("dash"), Some("auth")), NOW)
                    .is_ok()
            );
            let mut listed = claims();
            listed["aud"] = json!(["other", "dash"]);
            listed["iss"] = json!("auth");
            assert!(strict.verify(&hs(&listed), NOW).is_ok(), "aud as a list");
            let refused = [
                (with(Some("other"), Some("auth")), Refusal::Audience),
                (with(None, Some("auth")), Refusal::Audience),
                (with(Some("dash"), Some("evil")), Refusal::Issuer),
                (with(Some("dash"), None), Refusal::Issuer),
            ];
            for (token, why) in refused {
                assert_eq!(strict.verify(&token, NOW), Err(why));
            }
            let open = hs_verifier();
            assert!(
                open.verify(&with(Some("anyone"), Some("anybody")), NOW)
                    .is_ok()
            );
        }

        /// Anything that is not a JWT is malformed, and never a panic.
        #[test]
        fn garbage_is_refused() {
            let v = hs_verifier();
            let token = hs(&claims());
            let (head, rest) = token.split_once('.').unwrap();
            for garbage in [
                "",
                ".",
                "..",
                "a.b",
                "a.b.c",
                "not a token",
                "a.b.c.d",
                &format!("{token}.x"),
                &format!("{head}.!!!.{}", rest.split('.').nth(1).unwrap()),
                &format!("{head}.e30.sig"),
                "eyJ.eyJ.eyJ",
                "\u{0}\u{1}.\u{2}.\u{3}",
            ] {
                assert!(v.verify(garbage, NOW).is_err(), "{garbage:?}");
            }
            let bad_topics = hs(&json!({"exp": NOW + 60, "topics": "queue"}));
            assert_eq!(v.verify(&bad_topics, NOW), Err(Refusal::Malformed));
        }

        /// `*` stands only at the end of an entry; elsewhere the token is
        /// refused rather than read one way or another.
        #[test]
        fn patterns_are_names_or_prefixes() {
            let v = hs_verifier();
            let grant = v
                .verify(
                    &hs(&json!({"exp": NOW + 60, "topics": ["*"], "publish": ["*"]})),
                    NOW,
                )
                .unwrap();
            assert!(grant.may_read_all() && grant.may_read("anything"));
            assert!(grant.may_publish_all() && grant.may_publish("anything"));
            let none = v.verify(&hs(&json!({"exp": NOW + 60})), NOW).unwrap();
            assert!(!none.may_read("queue") && !none.may_publish("queue"));
            for bad in ["a*b", "*queue", "**x"] {
                let token = hs(&json!({"exp": NOW + 60, "publish": [bad]}));
                assert_eq!(v.verify(&token, NOW), Err(Refusal::Pattern), "{bad}");
            }
        }

        /// A key file that cannot be used fails with what it holds and the
        /// file's name, never its bytes.
        #[test]
        fn unusable_key_files_are_named() {
            let junk =
                std::env::temp_dir().join(format!("statecast-jwt-{}.pem", std::process::id()));
            std::fs::write(
                &junk,
                "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
            )
            .unwrap();
            for (path, expect) in [
                (data("ed25519.key"), "private key"),
                (data("p384.pub"), "P-256"),
                (data("rsa.pub"), "RSA"),
                (junk.clone(), "not an Ed25519 or EC P-256 public key"),
                (data("missing.pub"), "cannot read"),
            ] {
                let e = Verifier::from_pem_file(&path, None, None).unwrap_err();
                assert!(e.contains(expect), "{e}");
                assert!(e.contains(&path.display().to_string()), "{e}");
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for line in text.lines().filter(|l| !l.starts_with("-----")) {
                    assert!(!e.contains(line), "{e} shows the key");
                }
            }
            let _ = std::fs::remove_file(junk);
        }

        /// One key: a secret and a public key together are refused, and so
        /// are an audience or an issuer without a key.
        #[test]
        fn the_configuration_gives_one_key() {
            let mut c = Config::default();
            assert!(Verifier::from_config(&c).unwrap().is_none());
            c.jwt_audience = Some("dash".into());
            assert!(
                Verifier::from_config(&c)
                    .unwrap_err()
                    .contains("need a key")
            );
            c.jwt_secret = Some(Secret::new(SECRET));
            assert!(Verifier::from_config(&c).unwrap().is_some());
            c.jwt_public_key = Some(data("ed25519.pub"));
            let e = Verifier::from_config(&c).unwrap_err();
            assert!(e.contains("both") && !e.contains(SECRET), "{e}");
            c.jwt_secret = None;
            assert_eq!(
                Verifier::from_config(&c).unwrap().unwrap().algorithm(),
                Algorithm::EdDSA
            );
            assert!(!format!("{:?}", hs_verifier()).contains(SECRET));
        }

        /// A token with `header` over `claims`, signed with the test secret
        /// by the other library, whatever the header says.
        fn hs_with_header(header: &serde_json::Value, claims: &serde_json::Value) -> String {
            let part = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
            let signed = format!("{}.{}", part(header), part(claims));
            let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
            let sig = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Signing::HS256).unwrap();
            format!("{signed}.{sig}")
        }

        /// A header is read for its `alg` alone, and an extension the
        /// token says must be understood (`crit`, or `b64: false`) is
        /// refused as malformed, even with a good signature; other fields
        /// (`kid`, `typ`) change nothing.
        #[test]
        fn headers_with_extensions_are_refused() {
            let v = hs_verifier();
            let with = |header| v.verify(&hs_with_header(&header, &claims()), NOW);
            assert!(with(json!({"alg": "HS256", "kid": "k1", "typ": "at+jwt"})).is_ok());
            for header in [
                json!({"alg": "HS256", "crit": ["exp"], "exp": 1}),
                json!({"alg": "HS256", "crit": ["b64"], "b64": true}),
                json!({"alg": "HS256", "b64": false}),
                json!({"typ": "JWT"}),
                json!(["HS256"]),
            ] {
                assert_eq!(with(header.clone()), Err(Refusal::Malformed), "{header}");
            }
            for header in [json!({"alg": "hs256"}), json!({"alg": "ES256"})] {
                assert_eq!(with(header.clone()), Err(Refusal::Algorithm), "{header}");
            }
        }

        /// An `aud` or `iss` list counts only when every entry is a string,
        /// and another type (a number, an object) is no name at all.
        #[test]
        fn audience_and_issuer_are_strings() {
            let strict = Verifier::hs256(&Secret::new(SECRET), Some("dash"), Some("auth")).unwrap();
            let with = |aud: serde_json::Value, iss: serde_json::Value| {
                let mut c = claims();
                c["aud"] = aud;
                c["iss"] = iss;
                strict.verify(&hs(&c), NOW)
            };
            assert!(with(json!(["dash"]), json!(["auth", "other"])).is_ok());
            assert_eq!(
                with(json!(["dash", 1]), json!("auth")),
                Err(Refusal::Audience)
            );
            assert_eq!(
                with(json!({"dash": true}), json!("auth")),
                Err(Refusal::Audience)
            );
            assert_eq!(with(json!("dash"), json!(7)), Err(Refusal::Issuer));
            assert_eq!(with(json!("dash"), json!([])), Err(Refusal::Issuer));
        }

        /// An ES256 signature must be r and s, 64 bytes: the same signature
        /// in ASN.1 (as openssl's `dgst -sign` writes it) does not verify.
        #[test]
        fn es256_signatures_are_fixed_width() {
            let token = es(&claims());
            let (signed, sig) = token.rsplit_once('.').unwrap();
            let fixed = URL_SAFE_NO_PAD.decode(sig).unwrap();
            assert_eq!(fixed.len(), 64);
            let int = |half: &[u8]| {
                let half: Vec<u8> = half.iter().copied().skip_while(|&b| b == 0).collect();
                let pad = half.first().is_some_and(|&b| b >= 0x80);
                let mut out = vec![0x02, (half.len() + usize::from(pad)) as u8];
                out.extend(pad.then_some(0));
                out.extend(half);
                out
            };
            let body = [int(&fixed[..32]), int(&fixed[32..])].concat();
            let asn1 = [vec![0x30, body.len() as u8], body].concat();
            let v = pem_verifier("p256.pub");
            assert!(v.verify(&token, NOW).is_ok());
            let reencoded = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(asn1));
            assert_eq!(v.verify(&reencoded, NOW), Err(Refusal::Signature));
        }

        /// A key file's DER cut short anywhere, or with a byte after it, is
        /// not a key (and never a panic); the PEM block is found among
        /// other text, as `openssl` prints it with `-text`.
        #[test]
        fn key_files_are_read_exactly() {
            for name in ["ed25519.pub", "p256.pub"] {
                let text = String::from_utf8(read(name)).unwrap();
                let der = pem_block(&text, "PUBLIC KEY").unwrap();
                let pem = |der: &[u8]| {
                    let body = STANDARD.encode(der);
                    format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n")
                };
                assert!(public_key(pem(&der).as_bytes()).is_ok(), "{name}");
                for cut in 0..der.len() {
                    let e = public_key(pem(&der[..cut]).as_bytes()).err();
                    assert!(e.is_some_and(|e| e.contains("not")), "{name} cut at {cut}");
                }
                let longer = [der.as_slice(), &[0]].concat();
                assert!(
                    public_key(pem(&longer).as_bytes()).is_err(),
                    "{name} longer"
                );
                let surrounded = format!("Public-Key: (256 bit)\n{text}trailing words\n");
                assert!(public_key(surrounded.as_bytes()).is_ok(), "{name} in text");
            }
        }

        /// What `statecast token` mints is a standard token: the other
        /// library verifies it, with its audience and issuer.
        #[test]
        fn minted_tokens_verify_elsewhere() {
            let minting = Minting {
                topics: vec!["queue".into()],
                publish: vec!["queue".into()],
                lifetime: Duration::from_secs(3600),
                sub: Some("alice".into()),
                aud: Some("dash".into()),
                iss: Some("ops".into()),
            };
            let now = unix_now();
            let token = mint(&Secret::new(SECRET), &minting, now).unwrap();
            let mut validation = jsonwebtoken::Validation::new(Signing::HS256);
            validation.set_audience(&["dash"]);
            validation.set_issuer(&["ops"]);
            let key = jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()).unwrap();
            let data =
                jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
            assert_eq!(data.header.alg, Signing::HS256);
            assert_eq!(data.header.typ.as_deref(), Some("JWT"));
            assert_eq!(data.claims["exp"], json!(now + 3600));
            assert_eq!(data.claims["iat"], json!(now));
            assert_eq!(data.claims["sub"], json!("alice"));
            assert_eq!(data.claims["topics"], json!(["queue"]));
        }

        /// What `statecast token` mints, the verifier takes, with every claim.
        #[test]
        fn minted_tokens_verify() {
            let minting = Minting {
                topics: vec!["queue".into(), "adw-state/*".into()],
                publish: vec!["queue".into()],
                lifetime: Duration::from_secs(3600),
                sub: Some("alice".into()),
                aud: Some("dash".into()),
                iss: Some("ops".into()),
            };
            let token = mint(&Secret::new(SECRET), &minting, NOW).unwrap();
            let v = Verifier::hs256(&Secret::new(SECRET), Some("dash"), Some("ops")).unwrap();
            let grant = v.verify(&token, NOW).unwrap();
            assert_eq!(grant.exp, NOW + 3600);
            assert_eq!(grant.sub.as_deref(), Some("alice"));
            assert!(grant.may_read("adw-state/x") && grant.may_publish("queue"));
            assert_eq!(v.verify(&token, NOW + 3600), Err(Refusal::Expired));
        }
    }
}
