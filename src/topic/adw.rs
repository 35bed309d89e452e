//! The ADW dashboard preset: its topics, the "safe empty" snapshot each holds
//! before its first publish, and the JSON Schema its data must pass, all from
//! the project's copy of the contract (`contract/`, version 2).
//!
//! The schemas are compiled into the binary from `contract/schemas/`, so the
//! file the tests and the Python checker read is the one the server enforces.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The topic set a server starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The ADW dashboard's endpoints (CONTRACT.md), each with its empty
    /// default and its schema (this file).
    Adw,
    /// No topics but those added with `--topic` or `--any-topic`.
    None,
}

/// The family of per-workflow topics.
pub const ADW_STATE_PREFIX: &str = "adw-state/";

/// Placeholder in a default for the server's start time (ISO 8601):
/// `last_updated` and `timestamp` must be strings, never null (CONTRACT.md).
const STARTED: &str = "@STARTED@";

/// One fixed topic of the preset.
pub struct AdwTopic {
    pub name: &'static str,
    /// The "safe empty" `data` of CONTRACT.md v2, with [`STARTED`] for the
    /// start time.
    default: &'static str,
    /// The topic's JSON Schema (draft 2020-12) for `data`.
    pub schema: &'static str,
}

impl AdwTopic {
    /// The default `data` for a server started at `started` (RFC 3339).
    pub fn default_data(&self, started: &str) -> String {
        self.default.replace(STARTED, started)
    }
}

macro_rules! schema {
    ($name:literal) => {
        include_str!(concat!("../../contract/schemas/", $name, ".schema.json"))
    };
}

/// The nine fixed topics, in the order of CONTRACT.md's table.
pub const TOPICS: &[AdwTopic] = &[
    AdwTopic {
        name: "workflows",
        default: "[]",
        schema: schema!("workflows"),
    },
    AdwTopic {
        name: "routes",
        default: "[]",
        schema: schema!("routes"),
    },
    AdwTopic {
        name: "workflow-history",
        default: r#"{"workflows":[],"total_count":0,"analytics":{"total_workflows":0,"completed_workflows":0,"failed_workflows":0,"avg_duration_seconds":0,"success_rate_percent":0,"workflows_by_model":{},"workflows_by_template":{},"workflows_by_status":{},"avg_cost":0,"total_cost":0,"avg_tokens":0,"avg_cache_efficiency":0}}"#,
        schema: schema!("workflow-history"),
    },
    AdwTopic {
        name: "adw-monitor",
        default: r#"{"summary":{"total":0,"running":0,"completed":0,"failed":0,"paused":0},"workflows":[],"last_updated":"@STARTED@"}"#,
        schema: schema!("adw-monitor"),
    },
    AdwTopic {
        name: "queue",
        default: r#"{"phases":[],"total":0,"paused":false}"#,
        schema: schema!("queue"),
    },
    AdwTopic {
        name: "system-status",
        default: r#"{"overall_status":"unknown","timestamp":"@STARTED@","services":{},"summary":{"healthy_services":0,"total_services":0,"health_percentage":0}}"#,
        schema: schema!("system-status"),
    },
    AdwTopic {
        name: "webhook-status",
        default: r#"{"status":"unknown"}"#,
        schema: schema!("webhook-status"),
    },
    AdwTopic {
        name: "planned-features",
        default: r#"{"features":[],"stats":{"by_status":{},"by_priority":{},"by_type":{},"total_estimated_hours":0,"total_actual_hours":0,"completion_rate":0}}"#,
        schema: schema!("planned-features"),
    },
    AdwTopic {
        name: "qc-metrics",
        default: r#"{"coverage":{"overall_coverage":0,"backend_coverage":0,"frontend_coverage":0,"adws_coverage":0,"total_tests":0},"naming":{"total_files_checked":0,"compliant_files":0,"violations":[],"compliance_rate":0},"file_structure":{"total_files":0,"oversized_files":[],"long_files":[],"avg_file_size_kb":0},"linting":{"backend_issues":0,"frontend_issues":0,"backend_errors":0,"backend_warnings":0,"frontend_errors":0,"frontend_warnings":0,"total_issues":0},"overall_score":0,"last_updated":"@STARTED@"}"#,
        schema: schema!("qc-metrics"),
    },
];

/// The schema of every `adw-state/{adw_id}` topic.
pub const ADW_STATE_SCHEMA: &str = schema!("adw-state");

/// The schema every frame on an ADW topic must pass, `data` aside.
pub const ENVELOPE_SCHEMA: &str = include_str!("../../contract/envelope.schema.json");

/// The name of every schema in `contract/schemas/`: each fixed topic's, and
/// `adw-state` for the `adw-state/{adw_id}` family.
pub fn schema_names() -> impl Iterator<Item = &'static str> {
    TOPICS.iter().map(|t| t.name).chain(["adw-state"])
}

/// Finds a fixed topic by name.
pub fn topic(name: &str) -> Option<&'static AdwTopic> {
    TOPICS.iter().find(|t| t.name == name)
}

/// The `adw_id` of an `adw-state/{adw_id}` topic name.
pub fn state_id(name: &str) -> Option<&str> {
    name.strip_prefix(ADW_STATE_PREFIX)
}

/// What `adw-state/{adw_id}` holds before anything is published, and what
/// a provider publishes when the workflow is gone: `{"adw_id": id}` renders
/// the workflow's header, where `{}` renders a blank one.
pub fn state_default(adw_id: &str) -> Value {
    json!({ "adw_id": adw_id })
}

/// The preset topic whose messages have this `type`, for checking events
/// that claim to be one of them: the client renders them like snapshots.
pub fn schema_name_for_type(message_type: &str) -> Option<&'static str> {
    if message_type == "adw_state_update" {
        return Some("adw-state");
    }
    let base = message_type.strip_suffix("_update")?;
    TOPICS
        .iter()
        .map(|t| t.name)
        .find(|name| name.len() == base.len() && name.replace('-', "_") == base)
}

/// Formats a time as RFC 3339 UTC, the ISO 8601 form the contract's
/// timestamps take.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_637_422);
        assert_eq!(rfc3339(t), "2026-11-25T20:10:22Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn defaults_are_json_with_the_start_time_filled_in() {
        for topic in TOPICS {
            let data = topic.default_data("2026-11-26T02:15:00Z");
            let value: Value = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("{}: default is not JSON: {e}", topic.name));
            assert!(!data.contains(STARTED), "{}", topic.name);
            for key in ["last_updated", "timestamp"] {
                if let Some(v) = value.get(key) {
                    assert_eq!(v, "2026-11-26T02:15:00Z", "{}: {key}", topic.name);
                }
            }
        }
    }

    #[test]
    fn message_types_map_back_to_their_topics() {
        assert_eq!(schema_name_for_type("queue_update"), Some("queue"));
        assert_eq!(
            schema_name_for_type("workflow_history_update"),
            Some("workflow-history")
        );
        assert_eq!(schema_name_for_type("adw_state_update"), Some("adw-state"));
        assert_eq!(schema_name_for_type("workflow_completed"), None);
        assert_eq!(schema_name_for_type("nope_update"), None);
    }
}
