//! The tool policies in force: the configuration file's `tool_policies`, then the rules added
//! through the admin API (`crate::tool_policies_admin`), compiled together ([`effective`]);
//! and the check a stored rule passes before it is stored or applied ([`check`], [`usable`]).

use portcullis_policy::{ToolPolicies, ToolPolicySpec};
use portcullis_store::ToolPolicyRecord;

/// Why a stored rule is not in force, or `Ok` with the rule.
pub(crate) fn usable(
    record: &ToolPolicyRecord,
    quarantine: bool,
) -> Result<ToolPolicySpec, String> {
    let spec: ToolPolicySpec =
        serde_json::from_str(&record.spec).map_err(|e| format!("not a rule: {e}"))?;
    check(&spec, quarantine).map_err(|(_, message)| message)?;
    Ok(spec)
}

/// Checks one rule alone: `Err((field path, message))` naming its first problem.
pub(crate) fn check(spec: &ToolPolicySpec, quarantine: bool) -> Result<(), (String, String)> {
    if let Err(issues) = portcullis_policy::compile(vec![spec.clone()]) {
        let field = |path: &str| {
            path.strip_prefix("tool_policies[0]")
                .map(|p| p.trim_start_matches('.').to_owned())
                .unwrap_or_else(|| path.to_owned())
        };
        let path = issues.first().map(|i| field(&i.path)).unwrap_or_default();
        let message = issues
            .iter()
            .map(|i| format!("`{}`: {}", field(&i.path), i.message))
            .collect::<Vec<_>>()
            .join("; ");
        return Err((path, message));
    }
    if !quarantine && spec.output.as_deref() == Some("quarantine") {
        return Err((
            "output".to_owned(),
            "`output`: `quarantine` needs `quarantine.model` in the configuration file".to_owned(),
        ));
    }
    Ok(())
}

/// The tool policies in force: the file's rules, then each stored rule that still compiles
/// (one that no longer does — say, `output: quarantine` after the quarantine model was removed
/// from the file — is left out and logged).
pub fn effective(
    file: &ToolPolicies,
    stored: &[ToolPolicyRecord],
    quarantine: bool,
) -> ToolPolicies {
    if stored.is_empty() {
        return file.clone();
    }
    let mut specs = file.specs().to_vec();
    for record in stored {
        match usable(record, quarantine) {
            Ok(spec) => specs.push(spec),
            Err(why) => {
                tracing::error!(rule = %record.id, reason = %why, "a stored tool policy is not applied")
            }
        }
    }
    portcullis_policy::compile(specs).unwrap_or_else(|issues| {
        tracing::error!(
            ?issues,
            "the stored tool policies do not compile; the file's apply alone"
        );
        file.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &str, spec: &str) -> ToolPolicyRecord {
        ToolPolicyRecord {
            id: id.to_owned(),
            position: 0,
            spec: spec.to_owned(),
            created_ms: 0,
            created_by: "master".to_owned(),
        }
    }

    #[test]
    fn stored_rules_follow_the_files_and_those_that_no_longer_apply_are_left_out() {
        let file = portcullis_policy::compile(vec![ToolPolicySpec {
            pattern: "read_*".to_owned(),
            output: Some("untrusted".to_owned()),
            ..ToolPolicySpec::default()
        }])
        .unwrap();
        let rules = [
            stored("tp_1", r#"{"match":"web_*","output":"quarantine"}"#),
            stored("tp_2", r#"{"match":"send_money","call":"block"}"#),
            stored("tp_3", r#"{"match":"x","call":"sometimes"}"#),
        ];
        let with_model = effective(&file, &rules, true);
        let patterns = |p: &ToolPolicies| {
            p.specs()
                .iter()
                .map(|s| s.pattern.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(patterns(&with_model), ["read_*", "web_*", "send_money"]);
        assert_eq!(with_model.rule_index("send_money"), Some(2));
        // The quarantine model gone from the file: that rule stops applying, the next moves up.
        let without = effective(&file, &rules, false);
        assert_eq!(patterns(&without), ["read_*", "send_money"]);
        assert_eq!(without.rule_index("send_money"), Some(1));
        assert!(usable(&rules[0], false).is_err());
        assert_eq!(effective(&file, &[], false), file);
    }
}
