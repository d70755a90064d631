//! Provider kinds and their presets: wire format, default base URL, how credentials are sent,
//! the environment variables that enable a provider with no config file, and the well-known
//! model names each kind serves.

use crate::api::Wire;

/// A kind of provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI.
    OpenAi,
    /// Anthropic.
    Anthropic,
    /// Google's Gemini API (AI Studio).
    Gemini,
    /// Azure OpenAI: OpenAI's models in a resource of one's own, by deployment.
    Azure,
    /// Google Cloud's Vertex AI: Gemini and Anthropic models under a project and location,
    /// with a service account's access tokens.
    Vertex,
    /// Amazon Bedrock: every model family Bedrock serves, through the Converse API, signed
    /// with AWS Signature Version 4.
    Bedrock,
    /// Groq (OpenAI-compatible).
    Groq,
    /// Mistral (OpenAI-compatible).
    Mistral,
    /// Cerebras (OpenAI-compatible).
    Cerebras,
    /// OpenRouter (OpenAI-compatible).
    OpenRouter,
    /// DeepSeek (OpenAI-compatible).
    DeepSeek,
    /// xAI (OpenAI-compatible).
    XAi,
    /// Together AI (OpenAI-compatible).
    Together,
    /// Fireworks AI (OpenAI-compatible).
    Fireworks,
    /// Perplexity (OpenAI-compatible).
    Perplexity,
    /// A vLLM server (OpenAI-compatible).
    Vllm,
    /// An Ollama server (OpenAI-compatible).
    Ollama,
    /// A Cloudflare AI Gateway in front of another provider.
    Cloudflare,
    /// Any OpenAI-compatible server at a configured base URL.
    Custom,
}

/// How a provider expects its API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// `x-api-key: <key>` (Anthropic).
    XApiKey,
    /// `x-goog-api-key: <key>` (Gemini).
    GoogApiKey,
    /// `api-key: <key>` (Azure OpenAI).
    AzureApiKey,
}

/// Everything fixed about a kind.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// Identifier used in config files and `provider/model` names.
    pub id: &'static str,
    /// Default base URL (`None`: must be configured).
    pub base_url: Option<&'static str>,
    /// Environment variables holding the API key, first match wins.
    pub key_env: &'static [&'static str],
    /// Environment variable overriding the base URL.
    pub base_url_env: Option<&'static str>,
    /// Whether the provider works without an API key (local servers).
    pub key_optional: bool,
    /// Prefixes of well-known model names this kind serves when addressed without a provider.
    pub model_prefixes: &'static [&'static str],
}

impl ProviderKind {
    /// Every kind, in the order providers are enabled from the environment.
    pub const ALL: [ProviderKind; 19] = [
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
        ProviderKind::Azure,
        ProviderKind::Vertex,
        ProviderKind::Bedrock,
        ProviderKind::Groq,
        ProviderKind::Mistral,
        ProviderKind::Cerebras,
        ProviderKind::OpenRouter,
        ProviderKind::DeepSeek,
        ProviderKind::XAi,
        ProviderKind::Together,
        ProviderKind::Fireworks,
        ProviderKind::Perplexity,
        ProviderKind::Vllm,
        ProviderKind::Ollama,
        ProviderKind::Cloudflare,
        ProviderKind::Custom,
    ];

