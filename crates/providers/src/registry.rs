//! The registry of configured providers, routes and aliases, and model resolution.
//!
//! A client names a model in one of four ways, tried in this order:
//! 1. a **route** from the config (`smart` → an ordered list of provider/model targets);
//! 2. an **alias** (`fast` → `groq/llama-3.1-8b-instant`);
//! 3. **`provider/model`**, where `provider` is a configured provider's name (or, failing that,
//!    a kind id such as `openai` naming the first provider of that kind); the model part may
//!    itself contain slashes (`openrouter/anthropic/claude-sonnet-4.5`);
//! 4. a **bare well-known name** (`gpt-4o-mini`, `claude-sonnet-4-5`, `mistral-large-latest`…)
//!    or a name listed in a provider's `models`, served by the first configured provider that
//!    serves it.
//!    Failing that, a provider serving such names on another vendor's behalf (Azure OpenAI,
//!    OpenAI's names) serves it.
//!
//! Anything else is a 404 naming the model.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_core::GatewayError;
use portcullis_policy::ToolGlobs;

use crate::provider::Provider;

/// A target as configured: `provider/model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// Provider name.
    pub provider: String,
    /// Model name at that provider.
    pub model: String,
    /// Relative weight for load balancing (used by the routing strategies).
    pub weight: u32,
}

/// A route as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The client-facing model name.
    pub name: String,
    /// Ordered targets: the first is primary, the rest are fallbacks.
    pub targets: Vec<TargetSpec>,
}

/// A resolved target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The provider.
    pub provider: Arc<Provider>,
    /// The model name at that provider.
    pub model: Arc<str>,
    /// Relative weight.
    pub weight: u32,
    /// `provider/model`: the target's name in breakers, latency tracking and logs.
    pub key: Arc<str>,
}

impl Target {
    /// A target serving `model` at `provider`.
    pub fn new(provider: Arc<Provider>, model: &str, weight: u32) -> Self {
        let key = Arc::from(format!("{}/{model}", provider.name()));
        Self {
            provider,
            model: Arc::from(model),
            weight,
            key,
        }
    }
}

/// What a client's model name resolved to.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The route's name, when the model named a route.
    pub route: Option<Arc<str>>,
    /// The targets, primary first.
    pub targets: Arc<[Target]>,
    /// The route's tool-call deny-list (`routes.<name>.tools_denied`), when it has one.
    pub tools_denied: Option<Arc<ToolGlobs>>,
}

impl Resolution {
    /// The primary target.
    pub fn primary(&self) -> Option<&Target> {
        self.targets.first()
    }
}

/// Why the registry could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two providers share a name.
    #[error("provider `{0}` is defined twice")]
    DuplicateProvider(String),
    /// A route target names a provider that is not configured.
    #[error("route `{route}` targets provider `{provider}`, which is not configured")]
    UnknownRouteProvider {
        /// The route.
        route: String,
        /// The missing provider.
        provider: String,
    },
    /// A route has no targets.
    #[error("route `{0}` has no targets")]
    EmptyRoute(String),
    /// An alias does not resolve.
    #[error(
        "alias `{alias}` points to `{target}`, which is not a configured route or provider/model"
    )]
    UnresolvableAlias {
        /// The alias.
        alias: String,
        /// What it points to.
        target: String,
    },
}

/// Every configured provider, route and alias.
#[derive(Debug, Default)]
pub struct Registry {
    providers: Vec<Arc<Provider>>,
    by_name: HashMap<String, Arc<Provider>>,
    routes: HashMap<String, Resolution>,
    aliases: HashMap<String, Resolution>,
    listing: Vec<ModelEntry>,
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// The name a client uses.
    pub id: String,
    /// Who serves it: a provider name, or `portcullis` for routes and aliases.
    pub owned_by: String,
}

