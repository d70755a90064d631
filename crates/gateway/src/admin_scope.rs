//! Who may read and change what through the admin API: one decision, from the caller's
//! identity alone, that every admin handler and the console follow.
//!
//! - An **admin** (role `admin`, and the `admin` scope when its credential carries scopes)
//!   reads and changes everything.
//! - A **viewer** reads the request log and usage of its own teams, and changes nothing.
//! - A **member** signed in as a person — a console session or an enterprise token, never a
//!   virtual key (a leaked key must not mint keys or read its owner's other requests) — reads
//!   its own requests and usage, lists its own virtual keys, creates keys for itself (in its
//!   own teams, without custom prices) and edits, rotates and revokes its own. Limits and
//!   budgets an admin sets on the member (`user` scope) or its team bind every such key.
//!
//! Anything else is refused with 403 `admin_required`; a record or key outside the caller's
//! reach is answered as if it did not exist (404), so its existence is not disclosed.

use portcullis_core::{AccessRole, AuthMethod, ErrorKind, GatewayError, Identity};

/// How far a caller reaches into the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Everything (an admin).
    Everything,
    /// The records of these teams, read only (a viewer).
    Teams(Vec<String>),
    /// Its own records and keys (a member signed in as itself).
    Own {
        /// The member's user id.
        user: String,
        /// The member's teams.
        teams: Vec<String>,
    },
}

/// Which records a read covers, after the caller's reach is applied to what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordScope {
    /// Whatever the request's filters select.
    Any,
    /// Only this team's records.
    Team(String),
    /// Only this user's records.
    User(String),
}

/// The admin API's refusal of a caller it does not open to.
pub(crate) fn admin_required() -> GatewayError {
    GatewayError::new(
        ErrorKind::PermissionDenied,
        "The admin API requires the master key or an admin identity",
    )
    .with_code("admin_required")
}

/// Whether the caller is an admin of the whole gateway ([`Reach::Everything`]).
pub(crate) fn is_admin(identity: &Identity) -> bool {
    identity.is_admin() && identity.has_scope("admin")
}

/// The caller's reach, or `None` when the admin API is closed to it.
pub(crate) fn reach(identity: &Identity) -> Option<Reach> {
    if is_admin(identity) {
        return Some(Reach::Everything);
    }
    match identity.role {
        AccessRole::Viewer => Some(Reach::Teams(identity.teams.clone())),
        AccessRole::Member
            if identity.key_id.is_none()
                && matches!(identity.method, AuthMethod::Console | AuthMethod::Jwt) =>
        {
            identity.user.as_ref().map(|user| Reach::Own {
                user: user.clone(),
                teams: identity.teams.clone(),
            })
        }
        _ => None,
    }
}

/// The records a read of the request log or usage covers: an admin's filters as given; a
/// viewer's limited to the `team` it names (or its only team); a member's to its own user
/// (naming another user is refused, other filters narrow further).
pub(crate) fn record_scope(
    reach: &Reach,
    requested_team: Option<&str>,
    requested_user: Option<&str>,
) -> Result<RecordScope, GatewayError> {
    match reach {
        Reach::Everything => Ok(RecordScope::Any),
        Reach::Teams(teams) => {
            let team = match requested_team {
                Some(t) => t.to_owned(),
                None => match teams.as_slice() {
                    [only] => only.clone(),
                    _ => {
                        return Err(GatewayError::new(
                            ErrorKind::PermissionDenied,
                            "A viewer of several teams must name one with `team=`",
                        )
                        .with_code("team_required"));
                    }
                },
            };
            if teams.contains(&team) {
                Ok(RecordScope::Team(team))
            } else {
                Err(GatewayError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "A viewer reads only its own teams' records; it is not in team `{team}`"
                    ),
                )
                .with_code("team_not_allowed"))
            }
        }
        Reach::Own { user, .. } => match requested_user {
            Some(other) if other != user => Err(GatewayError::new(
                ErrorKind::PermissionDenied,
                "A member reads only its own requests",
            )
            .with_code("user_not_allowed")),
            _ => Ok(RecordScope::User(user.clone())),
        },
    }
}