    /// The kind's preset.
    pub fn preset(self) -> Preset {
        const NONE: &[&str] = &[];
        match self {
            ProviderKind::OpenAi => Preset {
                id: "openai",
                base_url: Some("https://api.openai.com/v1"),
                key_env: &["OPENAI_API_KEY"],
                base_url_env: Some("OPENAI_BASE_URL"),
                key_optional: false,
                model_prefixes: &[
                    "gpt-",
                    "chatgpt-",
                    "o1",
                    "o3",
                    "o4",
                    "text-embedding-",
                    "omni-moderation",
                    "codex-",
                    "computer-use-",
                    "davinci-",
                    "babbage-",
                ],
            },
            ProviderKind::Anthropic => Preset {
                id: "anthropic",
                base_url: Some("https://api.anthropic.com"),
                key_env: &["ANTHROPIC_API_KEY"],
                base_url_env: Some("ANTHROPIC_BASE_URL"),
                key_optional: false,
                model_prefixes: &["claude-"],
            },
            ProviderKind::Gemini => Preset {
                id: "gemini",
                base_url: Some("https://generativelanguage.googleapis.com"),
                key_env: &["GEMINI_API_KEY"],
                base_url_env: Some("GEMINI_BASE_URL"),
                key_optional: false,
                model_prefixes: &["gemini-"],
            },
            // The resource endpoint (`https://{resource}.openai.azure.com`) is the account's
            // own; `OPENAI_API_VERSION` (the variable OpenAI's `AzureOpenAI` client reads)
            // picks the API version, read with the rest of the zero-config environment. Bare
            // `gpt-*` names reach it only when no provider serves them otherwise
            // ([`ProviderKind::serves_well_known_as_fallback`]).
            ProviderKind::Azure => Preset {
                id: "azure",
                base_url: None,
                key_env: &["AZURE_OPENAI_API_KEY"],
                base_url_env: Some("AZURE_OPENAI_ENDPOINT"),
                key_optional: false,
                model_prefixes: NONE,
            },
            // The base URL follows the location (`https://{location}-aiplatform.googleapis.com`,
            // see [`crate::vertex::default_base_url`]); `GOOGLE_VERTEX_BASE_URL` is the variable
            // Google's `google-genai` SDK reads for it. Enabled from the environment by
            // `GOOGLE_APPLICATION_CREDENTIALS` with `GOOGLE_CLOUD_LOCATION` (and
            // `GOOGLE_CLOUD_PROJECT`, else the credentials' project). Bare `gemini-*` and
            // `claude-*` names reach it only when no provider serves them otherwise.
            ProviderKind::Vertex => Preset {
                id: "vertex",
                base_url: None,
                key_env: NONE,
                base_url_env: Some("GOOGLE_VERTEX_BASE_URL"),
                key_optional: true,
                model_prefixes: NONE,
            },
            // The endpoint follows the region (`https://bedrock-runtime.{region}.amazonaws.com`,
            // see [`crate::bedrock::default_base_url`]); `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` is
            // the variable AWS's SDKs read for it. Enabled from the environment by
            // `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN` for
            // temporary credentials) and `AWS_REGION`; requests are signed, no key is sent.
            // Bedrock's model ids are well-known names: `{vendor}.{model}`, a cross-Region
            // inference profile's `{geography}.{vendor}.{model}` or an ARN, none of which any
            // other kind's names look like (`claude-*` stays Anthropic's).
            ProviderKind::Bedrock => Preset {
                id: "bedrock",
                base_url: None,
                key_env: NONE,
                base_url_env: Some("AWS_ENDPOINT_URL_BEDROCK_RUNTIME"),
                key_optional: true,
                model_prefixes: &[
                    "anthropic.",
                    "amazon.",
                    "meta.",
                    "mistral.",
                    "cohere.",
                    "ai21.",
                    "deepseek.",
                    "writer.",
                    "qwen.",
                    "openai.",
                    "twelvelabs.",
                    "us.",
                    "us-gov.",
                    "eu.",
                    "apac.",
                    "jp.",
                    "au.",
                    "ca.",
                    "global.",
                    "arn:aws:bedrock:",
                    "arn:aws-us-gov:bedrock:",
                ],
            },
            ProviderKind::Groq => Preset {
                id: "groq",
                base_url: Some("https://api.groq.com/openai/v1"),
                key_env: &["GROQ_API_KEY"],
                base_url_env: Some("GROQ_BASE_URL"),
                key_optional: false,
                model_prefixes: NONE,
            },
            ProviderKind::Mistral => Preset {
                id: "mistral",
                base_url: Some("https://api.mistral.ai/v1"),
                key_env: &["MISTRAL_API_KEY"],
                base_url_env: Some("MISTRAL_BASE_URL"),
                key_optional: false,
                model_prefixes: &[
                    "mistral-",
                    "codestral-",
                    "ministral-",
                    "magistral-",
                    "pixtral-",
                    "devstral-",
                    "open-mistral-",
                    "open-mixtral-",
                ],
            },
            ProviderKind::Cerebras => Preset {
                id: "cerebras",
                base_url: Some("https://api.cerebras.ai/v1"),
                key_env: &["CEREBRAS_API_KEY"],
                base_url_env: Some("CEREBRAS_BASE_URL"),
                key_optional: false,
                model_prefixes: NONE,
            },
            ProviderKind::OpenRouter => Preset {
                id: "openrouter",
                base_url: Some("https://openrouter.ai/api/v1"),
                key_env: &["OPENROUTER_API_KEY"],
                base_url_env: Some("OPENROUTER_BASE_URL"),
                key_optional: false,
                model_prefixes: NONE,
            },
            ProviderKind::DeepSeek => Preset {
                id: "deepseek",
                base_url: Some("https://api.deepseek.com/v1"),
                key_env: &["DEEPSEEK_API_KEY"],
                base_url_env: Some("DEEPSEEK_BASE_URL"),
                key_optional: false,
                model_prefixes: &["deepseek-"],
            },
            ProviderKind::XAi => Preset {
                id: "xai",
                base_url: Some("https://api.x.ai/v1"),
                key_env: &["XAI_API_KEY"],
                base_url_env: Some("XAI_BASE_URL"),
                key_optional: false,
                model_prefixes: &["grok-"],
            },
            ProviderKind::Together => Preset {
                id: "together",
                base_url: Some("https://api.together.xyz/v1"),
                key_env: &["TOGETHER_API_KEY"],
                base_url_env: Some("TOGETHER_BASE_URL"),
                key_optional: false,
                model_prefixes: NONE,
            },
            ProviderKind::Fireworks => Preset {
                id: "fireworks",
                base_url: Some("https://api.fireworks.ai/inference/v1"),
                key_env: &["FIREWORKS_API_KEY"],
                base_url_env: Some("FIREWORKS_BASE_URL"),
                key_optional: false,
                model_prefixes: NONE,
            },
            ProviderKind::Perplexity => Preset {
                id: "perplexity",
                base_url: Some("https://api.perplexity.ai"),
                key_env: &["PERPLEXITY_API_KEY", "PPLX_API_KEY"],
                base_url_env: Some("PERPLEXITY_BASE_URL"),
                key_optional: false,
                model_prefixes: &["sonar"],
            },
            ProviderKind::Vllm => Preset {
                id: "vllm",
                base_url: Some("http://localhost:8000/v1"),
                key_env: &["VLLM_API_KEY"],
                base_url_env: Some("VLLM_BASE_URL"),
                key_optional: true,
                model_prefixes: NONE,
            },
            ProviderKind::Ollama => Preset {
                id: "ollama",
                base_url: Some("http://localhost:11434/v1"),
                key_env: &["OLLAMA_API_KEY"],
                base_url_env: Some("OLLAMA_BASE_URL"),
                key_optional: true,
                model_prefixes: NONE,
            },
            ProviderKind::Cloudflare => Preset {
                id: "cloudflare",
                base_url: None,
                key_env: &["CLOUDFLARE_AIG_API_KEY"],
                base_url_env: Some("CLOUDFLARE_AIG_BASE_URL"),
                key_optional: true,
                model_prefixes: NONE,
            },
            ProviderKind::Custom => Preset {
                id: "custom",
                base_url: None,
                key_env: NONE,
                base_url_env: None,
                key_optional: true,
                model_prefixes: NONE,
            },
        }
    }

