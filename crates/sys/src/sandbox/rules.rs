//! The Landlock ruleset of a sandbox, built in the parent before the fork: which files the
//! process may open, whether it may use TCP ports, and (ABI 6 and later) that it may signal
//! or reach abstract Unix sockets only inside its own sandbox.

use std::os::fd::OwnedFd;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
};

use super::SandboxError;
use super::policy::FilesystemRule;

/// Builds the ruleset for `filesystem` (and, when `deny_tcp`, no TCP bind or connect) on a
/// kernel of Landlock ABI `abi`. Returns `None` when this ABI has nothing to enforce (an
/// unrestricted filesystem on an ABI without network rules or scopes). Every requested
/// right is a hard requirement: the ruleset is never silently weaker than asked.
pub(super) fn build(
    abi: u32,
    filesystem: &FilesystemRule,
    deny_tcp: bool,
) -> Result<Option<OwnedFd>, SandboxError> {
    let abi = ABI::from(i32::try_from(abi).unwrap_or(i32::MAX));
    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    let mut handles_anything = false;
    if matches!(filesystem, FilesystemRule::Restricted { .. }) {
        ruleset = ruleset.handle_access(AccessFs::from_all(abi))?;
        handles_anything = true;
    }
    let network_rights = AccessNet::from_all(abi);
    if deny_tcp && !network_rights.is_empty() {
        ruleset = ruleset.handle_access(network_rights)?;
        handles_anything = true;
    }
    let scopes = Scope::from_all(abi);
    if !scopes.is_empty() {
        ruleset = ruleset.scope(scopes)?;
        handles_anything = true;
    }
    if !handles_anything {
        return Ok(None);
    }
    let mut created = ruleset.create()?;
    if let FilesystemRule::Restricted {
        read_only,
        read_write,
    } = filesystem
    {
        for path in read_only {
            created = created.add_rule(beneath(path, AccessFs::from_read(abi), abi)?)?;
        }
        for path in read_write {
            created = created.add_rule(beneath(path, AccessFs::from_all(abi), abi)?)?;
        }
    }
    Ok(created.into())
}

/// A rule allowing `access` beneath `path`, narrowed to the rights that apply to a single
/// file when `path` is not a directory.
fn beneath(
    path: &Path,
    access: BitFlags<AccessFs>,
    abi: ABI,
) -> Result<PathBeneath<PathFd>, SandboxError> {
    let is_directory = std::fs::metadata(path)
        .map_err(|source| SandboxError::Path {
            path: path.to_path_buf(),
            source,
        })?
        .is_dir();
    let access = if is_directory {
        access
    } else {
        access & AccessFs::from_file(abi)
    };
    let fd = PathFd::new(path).map_err(|error| SandboxError::Path {
        path: path.to_path_buf(),
        source: std::io::Error::other(error),
    })?;
    Ok(PathBeneath::new(fd, access))
}
