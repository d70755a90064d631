//! The `providers:` block and the targets of each route, as written ([`RawProvider`],
//! [`RawTarget`]) and validated into the [`ProviderSpec`]s and [`RouteSpec`]s the registry is
//! built from ([`ProvidersBlock`], [`RoutesBlock`]); every problem is reported with its path
//! (`providers.openai.kind`, `routes.smart.targets[1]`).
//!
//! A route's other keys (`strategy`, `retry`, `cache`, …) belong to the crates that use them;
//! the configuration crate hands each its part.

use std::fmt;

use indexmap::IndexMap;
use portcullis_core::config::{Block, Issues, index, key};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::{
    AwsSpec, AzureSpec, CloudflareSpec, EntraSpec, Provider, ProviderKind, ProviderSpec, Registry,
    RegistryError, RouteSpec, Secret, TargetSpec, VertexSpec,
};

/// One provider as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Provider kind; defaults to the provider's name when that names a kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Base URL (OpenAI dialect: including `/v1`; Anthropic: without).
    #[serde(default)]
    pub base_url: Option<String>,
    /// API key.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Extra headers for every upstream request, in the order written.
    #[serde(default)]
    pub headers: Option<IndexMap<String, String>>,
    /// Advertised models.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Default `max_tokens` for Anthropic-dialect upstreams.
    #[serde(default)]
    pub default_max_tokens: Option<u32>,
    /// Models sent to the provider's Responses API (`{base_url}/responses`) rather than to
    /// Chat Completions (OpenAI-compatible kinds; OpenAI's own Responses-only models need not be
    /// listed).
    #[serde(default)]
    pub responses_models: Option<Vec<String>>,
    /// AWS region requests are signed for (kind `bedrock`); else `AWS_REGION`.
    #[serde(default)]
    pub region: Option<String>,
    /// AWS access key id (kind `bedrock`); else `AWS_ACCESS_KEY_ID`.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// AWS secret access key (kind `bedrock`); else `AWS_SECRET_ACCESS_KEY`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// AWS session token of temporary credentials (kind `bedrock`), sent as
    /// `x-amz-security-token`; else `AWS_SESSION_TOKEN` with the key from the environment.
    #[serde(default)]
    pub session_token: Option<String>,
    /// Bedrock's control plane (the model list), from `AWS_ENDPOINT_URL_BEDROCK`; not a key
    /// of the file.
    #[serde(skip)]
    pub control_plane_url: Option<String>,
    /// Cloudflare account id (kind `cloudflare`).
    #[serde(default)]
    pub account_id: Option<String>,
    /// Cloudflare AI Gateway id (kind `cloudflare`).
    #[serde(default)]
    pub gateway_id: Option<String>,
    /// Provider behind the Cloudflare gateway (kind `cloudflare`): `compat`, `openai`,
    /// `anthropic`, `workers-ai`, `groq`, ….
    #[serde(default)]
    pub upstream: Option<String>,
    /// Cloudflare gateway token, sent as `cf-aig-authorization` (kind `cloudflare`).
    #[serde(default)]
    pub gateway_token: Option<String>,
    /// Google Cloud project (kind `vertex`); by default the credentials' `project_id`.
    #[serde(default)]
    pub project: Option<String>,
    /// Google Cloud location (kind `vertex`): a region such as `us-east5`, or `global`.
    #[serde(default)]
    pub location: Option<String>,
    /// A service account's key file (kind `vertex`); the configuration crate makes a relative
    /// path relative to the config file's directory.
    #[serde(default)]
    pub credentials: Option<String>,
    /// Azure OpenAI `api-version` (kind `azure`): with it, the deployments form; without it,
    /// the `/openai/v1/` form.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Model names callers use → Azure deployment names (kind `azure`).
    #[serde(default)]
    pub deployments: Option<IndexMap<String, String>>,
    /// Microsoft Entra ID tenant (kind `azure`): with `client_id` and `client_secret`, the
    /// application's tokens are sent instead of a key.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Entra ID application (client) id (kind `azure`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Entra ID client secret (kind `azure`).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Entra ID authority (kind `azure`); by default `https://login.microsoftonline.com`.
    #[serde(default)]
    pub authority: Option<String>,
}

