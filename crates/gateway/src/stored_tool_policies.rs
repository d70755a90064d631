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