/// Whether a record of `team` and `user` is within the caller's reach.
pub(crate) fn may_read_record(reach: &Reach, team: Option<&str>, user: Option<&str>) -> bool {
    match reach {
        Reach::Everything => true,
        Reach::Teams(teams) => team.is_some_and(|t| teams.iter().any(|mine| mine == t)),
        Reach::Own { user: me, .. } => user == Some(me.as_str()),
    }
}

/// The user whose keys a caller may see and manage: `Ok(None)` for every key (an admin),
/// `Ok(Some(user))` for a member's own, refused for a viewer.
pub(crate) fn key_owner(reach: &Reach) -> Result<Option<&str>, GatewayError> {
    match reach {
        Reach::Everything => Ok(None),
        Reach::Own { user, .. } => Ok(Some(user)),
        Reach::Teams(_) => Err(admin_required()),
    }
}

/// Whether a key bound to `owner` is the caller's to see and manage.
pub(crate) fn may_manage_key(reach: &Reach, owner: Option<&str>) -> bool {
    match key_owner(reach) {
        Ok(None) => true,
        Ok(Some(me)) => owner == Some(me),
        Err(_) => false,
    }
}

/// What a new or edited key of a member may hold.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyRequest<'a> {
    /// The user it names, if any.
    pub(crate) user: Option<&'a str>,
    /// The team it names, if any.
    pub(crate) team: Option<&'a str>,
    /// The service account it names, if any.
    pub(crate) service_account: Option<&'a str>,
    /// Whether it lets callers state their own prices.
    pub(crate) allow_custom_cost: bool,
}