/// A route target: `openai/gpt-4o` or `{model: openai/gpt-4o, weight: 2}`.
#[derive(Debug, Default)]
pub struct RawTarget {
    /// `provider/model`.
    pub model: String,
    /// Relative weight.
    pub weight: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTargetMap {
    model: String,
    #[serde(default)]
    weight: Option<u32>,
}

impl<'de> Deserialize<'de> for RawTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTarget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`provider/model` or a map with `model` and `weight`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTarget, E> {
                Ok(RawTarget {
                    model: v.to_owned(),
                    weight: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTarget, A::Error> {
                let m = RawTargetMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawTarget {
                    model: m.model,
                    weight: m.weight,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The `providers:` block: providers by name, in resolution order.
#[derive(Debug, Clone, Copy)]
pub struct ProvidersBlock;

impl Block for ProvidersBlock {
    type Raw = Vec<(String, RawProvider)>;
    type Valid = Vec<ProviderSpec>;

    fn validate(raw: Self::Raw, at: &str) -> Result<Vec<ProviderSpec>, Issues> {
        let at = key(at, "providers");
        let mut issues = Issues::new();
        let mut specs = Vec::new();
        for (name, provider) in raw {
            if let Some(spec) = issues.take(provider_spec(&at, &name, provider)) {
                specs.push(spec);
            }
        }
        issues.extend(provider_issues(&specs, &at));
        issues.finish(specs)
    }
}

/// What building each provider would refuse (reported at `at.<name>`), for providers however
/// they were configured (the file or the environment).
pub fn provider_issues(specs: &[ProviderSpec], at: &str) -> Issues {
    let mut issues = Issues::new();
    for spec in specs {
        if let Err(e) = Provider::new(spec.clone()) {
            issues.at(at, &spec.name, e.to_string());
        }
    }
    issues
}

fn provider_spec(at: &str, name: &str, p: RawProvider) -> Result<ProviderSpec, Issues> {
    let path = key(at, name);
    let mut issues = Issues::new();
    let kind_id = p.kind.clone().unwrap_or_else(|| name.to_owned());
    let Some(kind) = ProviderKind::from_id(&kind_id) else {
        let known: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.id()).collect();
        issues.at(
            &path,
            "kind",
            format!(
                "unknown provider kind `{kind_id}`; known kinds: {}",
                known.join(", ")
            ),
        );
        return Err(issues);
    };
    if name.is_empty() || name.contains('/') {
        issues.push(path, "provider names must be non-empty and contain no `/`");
        return Err(issues);
    }
    let aws_keys = p.region.is_some()
        || p.access_key_id.is_some()
        || p.secret_access_key.is_some()
        || p.session_token.is_some();
    if aws_keys && kind != ProviderKind::Bedrock {
        issues.push(
            path,
            "`region`, `access_key_id`, `secret_access_key` and `session_token` apply only to kind `bedrock`",
        );
        return Err(issues);
    }
    let aws = (kind == ProviderKind::Bedrock).then(|| AwsSpec {
        region: p.region.clone(),
        access_key_id: p.access_key_id.clone(),
        secret_access_key: p.secret_access_key.clone().map(Secret::new),
        session_token: p.session_token.clone().map(Secret::new),
        control_plane_url: p.control_plane_url.clone(),
    });
    let cloudflare_keys = p.account_id.is_some()
        || p.gateway_id.is_some()
        || p.upstream.is_some()
        || p.gateway_token.is_some();
    if cloudflare_keys && kind != ProviderKind::Cloudflare {
        issues.push(
            path,
            "`account_id`, `gateway_id`, `upstream` and `gateway_token` apply only to kind `cloudflare`",
        );
        return Err(issues);
    }
    let entra_keys = p.tenant_id.is_some()
        || p.client_id.is_some()
        || p.client_secret.is_some()
        || p.authority.is_some();
    let azure_keys = p.api_version.is_some() || p.deployments.is_some() || entra_keys;
    if azure_keys && kind != ProviderKind::Azure {
        issues.push(
            path,
            "`api_version`, `deployments`, `tenant_id`, `client_id`, `client_secret` and `authority` apply only to kind `azure`",
        );
        return Err(issues);
    }
    let entra = match (p.tenant_id, p.client_id, p.client_secret) {
        (Some(tenant_id), Some(client_id), Some(client_secret)) => Some(EntraSpec {
            tenant_id,
            client_id,
            client_secret: Secret::new(client_secret),
            authority: p.authority,
        }),
        _ if entra_keys => {
            issues.push(
                path,
                "Entra ID needs `tenant_id`, `client_id` and `client_secret` together",
            );
            return Err(issues);
        }
        _ => None,
    };
    let azure = (kind == ProviderKind::Azure).then(|| AzureSpec {
        api_version: p.api_version.filter(|v| !v.is_empty()),
        deployments: p.deployments.unwrap_or_default().into_iter().collect(),
        entra,
    });
    let vertex_keys = p.project.is_some() || p.location.is_some() || p.credentials.is_some();
    if vertex_keys && kind != ProviderKind::Vertex {
        issues.push(
            path,
            "`project`, `location` and `credentials` apply only to kind `vertex`",
        );
        return Err(issues);
    }
    let vertex = (kind == ProviderKind::Vertex).then(|| VertexSpec {
        project: p.project,
        location: p.location,
        credentials: p.credentials.map(std::path::PathBuf::from),
    });
    let responses_models = p.responses_models.unwrap_or_default();
    if !responses_models.is_empty() && kind.wire() != crate::Wire::OpenAi {
        issues.push(
            path,
            "`responses_models` applies only to OpenAI-compatible providers",
        );
        return Err(issues);
    }
    let cloudflare = if kind == ProviderKind::Cloudflare {
        match (p.account_id, p.gateway_id) {
            (Some(account_id), Some(gateway_id)) => Some(CloudflareSpec {
                account_id,
                gateway_id,
                upstream: p.upstream.unwrap_or_else(|| "compat".to_owned()),
                token: p.gateway_token.map(Secret::new),
            }),
            _ if p.base_url.is_some() => None,
            _ => {
                issues.push(
                    path,
                    "kind `cloudflare` needs `account_id` and `gateway_id`",
                );
                return Err(issues);
            }
        }
    } else {
        None
    };
    Ok(ProviderSpec {
        name: name.to_owned(),
        kind,
        base_url: p.base_url,
        api_key: p.api_key.filter(|k| !k.is_empty()).map(Secret::new),
        headers: p
            .headers
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, Secret::new(v)))
            .collect(),
        models: p.models.unwrap_or_default(),
        cloudflare,
        default_max_tokens: p.default_max_tokens,
        responses_models,
        aws,
        vertex,
        azure,
    })
}

/// The targets of every route (`routes.<name>.targets`), by route name in file order.
#[derive(Debug, Clone, Copy)]
pub struct RoutesBlock;

impl Block for RoutesBlock {
    type Raw = Vec<(String, Vec<RawTarget>)>;
    type Valid = Vec<RouteSpec>;

    fn validate(raw: Self::Raw, at: &str) -> Result<Vec<RouteSpec>, Issues> {
        let mut issues = Issues::new();
        let mut routes = Vec::new();
        for (name, raw_targets) in raw {
            let list = key(&key(&key(at, "routes"), &name), "targets");
            let mut targets = Vec::new();
            for (i, t) in raw_targets.into_iter().enumerate() {
                let path = index(&list, i);
                match t.model.split_once('/') {
                    Some((provider, model)) if !provider.is_empty() && !model.is_empty() => {
                        targets.push(TargetSpec {
                            provider: provider.to_owned(),
                            model: model.to_owned(),
                            weight: t.weight.unwrap_or(1),
                        });
                    }
                    _ => issues.push(
                        path.clone(),
                        format!("`{}` is not of the form provider/model", t.model),
                    ),
                }
                if t.weight == Some(0) {
                    issues.at(&path, "weight", "must be at least 1");
                }
            }
            routes.push(RouteSpec { name, targets });
        }
        issues.finish(routes)
    }
}

/// Builds the registry of `providers`, `routes` and `aliases`, reporting what does not fit
/// together (a route naming an unknown provider, an alias resolving nowhere) at the key
/// concerned, under `at`.
pub fn registry(
    providers: &[ProviderSpec],
    routes: &[RouteSpec],
    aliases: &[(String, String)],
    at: &str,
) -> Result<Registry, Issues> {
    let built = providers
        .iter()
        .filter_map(|s| Provider::new(s.clone()).ok())
        .collect();
    Registry::new(built, routes.to_vec(), aliases.to_vec()).map_err(|e| {
        let path = match &e {
            RegistryError::UnknownRouteProvider { route, .. }
            | RegistryError::EmptyRoute(route) => key(&key(at, "routes"), route),
            RegistryError::UnresolvableAlias { alias, .. } => key(&key(at, "aliases"), alias),
            RegistryError::DuplicateProvider(p) => key(&key(at, "providers"), p),
        };
        let mut issues = Issues::new();
        issues.push(path, e.to_string());
        issues
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(issues: Issues) -> Vec<String> {
        issues.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_providers_block_reports_a_bad_value_at_its_path() {
        let raw = vec![
            (
                "openai".to_owned(),
                RawProvider {
                    api_key: Some("k".to_owned()),
                    ..RawProvider::default()
                },
            ),
            (
                "x".to_owned(),
                RawProvider {
                    kind: Some("martian".to_owned()),
                    ..RawProvider::default()
                },
            ),
        ];
        let found = shown(ProvidersBlock::validate(raw, "").unwrap_err());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("providers.x.kind: unknown provider kind `martian`"),
            "{found:?}"
        );
    }

    #[test]
    fn the_routes_block_reports_a_bad_target_at_its_path() {
        let target = |model: &str| RawTarget {
            model: model.to_owned(),
            weight: None,
        };
        let raw = vec![(
            "smart".to_owned(),
            vec![target("openai/gpt-4o"), target("gpt-4o")],
        )];
        assert_eq!(
            shown(RoutesBlock::validate(raw, "").unwrap_err()),
            ["routes.smart.targets[1]: `gpt-4o` is not of the form provider/model"]
        );
    }
}