    /// The kind with this identifier.
    pub fn from_id(id: &str) -> Option<ProviderKind> {
        Self::ALL.into_iter().find(|k| k.preset().id == id)
    }

    /// The kind's identifier.
    pub fn id(self) -> &'static str {
        self.preset().id
    }

    /// The wire format the kind speaks (for Cloudflare, see [`CloudflareUpstream::wire`]).
    pub fn wire(self) -> Wire {
        match self {
            ProviderKind::Anthropic => Wire::Anthropic,
            // Vertex AI's Claude models speak Anthropic's format (see `crate::vertex`).
            ProviderKind::Gemini | ProviderKind::Vertex => Wire::Gemini,
            ProviderKind::Bedrock => Wire::Bedrock,
            _ => Wire::OpenAi,
        }
    }

    /// How the kind expects its API key.
    pub fn auth_scheme(self) -> AuthScheme {
        match self {
            ProviderKind::Anthropic => AuthScheme::XApiKey,
            ProviderKind::Gemini => AuthScheme::GoogApiKey,
            ProviderKind::Azure => AuthScheme::AzureApiKey,
            _ => AuthScheme::Bearer,
        }
    }

    /// Whether a bare model name belongs to this kind's well-known models.
    pub fn serves_well_known(self, model: &str) -> bool {
        self.preset().model_prefixes.iter().any(|p| {
            // `o1`, `o3`, `o4` are whole names or `o1-…` families, not any word starting with `o1`.
            if p.len() == 2 && p.starts_with('o') {
                model
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
            } else {
                model.starts_with(p)
            }
        })
    }

    /// Whether a bare model name is served by this kind when no configured provider serves it
    /// as its own: Azure OpenAI serves OpenAI's well-known names (`gpt-4o`, `o3`, …) by
    /// deployment, but only where no provider of OpenAI's own (or one listing the name) is
    /// configured, so adding an Azure resource never takes a name away from OpenAI.
    pub fn serves_well_known_as_fallback(self, model: &str) -> bool {
        match self {
            ProviderKind::Azure => ProviderKind::OpenAi.serves_well_known(model),
            ProviderKind::Vertex => {
                ProviderKind::Gemini.serves_well_known(model)
                    || ProviderKind::Anthropic.serves_well_known(model)
            }
            _ => false,
        }
    }
}