impl Registry {
    /// Builds the registry, checking that every route and alias resolves.
    pub fn new(
        providers: Vec<Provider>,
        routes: Vec<RouteSpec>,
        aliases: Vec<(String, String)>,
    ) -> Result<Self, RegistryError> {
        let mut reg = Registry::default();
        for p in providers {
            let p = Arc::new(p);
            if reg.by_name.insert(p.name().to_owned(), p.clone()).is_some() {
                return Err(RegistryError::DuplicateProvider(p.name().to_owned()));
            }
            reg.providers.push(p);
        }
        for route in routes {
            if route.targets.is_empty() {
                return Err(RegistryError::EmptyRoute(route.name));
            }
            let mut targets = Vec::with_capacity(route.targets.len());
            for t in route.targets {
                let provider = reg.provider_named(&t.provider).ok_or_else(|| {
                    RegistryError::UnknownRouteProvider {
                        route: route.name.clone(),
                        provider: t.provider.clone(),
                    }
                })?;
                targets.push(Target::new(provider, &t.model, t.weight));
            }
            let name: Arc<str> = Arc::from(route.name.as_str());
            reg.routes.insert(
                route.name,
                Resolution {
                    route: Some(name),
                    targets: targets.into(),
                    tools_denied: None,
                },
            );
        }
        for (alias, target) in aliases {
            let resolved =
                reg.resolve_direct(&target)
                    .ok_or_else(|| RegistryError::UnresolvableAlias {
                        alias: alias.clone(),
                        target: target.clone(),
                    })?;
            reg.aliases.insert(alias, resolved);
        }
        reg.listing = reg.build_listing();
        Ok(reg)
    }

    /// Gives each named route its tool-call deny-list (aliases of the route included);
    /// names that are not routes are ignored.
    pub fn with_tools_denied<'a>(
        mut self,
        lists: impl IntoIterator<Item = (&'a str, &'a Arc<ToolGlobs>)>,
    ) -> Self {
        for (route, list) in lists {
            let list = (!list.is_empty()).then(|| list.clone());
            for resolution in self.routes.values_mut().chain(self.aliases.values_mut()) {
                if resolution.route.as_deref() == Some(route) {
                    resolution.tools_denied.clone_from(&list);
                }
            }
        }
        self
    }

    /// Every provider, in configuration order.
    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    /// The provider with this name.
    pub fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.by_name.get(name)
    }

    fn provider_named(&self, name: &str) -> Option<Arc<Provider>> {
        self.by_name.get(name).cloned().or_else(|| {
            self.providers
                .iter()
                .find(|p| p.kind().id() == name)
                .cloned()
        })
    }

    /// Resolves a client's model name.
    pub fn resolve(&self, model: &str) -> Result<Resolution, GatewayError> {
        if let Some(r) = self.aliases.get(model) {
            return Ok(r.clone());
        }
        self.resolve_direct(model)
            .ok_or_else(|| GatewayError::model_not_found(model))
    }

    fn resolve_direct(&self, model: &str) -> Option<Resolution> {
        if let Some(r) = self.routes.get(model) {
            return Some(r.clone());
        }
        if let Some((prefix, rest)) = model.split_once('/')
            && !rest.is_empty()
            && let Some(p) = self.provider_named(prefix)
        {
            return Some(single(p, rest));
        }
        self.providers
            .iter()
            .find(|p| p.serves_bare(model))
            .or_else(|| {
                self.providers
                    .iter()
                    .find(|p| p.serves_bare_as_fallback(model))
            })
            .map(|p| single(p.clone(), model))
    }

    /// The models listed by `GET /v1/models`.
    pub fn models(&self) -> &[ModelEntry] {
        &self.listing
    }

    fn build_listing(&self) -> Vec<ModelEntry> {
        let mut out = Vec::new();
        let mut names: Vec<&String> = self.routes.keys().chain(self.aliases.keys()).collect();
        names.sort();
        for n in names {
            out.push(ModelEntry {
                id: n.clone(),
                owned_by: "portcullis".to_owned(),
            });
        }
        for p in &self.providers {
            for m in p.models() {
                out.push(ModelEntry {
                    id: format!("{}/{m}", p.name()),
                    owned_by: p.name().to_owned(),
                });
            }
        }
        out
    }
}

