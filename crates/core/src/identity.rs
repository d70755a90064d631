//! Who is calling: the identity every request resolves to before it is routed.

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// The gateway's master key.
    MasterKey,
    /// A virtual key issued by the gateway.
    VirtualKey,
    /// A JWT from a configured enterprise issuer.
    Jwt,
    /// An access token issued by the gateway's OAuth server.
    OAuth,
}

impl AuthMethod {
    /// The method's name as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::MasterKey => "master_key",
            AuthMethod::VirtualKey => "virtual_key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::OAuth => "oauth",
        }
    }
}

/// A resolved caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Stable subject: the key id, JWT `sub`, or `master`.
    pub subject: String,
    /// How the caller authenticated.
    pub method: AuthMethod,
    /// The user the caller acts as, if any.
    pub user: Option<String>,
    /// The team the request is accounted to, if any.
    pub team: Option<String>,
    /// The virtual key used, if any.
    pub key_id: Option<String>,
    /// Whether the caller may use the admin API.
    pub admin: bool,
}

impl Identity {
    /// The identity of a caller holding the master key.
    pub fn master() -> Self {
        Self {
            subject: "master".to_owned(),
            method: AuthMethod::MasterKey,
            user: None,
            team: None,
            key_id: None,
            admin: true,
        }
    }
}
