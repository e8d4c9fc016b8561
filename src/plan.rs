//! Planning: what each scanned instance is, and which of them the sweep would change.
//! Pure functions of the scan, so every rule is unit-tested here.

use serde::Serialize;

use crate::ec2::InstanceRecord;

/// How an instance stands with respect to IMDSv2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// HttpTokens=required already.
    Enforced,
    /// HttpTokens=optional on an instance that can be modified.
    NeedsEnforcement,
    /// The metadata endpoint is off; only HttpTokens is set, and only if it is optional.
    ImdsDisabled,
    /// Terminated, shutting down, or with no metadata options reported.
    NotActionable,
}

impl Status {
    /// The name shown in tables.
    pub fn label(self) -> &'static str {
        match self {
            Status::Enforced => "enforced",
            Status::NeedsEnforcement => "needs-enforcement",
            Status::ImdsDisabled => "imds-disabled",
            Status::NotActionable => "not-actionable",
        }
    }
}

/// One instance with the verdict on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    #[serde(flatten)]
    pub instance: InstanceRecord,
    pub status: Status,
    /// Whether enforcement will set HttpTokens=required on it.
    pub change: bool,
    /// Why it is classified so, for `-v` and for the JSON report.
    pub reason: &'static str,
}

/// Classifies one instance.
pub fn classify(instance: InstanceRecord) -> Finding {
    let (status, change, reason) = verdict(&instance);
    Finding { instance, status, change, reason }
}

fn verdict(instance: &InstanceRecord) -> (Status, bool, &'static str) {
    let optional = instance.http_tokens.as_deref() == Some("optional");
    if matches!(instance.state.as_str(), "terminated" | "shutting-down") {
        return (Status::NotActionable, false, "the instance is terminated or shutting down");
    }
    if instance.http_tokens.is_none() {
        return (Status::NotActionable, false, "EC2 reported no metadata options");
    }
    if instance.http_endpoint.as_deref() == Some("disabled") {
        let reason = if optional {
            "the metadata endpoint is disabled; only HttpTokens will be set"
        } else {
            "the metadata endpoint is disabled and HttpTokens is already required"
        };
        return (Status::ImdsDisabled, optional, reason);
    }
    if optional {
        (Status::NeedsEnforcement, true, "HttpTokens is optional")
    } else {
        (Status::Enforced, false, "HttpTokens is already required")
    }
}

/// One modification the sweep will make, with what it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub account_id: String,
    pub region: String,
    pub instance_id: String,
    pub name: Option<String>,
    pub http_tokens_before: String,
    pub http_tokens_after: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(state: &str, tokens: Option<&str>, endpoint: &str) -> InstanceRecord {
        InstanceRecord {
            instance_id: "i-0123456789abcdef0".into(),
            name: None,
            state: state.into(),
            http_tokens: tokens.map(str::to_owned),
            http_endpoint: Some(endpoint.into()),
            hop_limit: Some(1),
            metadata_state: Some("applied".into()),
        }
    }

    fn verdict_of(state: &str, tokens: Option<&str>, endpoint: &str) -> (Status, bool) {
        let finding = classify(instance(state, tokens, endpoint));
        (finding.status, finding.change)
    }

    #[test]
    fn optional_instances_that_can_be_modified_need_enforcement() {
        for state in ["running", "stopped", "pending", "stopping"] {
            let verdict = verdict_of(state, Some("optional"), "enabled");
            assert_eq!(verdict, (Status::NeedsEnforcement, true), "{state}");
        }
    }

    #[test]
    fn required_instances_are_left_alone() {
        assert_eq!(verdict_of("running", Some("required"), "enabled"), (Status::Enforced, false));
    }

    #[test]
    fn gone_instances_are_not_actionable_whatever_their_tokens() {
        for state in ["terminated", "shutting-down"] {
            let verdict = verdict_of(state, Some("optional"), "enabled");
            assert_eq!(verdict, (Status::NotActionable, false), "{state}");
        }
    }

    #[test]
    fn disabled_endpoint_changes_only_when_tokens_are_optional() {
        assert_eq!(
            verdict_of("running", Some("optional"), "disabled"),
            (Status::ImdsDisabled, true)
        );
        assert_eq!(
            verdict_of("running", Some("required"), "disabled"),
            (Status::ImdsDisabled, false)
        );
    }

    #[test]
    fn missing_metadata_options_are_not_guessed() {
        assert_eq!(verdict_of("running", None, "enabled"), (Status::NotActionable, false));
    }
}