/// Checks what a member asks of a key it creates or edits: its own user (or none named), one
/// of its own teams, no service account and no custom prices (which budgets would then count
/// on the caller's word). An admin may ask anything.
pub(crate) fn check_key_request(reach: &Reach, req: KeyRequest<'_>) -> Result<(), GatewayError> {
    let Reach::Own { user, teams } = reach else {
        return match reach {
            Reach::Everything => Ok(()),
            _ => Err(admin_required()),
        };
    };
    let refuse = |param: &str, why: String| {
        Err(GatewayError::new(ErrorKind::PermissionDenied, why)
            .with_param(param)
            .with_code("not_allowed_for_member"))
    };
    if req.user.is_some_and(|u| u != user) {
        return refuse("user", "A member creates keys for itself only".to_owned());
    }
    if req.service_account.is_some() {
        return refuse(
            "service_account",
            "Only an admin creates keys for service accounts".to_owned(),
        );
    }
    if let Some(team) = req.team
        && !teams.iter().any(|t| t == team)
    {
        return refuse(
            "team",
            format!("A member binds keys to its own teams only; it is not in team `{team}`"),
        );
    }
    if req.allow_custom_cost {
        return refuse(
            "allow_custom_cost",
            "Only an admin lets a key state its own prices".to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(role: AccessRole, method: AuthMethod) -> Identity {
        Identity {
            subject: "u1".to_owned(),
            method,
            user: Some("u1".to_owned()),
            team: Some("alpha".to_owned()),
            teams: vec!["alpha".to_owned(), "beta".to_owned()],
            service_account: None,
            key_id: None,
            role,
            allowed_models: None,
            scopes: None,
        }
    }

    fn own() -> Reach {
        Reach::Own {
            user: "u1".to_owned(),
            teams: vec!["alpha".to_owned(), "beta".to_owned()],
        }
    }

    #[test]
    fn each_role_reaches_what_the_rules_say() {
        assert_eq!(
            reach(&Identity::master()),
            Some(Reach::Everything),
            "the master key"
        );
        let admin = identity(AccessRole::Admin, AuthMethod::Console);
        assert_eq!(reach(&admin), Some(Reach::Everything));
        let mut scoped_admin = identity(AccessRole::Admin, AuthMethod::OAuth);
        scoped_admin.scopes = Some(vec!["models".to_owned()].into());
        assert_eq!(
            reach(&scoped_admin),
            None,
            "an admin's token without the admin scope"
        );
        let viewer = identity(AccessRole::Viewer, AuthMethod::VirtualKey);
        assert_eq!(
            reach(&viewer),
            Some(Reach::Teams(vec!["alpha".to_owned(), "beta".to_owned()]))
        );
        for method in [AuthMethod::Console, AuthMethod::Jwt] {
            assert_eq!(
                reach(&identity(AccessRole::Member, method)),
                Some(own()),
                "{method:?}"
            );
        }
        let mut by_key = identity(AccessRole::Member, AuthMethod::VirtualKey);
        by_key.key_id = Some("key_1".to_owned());
        assert_eq!(reach(&by_key), None, "a member's virtual key");
        assert_eq!(
            reach(&identity(AccessRole::Member, AuthMethod::OAuth)),
            None,
            "a member's OAuth token"
        );
        let mut nobody = identity(AccessRole::Member, AuthMethod::Jwt);
        nobody.user = None;
        assert_eq!(reach(&nobody), None, "no user to be");
    }

    #[test]
    fn reads_are_narrowed_to_the_callers_records() {
        assert_eq!(
            record_scope(&Reach::Everything, Some("x"), Some("y")).ok(),
            Some(RecordScope::Any)
        );
        let viewer = Reach::Teams(vec!["alpha".to_owned()]);
        assert_eq!(
            record_scope(&viewer, None, None).ok(),
            Some(RecordScope::Team("alpha".to_owned()))
        );
        assert!(record_scope(&viewer, Some("beta"), None).is_err());
        let two = Reach::Teams(vec!["alpha".to_owned(), "beta".to_owned()]);
        assert!(record_scope(&two, None, None).is_err(), "must name one");
        assert_eq!(
            record_scope(&own(), Some("alpha"), Some("u1")).ok(),
            Some(RecordScope::User("u1".to_owned()))
        );
        let e = record_scope(&own(), None, Some("u2")).unwrap_err();
        assert_eq!(e.status(), http::StatusCode::FORBIDDEN);

        assert!(may_read_record(&viewer, Some("alpha"), Some("u9")));
        assert!(!may_read_record(&viewer, Some("beta"), Some("u1")));
        assert!(!may_read_record(&viewer, None, None));
        assert!(may_read_record(&own(), Some("gamma"), Some("u1")));
        assert!(!may_read_record(&own(), Some("alpha"), Some("u2")));
        assert!(!may_read_record(&own(), Some("alpha"), None));
    }

    #[test]
    fn members_manage_their_own_keys_within_their_teams() {
        assert!(may_manage_key(&Reach::Everything, None));
        assert!(may_manage_key(&own(), Some("u1")));
        assert!(!may_manage_key(&own(), Some("u2")));
        assert!(
            !may_manage_key(&own(), None),
            "a team's or service account's key"
        );
        assert!(!may_manage_key(&Reach::Teams(vec![]), Some("u1")));

        let ok = KeyRequest {
            user: Some("u1"),
            team: Some("beta"),
            ..KeyRequest::default()
        };
        assert!(check_key_request(&own(), ok).is_ok());
        assert!(check_key_request(&own(), KeyRequest::default()).is_ok());
        for bad in [
            KeyRequest {
                user: Some("u2"),
                ..KeyRequest::default()
            },
            KeyRequest {
                team: Some("gamma"),
                ..KeyRequest::default()
            },
            KeyRequest {
                service_account: Some("sa"),
                ..KeyRequest::default()
            },
            KeyRequest {
                allow_custom_cost: true,
                ..KeyRequest::default()
            },
        ] {
            let e = check_key_request(&own(), bad).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::FORBIDDEN, "{bad:?}");
        }
        let anything = KeyRequest {
            user: Some("u2"),
            service_account: Some("sa"),
            allow_custom_cost: true,
            team: Some("gamma"),
        };
        assert!(check_key_request(&Reach::Everything, anything).is_ok());
        assert!(check_key_request(&Reach::Teams(vec![]), KeyRequest::default()).is_err());
    }
}