fn single(provider: Arc<Provider>, model: &str) -> Resolution {
    Resolution {
        route: None,
        targets: Arc::from([Target::new(provider, model, 1)]),
        tools_denied: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::ProviderKind;
    use crate::provider::ProviderSpec;
    use crate::secret::Secret;

    fn provider(name: &str, kind: ProviderKind, models: &[&str]) -> Provider {
        let mut spec = ProviderSpec::new(name, kind);
        spec.api_key = Some(Secret::new("k"));
        spec.base_url = Some("http://127.0.0.1:1/v1".into());
        spec.models = models.iter().map(|m| m.to_string()).collect();
        Provider::new(spec).unwrap()
    }

    fn registry() -> Registry {
        Registry::new(
            vec![
                provider("oai", ProviderKind::OpenAi, &[]),
                provider("anthropic", ProviderKind::Anthropic, &[]),
                provider("groq", ProviderKind::Groq, &["llama-3.1-8b-instant"]),
                provider("openrouter", ProviderKind::OpenRouter, &[]),
            ],
            vec![RouteSpec {
                name: "smart".into(),
                targets: vec![
                    TargetSpec {
                        provider: "anthropic".into(),
                        model: "claude-sonnet-4-5".into(),
                        weight: 1,
                    },
                    TargetSpec {
                        provider: "oai".into(),
                        model: "gpt-4o".into(),
                        weight: 1,
                    },
                ],
            }],
            vec![("fast".into(), "groq/llama-3.1-8b-instant".into())],
        )
        .unwrap()
    }

    fn resolve(r: &Registry, m: &str) -> (String, String) {
        let res = r.resolve(m).unwrap();
        let t = res.primary().unwrap();
        (t.provider.name().to_owned(), t.model.to_string())
    }

    #[test]
    fn resolves_every_addressing_form() {
        let r = registry();
        assert_eq!(
            resolve(&r, "smart"),
            ("anthropic".into(), "claude-sonnet-4-5".into())
        );
        assert_eq!(r.resolve("smart").unwrap().targets.len(), 2);
        assert_eq!(
            resolve(&r, "fast"),
            ("groq".into(), "llama-3.1-8b-instant".into())
        );
        assert_eq!(
            resolve(&r, "groq/llama-3.3-70b"),
            ("groq".into(), "llama-3.3-70b".into())
        );
        assert_eq!(
            resolve(&r, "openai/gpt-4o-mini"),
            ("oai".into(), "gpt-4o-mini".into()),
            "kind id names the provider of that kind"
        );
        assert_eq!(
            resolve(&r, "openrouter/anthropic/claude-3.5-sonnet"),
            ("openrouter".into(), "anthropic/claude-3.5-sonnet".into())
        );
        assert_eq!(
            resolve(&r, "gpt-4o-mini"),
            ("oai".into(), "gpt-4o-mini".into())
        );
        assert_eq!(
            resolve(&r, "claude-haiku-4-5"),
            ("anthropic".into(), "claude-haiku-4-5".into())
        );
        assert_eq!(
            resolve(&r, "llama-3.1-8b-instant"),
            ("groq".into(), "llama-3.1-8b-instant".into())
        );
    }

    #[test]
    fn a_routes_deny_list_comes_with_its_resolution_only() {
        let list = Arc::new(ToolGlobs::new(&["rm*"]).unwrap());
        let r = registry().with_tools_denied([("smart", &list), ("nowhere", &list)]);
        let smart = r.resolve("smart").unwrap().tools_denied.unwrap();
        assert!(smart.matches("rm_rf"));
        assert!(r.resolve("fast").unwrap().tools_denied.is_none());
        assert!(r.resolve("gpt-4o-mini").unwrap().tools_denied.is_none());
    }

    #[test]
    fn unknown_models_are_404_naming_the_model() {
        let r = registry();
        for m in ["gemini-2.5-pro", "nope/x", "groq/", "", "llama-3.3-70b"] {
            let e = r.resolve(m).unwrap_err();
            assert_eq!(e.status().as_u16(), 404, "{m}");
            assert!(e.message().contains(&format!("`{m}`")));
        }
    }

    #[test]
    fn bad_routes_and_aliases_are_refused() {
        let err = Registry::new(
            vec![provider("oai", ProviderKind::OpenAi, &[])],
            vec![RouteSpec {
                name: "r".into(),
                targets: vec![TargetSpec {
                    provider: "missing".into(),
                    model: "m".into(),
                    weight: 1,
                }],
            }],
            vec![],
        )
        .unwrap_err();
        assert!(matches!(err, RegistryError::UnknownRouteProvider { .. }));
        let err = Registry::new(vec![], vec![], vec![("a".into(), "nowhere".into())]).unwrap_err();
        assert!(matches!(err, RegistryError::UnresolvableAlias { .. }));
    }

    #[test]
    fn listing_has_routes_aliases_and_provider_models() {
        let ids: Vec<String> = registry().models().iter().map(|m| m.id.clone()).collect();
        assert_eq!(ids, vec!["fast", "smart", "groq/llama-3.1-8b-instant"]);
    }
}