/// Which provider a Cloudflare AI Gateway forwards to, as the last segment of its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudflareUpstream {
    /// The OpenAI-compatible unified endpoint (`/compat`); models are `provider/model`.
    Compat,
    /// Anthropic's Messages API (`/anthropic`).
    Anthropic,
    /// Workers AI's OpenAI-compatible endpoint (`/workers-ai/v1`).
    WorkersAi,
    /// Any other provider path Cloudflare proxies with the OpenAI dialect (`/openai`, `/groq`, …).
    OpenAiCompatible(String),
}

impl CloudflareUpstream {
    /// Parses the configured upstream name.
    pub fn parse(s: &str) -> Self {
        match s {
            "compat" => CloudflareUpstream::Compat,
            "anthropic" => CloudflareUpstream::Anthropic,
            "workers-ai" | "workers_ai" => CloudflareUpstream::WorkersAi,
            other => CloudflareUpstream::OpenAiCompatible(other.to_owned()),
        }
    }

    /// The wire format spoken through the gateway.
    pub fn wire(&self) -> Wire {
        match self {
            CloudflareUpstream::Anthropic => Wire::Anthropic,
            _ => Wire::OpenAi,
        }
    }

    /// The path segment appended to `https://gateway.ai.cloudflare.com/v1/{account}/{gateway}`.
    pub fn path(&self) -> String {
        match self {
            CloudflareUpstream::Compat => "compat".to_owned(),
            CloudflareUpstream::Anthropic => "anthropic".to_owned(),
            CloudflareUpstream::WorkersAi => "workers-ai/v1".to_owned(),
            CloudflareUpstream::OpenAiCompatible(p) => p.clone(),
        }
    }

    /// How the upstream provider behind Cloudflare expects its key.
    pub fn auth_scheme(&self) -> AuthScheme {
        match self {
            CloudflareUpstream::Anthropic => AuthScheme::XApiKey,
            _ => AuthScheme::Bearer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for k in ProviderKind::ALL {
            assert_eq!(ProviderKind::from_id(k.id()), Some(k));
        }
    }

    #[test]
    fn well_known_names() {
        assert!(ProviderKind::OpenAi.serves_well_known("gpt-4o-mini"));
        assert!(ProviderKind::OpenAi.serves_well_known("o3"));
        assert!(ProviderKind::OpenAi.serves_well_known("o4-mini"));
        assert!(!ProviderKind::OpenAi.serves_well_known("o3x"));
        assert!(ProviderKind::OpenAi.serves_well_known("text-embedding-3-small"));
        assert!(ProviderKind::Anthropic.serves_well_known("claude-sonnet-4-5"));
        assert!(ProviderKind::Gemini.serves_well_known("gemini-2.5-flash"));
        assert!(ProviderKind::Mistral.serves_well_known("mistral-large-latest"));
        assert!(!ProviderKind::Groq.serves_well_known("llama-3.1-8b-instant"));
        for bedrock in [
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
            "global.anthropic.claude-haiku-4-5-20251001-v1:0",
            "amazon.nova-pro-v1:0",
            "amazon.titan-embed-text-v2:0",
            "meta.llama3-3-70b-instruct-v1:0",
            "mistral.mistral-large-2407-v1:0",
            "cohere.embed-english-v3",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-lite-v1:0",
        ] {
            assert!(
                ProviderKind::Bedrock.serves_well_known(bedrock),
                "{bedrock}"
            );
            let others = ProviderKind::ALL
                .into_iter()
                .filter(|k| *k != ProviderKind::Bedrock);
            for other in others {
                assert!(
                    !other.serves_well_known(bedrock),
                    "{other:?} takes {bedrock}"
                );
            }
        }
        for not_bedrock in ["claude-sonnet-4-5", "mistral-large-latest", "gpt-4o", "o3"] {
            assert!(
                !ProviderKind::Bedrock.serves_well_known(not_bedrock),
                "{not_bedrock}"
            );
        }
        assert!(!ProviderKind::Azure.serves_well_known("gpt-4o"));
        assert!(ProviderKind::Azure.serves_well_known_as_fallback("gpt-4o"));
        assert!(ProviderKind::Azure.serves_well_known_as_fallback("o3"));
        assert!(!ProviderKind::Azure.serves_well_known_as_fallback("claude-sonnet-4-5"));
        assert!(!ProviderKind::OpenAi.serves_well_known_as_fallback("gpt-4o"));
        assert!(ProviderKind::Vertex.serves_well_known_as_fallback("gemini-2.5-flash"));
        assert!(ProviderKind::Vertex.serves_well_known_as_fallback("claude-sonnet-4-5@20250929"));
        assert!(!ProviderKind::Vertex.serves_well_known_as_fallback("gpt-4o"));
    }
}
