//! Signed tokens (JWT): the verifier built at start from the key the
//! configuration gives (an HS256 secret from `STATECAST_JWT_SECRET`, or an
//! Ed25519 or EC P-256 public key from `--jwt-public-key`), what a valid
//! token grants (`topics` to read, `publish` to write), and minting the
//! HS256 tokens `statecast token` prints. Signatures are the
//! `jsonwebtoken` crate's (RustCrypto), in builds with the `jwt` feature;
//! without it a configured key stops the start, saying so. The claims'
//! times are checked here, against one clock reading the caller passes.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(feature = "jwt")]
use jsonwebtoken::errors::ErrorKind;
#[cfg(feature = "jwt")]
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
#[cfg(feature = "jwt")]
use serde::{Deserialize, Serialize};

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
    key: DecodingKey,
    #[cfg(feature = "jwt")]
    validation: Validation,
    /// Without the `jwt` feature no verifier is ever made.
    #[cfg(not(feature = "jwt"))]
    never: std::convert::Infallible,
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
    /// Not three base64url parts of JSON, or claims of the wrong type.
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
/// The claims statecast reads; `aud` and `iss` are the crate's to check,
/// and the rest are ignored. `exp` is optional here only so that its
/// absence has its own refusal.
#[derive(Debug, Deserialize)]
struct Claims {
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    sub: Option<String>,
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
        let key = DecodingKey::from_secret(secret.expose().as_bytes())
            .map_err(|_| format!("{SECRET_ENV} is empty"))?;
        Ok(Verifier::new(key, Algorithm::HS256, aud, iss))
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
        let (key, alg) =
            public_key(&pem).map_err(|why| format!("--jwt-public-key {file}: {why}"))?;
        Ok(Verifier::new(key, alg, aud, iss))
    }

    fn new(key: DecodingKey, alg: Algorithm, aud: Option<&str>, iss: Option<&str>) -> Verifier {
        let mut validation = Validation::new(alg);
        // The times are checked in `verify`, against the caller's clock and
        // with the leeway above; the crate has one leeway for both ends.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        // Without --jwt-audience, `aud` is not ours to judge.
        validation.validate_aud = aud.is_some();
        if let Some(aud) = aud {
            validation.set_audience(&[aud]);
            validation.required_spec_claims.insert("aud".into());
        }
        if let Some(iss) = iss {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        Verifier { key, validation }
    }

    /// The algorithm every token must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.validation
            .algorithms
            .first()
            .copied()
            .unwrap_or(Algorithm::HS256)
    }

    /// Checks `token` at `now` (seconds since the Unix epoch): signature
    /// and algorithm, `aud` and `iss` when configured, then the times.
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, Refusal> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| refusal(e.kind()))?
            .claims;
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

/// The crate's verdict, as a refusal.
#[cfg(feature = "jwt")]
fn refusal(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::InvalidSignature => Refusal::Signature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey => Refusal::Algorithm,
        ErrorKind::InvalidAudience => Refusal::Audience,
        ErrorKind::InvalidIssuer => Refusal::Issuer,
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
            match claim.as_str() {
                "aud" => Refusal::Audience,
                "iss" => Refusal::Issuer,
                _ => Refusal::Malformed,
            }
        }
        _ => Refusal::Malformed,
    }
}

/// The key in a PEM file and the one algorithm it is for. Errors say what
/// the file holds, never its bytes.
#[cfg(feature = "jwt")]
fn public_key(pem: &[u8]) -> Result<(DecodingKey, Algorithm), String> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("PRIVATE KEY-----") {
        return Err("holds a private key; give its public half \
                    (openssl pkey -in KEY -pubout)"
            .into());
    }
    let candidates = [
        (DecodingKey::from_ed_pem(pem), Algorithm::EdDSA),
        (DecodingKey::from_ec_pem(pem), Algorithm::ES256),
    ];
    for (key, alg) in candidates {
        let Ok(key) = key else { continue };
        // Building a verifier parses the key: a P-384 point, say, fails
        // here rather than on every token.
        return match jsonwebtoken::crypto::verify("AAAA", b"", &key, alg) {
            Ok(_) => Ok((key, alg)),
            Err(_) if alg == Algorithm::ES256 => {
                Err("an EC key not on P-256: only P-256 (ES256) is supported".into())
            }
            Err(_) => Err("not a usable Ed25519 public key".into()),
        };
    }
    if DecodingKey::from_rsa_pem(pem).is_ok() {
        return Err(
            "an RSA key: only Ed25519 (EdDSA) and EC P-256 (ES256) keys are supported".into(),
        );
    }
    Err("not an Ed25519 or EC P-256 public key in PEM (-----BEGIN PUBLIC KEY-----)".into())
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
    let key = EncodingKey::from_secret(secret.expose().as_bytes())
        .map_err(|_| format!("{SECRET_ENV} is empty"))?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| format!("cannot sign the token: {e}"))
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
                jwt_secret: Some(Secret::new("a-secret-of-enough-length")),
                ..Config::default()
            };
            let e = Verifier::from_config(&config).unwrap_err();
            assert!(e.contains("--features jwt"), "{e}");
            let e = mint(
                &Secret::new("a-secret-of-enough-length"),
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
        use serde_json::json;

        const SECRET: &str = "hs256-test-secret-0123456789";
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

        fn sign(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
            jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
        }

        fn hs(claims: &serde_json::Value) -> String {
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
                claims,
            )
        }

        fn ed(claims: &serde_json::Value) -> String {
            let key = EncodingKey::from_ed_pem(&read("ed25519.key")).unwrap();
            sign(Algorithm::EdDSA, &key, claims)
        }

        fn es(claims: &serde_json::Value) -> String {
            let key = EncodingKey::from_ec_pem(&read("p256.key")).unwrap();
            sign(Algorithm::ES256, &key, claims)
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
            let token = sign(Algorithm::HS256, &other, &claims());
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

        /// `alg: none` is refused by every key, with or without a signature.
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
                    assert!(v.verify(&unsigned, NOW).is_err(), "{v:?} took alg none");
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
                for secret in [pem.clone(), v.key.try_get_as_bytes().unwrap().to_vec()] {
                    let key = EncodingKey::from_secret(&secret).unwrap();
                    let token = sign(Algorithm::HS256, &key, &claims());
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
            for alg in [Algorithm::HS384, Algorithm::HS512] {
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
