//! Attribute names and values of the OpenTelemetry semantic conventions the gateway's spans
//! carry: the GenAI conventions (`gen_ai.*`, for the request and each upstream attempt) and
//! the general ones they build on (`http.*`, `server.*`, `error.type`).

/// The operation: [`OPERATION_CHAT`] or [`OPERATION_EMBEDDINGS`].
pub const OPERATION_NAME: &str = "gen_ai.operation.name";
/// The GenAI provider as the conventions name it (`openai`, `anthropic`, `gcp.gemini`, …).
pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
/// The model the caller asked for.
pub const REQUEST_MODEL: &str = "gen_ai.request.model";
/// The most tokens the model may generate.
pub const REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
/// Sampling temperature.
pub const REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
/// Nucleus sampling (`top_p`).
pub const REQUEST_TOP_P: &str = "gen_ai.request.top_p";
/// Sequences that stop generation.
pub const REQUEST_STOP_SEQUENCES: &str = "gen_ai.request.stop_sequences";
/// Seed for reproducible sampling.
pub const REQUEST_SEED: &str = "gen_ai.request.seed";
/// Frequency penalty.
pub const REQUEST_FREQUENCY_PENALTY: &str = "gen_ai.request.frequency_penalty";
/// Presence penalty.
pub const REQUEST_PRESENCE_PENALTY: &str = "gen_ai.request.presence_penalty";
/// Number of candidate completions asked for (`n`).
pub const REQUEST_CHOICE_COUNT: &str = "gen_ai.request.choice.count";
/// Encoding formats asked for in an embeddings request.
pub const REQUEST_ENCODING_FORMATS: &str = "gen_ai.request.encoding_formats";
/// The model that actually answered.
pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
/// The provider's id of the completion.
pub const RESPONSE_ID: &str = "gen_ai.response.id";
/// Why each choice stopped (`stop`, `length`, `tool_calls`, …).
pub const RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
/// Tokens of the prompt.
pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
/// Tokens generated.
pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
/// Dimensions of each embedding returned.
pub const EMBEDDINGS_DIMENSION_COUNT: &str = "gen_ai.embeddings.dimension.count";
/// What the model was asked to produce (`text`, `json`, …).
pub const OUTPUT_TYPE: &str = "gen_ai.output.type";

/// The HTTP status answered (server span) or received (client span).
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// The HTTP method.
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// The route template of the server span.
pub const HTTP_ROUTE: &str = "http.route";
/// Host name of the upstream called.
pub const SERVER_ADDRESS: &str = "server.address";
/// Port of the upstream called.
pub const SERVER_PORT: &str = "server.port";
/// The class of error a failed operation ended with.
pub const ERROR_TYPE: &str = "error.type";

/// `gen_ai.operation.name` of chat completions (OpenAI Chat Completions, Anthropic Messages).
pub const OPERATION_CHAT: &str = "chat";
/// `gen_ai.operation.name` of embeddings.
pub const OPERATION_EMBEDDINGS: &str = "embeddings";

/// The conventions' `gen_ai.provider.name` for a provider kind as the gateway names it; a kind
/// the conventions do not list is passed through.
pub fn provider_name(kind: &str) -> &str {
    match kind {
        "mistral" => "mistral_ai",
        "gemini" | "google" => "gcp.gemini",
        "vertex" | "vertex_ai" => "gcp.vertex_ai",
        "xai" | "grok" => "x_ai",
        "bedrock" => "aws.bedrock",
        "azure" | "azure_openai" => "azure.ai.openai",
        "watsonx" => "ibm.watsonx.ai",
        other => other,
    }
}
