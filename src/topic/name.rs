//! Topic names: what a well-formed name (or `adw_id`) is, and
//! [`TopicError`], why a name is refused.

use std::fmt;

use super::adw::ADW_STATE_PREFIX;

/// Longest topic name (or `adw_id`) accepted.
pub const MAX_NAME_LEN: usize = 64;

/// `[a-z0-9-]{1,64}`: a topic name outside the `adw-state/` family.
pub fn is_plain_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `[A-Za-z0-9_-]{1,64}`: CONTRACT.md treats an `adw_id` as an opaque token.
pub fn is_adw_id(id: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Why a topic name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// Not a well-formed name: no server could serve it.
    Invalid(String),
    /// Well formed, but not a topic this server serves.
    Unknown(String),
    /// A valid name, but `--max-topics` topics exist already.
    Full(usize),
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::Invalid(name) => match name.strip_prefix(ADW_STATE_PREFIX) {
                Some(id) => write!(
                    f,
                    "invalid adw_id {id:?}: 1 to {MAX_NAME_LEN} of A-Z, a-z, 0-9, _ and -"
                ),
                None => write!(
                    f,
                    "invalid topic name {name:?}: 1 to {MAX_NAME_LEN} of a-z, 0-9 and -"
                ),
            },
            TopicError::Unknown(name) => write!(f, "unknown topic {name:?}"),
            TopicError::Full(max) => write!(f, "topic limit reached ({max} topics)"),
        }
    }
}

impl std::error::Error for TopicError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain names and `adw_id`s take exactly the characters and lengths
    /// CONTRACT.md allows.
    #[test]
    fn names_follow_the_contract() {
        assert!(is_plain_name("workflow-history"));
        assert!(!is_plain_name("Workflow"));
        assert!(!is_plain_name(""));
        assert!(!is_plain_name(&"a".repeat(65)));
        assert!(is_adw_id("a1b2c3d4"));
        assert!(is_adw_id("A_b-9"));
        assert!(!is_adw_id("a/b"));
        assert!(!is_adw_id("a.b"));
    }
}
