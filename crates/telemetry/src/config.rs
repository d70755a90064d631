//! The `telemetry:` configuration block and the `OTEL_*` environment, resolved into
//! [`TelemetrySettings`].
//!
//! Precedence, highest first (the environment wins over the file, as the OpenTelemetry
//! specification has `OTEL_*` variables override what a program was configured with):
//!
//! | setting | sources |
//! |---|---|
//! | endpoint | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL: `/v1/traces` is appended for HTTP), `telemetry.otlp_endpoint` (a base URL like the previous one; a URL already ending in `/v1/traces` is kept) |
//! | protocol | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL`, `telemetry.protocol`, else `http/protobuf` |
//! | service name | `OTEL_SERVICE_NAME`, `telemetry.service_name`, `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else `portcullis` |
//! | resource | `OTEL_RESOURCE_ATTRIBUTES` (`key=value,…`, values percent-decoded) |
//!
//! With no endpoint anywhere — or with `OTEL_SDK_DISABLED=true` — telemetry is off and no
//! connection is ever attempted.

use std::fmt;

use portcullis_core::Issues;
use serde::Deserialize;

/// The environment variable naming the trace endpoint, used as is.
pub const ENV_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The environment variable naming the OTLP base URL.
pub const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The environment variable choosing the protocol of traces.
pub const ENV_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// The environment variable choosing the protocol of every signal.
pub const ENV_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// The environment variable naming the service.
pub const ENV_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// The environment variable listing resource attributes.
pub const ENV_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// The environment variable that turns the SDK off.
pub const ENV_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";

/// The service name when nothing names one.
pub const DEFAULT_SERVICE_NAME: &str = "portcullis";
/// The path of traces under an OTLP/HTTP base URL.
pub const HTTP_TRACES_PATH: &str = "/v1/traces";

/// `telemetry:` as written in the configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// The collector's OTLP base URL (`http://collector:4318`, or `http://collector:4317` for
    /// gRPC). Absent (or an unset `${VAR}`): only the environment can turn telemetry on.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (default) or `grpc`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// The `service.name` of the spans (default `portcullis`).
    #[serde(default)]
    pub service_name: Option<String>,
}

/// How spans are sent to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OTLP over HTTP, protobuf bodies (`http/protobuf`).
    #[default]
    HttpProtobuf,
    /// OTLP over gRPC (`grpc`).
    Grpc,
}

impl Protocol {
    fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "http/protobuf" => Some(Self::HttpProtobuf),
            "grpc" => Some(Self::Grpc),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::Grpc => "grpc",
        })
    }
}

/// Telemetry resolved: where and how spans go, and the resource they describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// The full URL spans are sent to (for HTTP, including `/v1/traces`).
    pub endpoint: String,
    /// The protocol.
    pub protocol: Protocol,
    /// `service.name`.
    pub service_name: String,
    /// Further resource attributes (`OTEL_RESOURCE_ATTRIBUTES`, without `service.name`).
    pub resource_attributes: Vec<(String, String)>,
}

/// Resolves the file's block (at `path`, e.g. `telemetry`) and the environment (`env` returns
/// a variable's value when set and not empty) into the settings, or `None` when telemetry is
/// off. Every problem is returned at once.
pub fn resolve(
    raw: Option<&RawTelemetry>,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<TelemetrySettings>, Issues> {
    let env = |key: &str| env(key).filter(|v| !v.trim().is_empty());
    let raw = raw.cloned().unwrap_or_default();
    let mut issues = Issues::new();

    let protocol = match env(ENV_TRACES_PROTOCOL)
        .map(|v| (ENV_TRACES_PROTOCOL.to_owned(), v))
        .or_else(|| env(ENV_PROTOCOL).map(|v| (ENV_PROTOCOL.to_owned(), v)))
        .or_else(|| {
            raw.protocol
                .clone()
                .map(|v| (format!("{path}.protocol"), v))
        }) {
        None => Protocol::default(),
        Some((key, text)) => Protocol::parse(&text).unwrap_or_else(|| {
            issues.push(
                key,
                format!("`{text}` is not supported: use `http/protobuf` or `grpc`"),
            );
            Protocol::default()
        }),
    };

    let endpoint = if let Some(url) = env(ENV_TRACES_ENDPOINT) {
        Some((ENV_TRACES_ENDPOINT.to_owned(), url.trim().to_owned()))
    } else if let Some(base) = env(ENV_ENDPOINT) {
        Some((ENV_ENDPOINT.to_owned(), signal_url(&base, protocol, false)))
    } else {
        raw.otlp_endpoint
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .map(|base| {
                (
                    format!("{path}.otlp_endpoint"),
                    signal_url(base, protocol, true),
                )
            })
    };
    if let Some((key, url)) = &endpoint
        && let Err(why) = check_url(url)
    {
        issues.push(key.clone(), why);
    }

    let mut resource_attributes = Vec::new();
    let mut resource_service_name = None;
    if let Some(text) = env(ENV_RESOURCE_ATTRIBUTES) {
        match parse_resource_attributes(&text) {
            Ok(pairs) => {
                for (k, v) in pairs {
                    if k == "service.name" {
                        resource_service_name = Some(v);
                    } else {
                        resource_attributes.push((k, v));
                    }
                }
            }
            Err(why) => issues.push(ENV_RESOURCE_ATTRIBUTES, why),
        }
    }
    if raw
        .service_name
        .as_deref()
        .is_some_and(|n| n.trim().is_empty())
    {
        issues.push(format!("{path}.service_name"), "must not be empty");
    }
    let service_name = env(ENV_SERVICE_NAME)
        .or_else(|| raw.service_name.clone().filter(|n| !n.trim().is_empty()))
        .or(resource_service_name)
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());

    if !issues.is_empty() {
        return Err(issues);
    }
    let disabled = env(ENV_SDK_DISABLED).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    Ok(endpoint
        .filter(|_| !disabled)
        .map(|(_, endpoint)| TelemetrySettings {
            endpoint,
            protocol,
            service_name,
            resource_attributes,
        }))
}

/// The URL of traces under an OTLP base URL: for HTTP, `/v1/traces` appended (unless
/// `keep_signal_path` and the URL already ends with it); for gRPC, the URL itself.
fn signal_url(base: &str, protocol: Protocol, keep_signal_path: bool) -> String {
    let base = base.trim();
    match protocol {
        Protocol::Grpc => base.to_owned(),
        Protocol::HttpProtobuf => {
            let trimmed = base.trim_end_matches('/');
            if keep_signal_path && trimmed.ends_with(HTTP_TRACES_PATH) {
                trimmed.to_owned()
            } else {
                format!("{trimmed}{HTTP_TRACES_PATH}")
            }
        }
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a URL (e.g. http://collector:4318)"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("`{url}` must start with `http://` or `https://`")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{url}` names no host"));
    }
    Ok(())
}

/// `key1=value1,key2=value2`, values percent-decoded (W3C Baggage octets, as the
/// specification of `OTEL_RESOURCE_ATTRIBUTES` says).
fn parse_resource_attributes(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("`{item}` is not `key=value`"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("`{item}` has no key"));
        }
        let value = percent_decode(value.trim())
            .ok_or_else(|| format!("the value of `{key}` is not valid percent-encoded UTF-8"))?;
        pairs.push((key.to_owned(), value));
    }
    Ok(pairs)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve_with(
        raw: Option<RawTelemetry>,
        vars: &[(&str, &str)],
    ) -> Result<Option<TelemetrySettings>, Issues> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        resolve(raw.as_ref(), "telemetry", &|k| env.get(k).cloned())
    }

    fn file(endpoint: &str) -> RawTelemetry {
        RawTelemetry {
            otlp_endpoint: Some(endpoint.to_owned()),
            ..RawTelemetry::default()
        }
    }

    #[test]
    fn nothing_set_is_off() {
        assert_eq!(resolve_with(None, &[]).unwrap(), None);
        assert_eq!(
            resolve_with(Some(RawTelemetry::default()), &[]).unwrap(),
            None
        );
        // Settings other than the endpoint do not turn telemetry on.
        assert_eq!(
            resolve_with(
                None,
                &[
                    ("OTEL_SERVICE_NAME", "gw"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
                ]
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn base_url_gets_the_traces_path_for_http_only() {
        let s = resolve_with(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(s.endpoint, "http://c:4318/v1/traces");
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.service_name, "portcullis");

        let s = resolve_with(
            None,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://c:4317");
        assert_eq!(s.protocol, Protocol::Grpc);
    }

    #[test]
    fn traces_endpoint_is_used_as_is_and_wins() {
        let s = resolve_with(
            Some(file("http://file:4318")),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9999/custom"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://t:9999/custom");
    }

    #[test]
    fn environment_wins_over_the_file() {
        let raw = RawTelemetry {
            otlp_endpoint: Some("http://file:4317".into()),
            protocol: Some("grpc".into()),
            service_name: Some("from-file".into()),
        };
        let s = resolve_with(Some(raw.clone()), &[]).unwrap().unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.protocol, s.service_name.as_str()),
            ("http://file:4317", Protocol::Grpc, "from-file")
        );
        let s = resolve_with(
            Some(raw),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_SERVICE_NAME", "from-env"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.protocol, s.service_name.as_str()),
            (
                "http://env:4318/v1/traces",
                Protocol::HttpProtobuf,
                "from-env"
            )
        );
    }

    #[test]
    fn file_endpoint_is_a_base_url_and_keeps_an_explicit_traces_path() {
        let s = resolve_with(Some(file("https://c.example")), &[])
            .unwrap()
            .unwrap();
        assert_eq!(s.endpoint, "https://c.example/v1/traces");
        let s = resolve_with(Some(file("https://c.example/v1/traces")), &[])
            .unwrap()
            .unwrap();
        assert_eq!(s.endpoint, "https://c.example/v1/traces");
    }

    #[test]
    fn resource_attributes_and_service_name_precedence() {
        let s = resolve_with(
            Some(file("http://c:4318")),
            &[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod, service.name=res,team=a%20b",
            )],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.service_name, "res");
        assert_eq!(
            s.resource_attributes,
            vec![
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "a b".to_owned())
            ]
        );
        let s = resolve_with(
            Some(RawTelemetry {
                service_name: Some("file".into()),
                ..file("http://c:4318")
            }),
            &[("OTEL_RESOURCE_ATTRIBUTES", "service.name=res")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.service_name, "file");
    }

    #[test]
    fn sdk_disabled_turns_it_off() {
        assert_eq!(
            resolve_with(
                None,
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_SDK_DISABLED", "true")
                ]
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn problems_name_their_key_or_variable() {
        let issues = resolve_with(
            Some(RawTelemetry {
                otlp_endpoint: Some("collector:4318".into()),
                protocol: Some("http/json".into()),
                service_name: Some(" ".into()),
            }),
            &[("OTEL_RESOURCE_ATTRIBUTES", "novalue")],
        )
        .unwrap_err();
        let keys: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            keys,
            [
                "telemetry.protocol",
                "telemetry.otlp_endpoint",
                "OTEL_RESOURCE_ATTRIBUTES",
                "telemetry.service_name"
            ],
            "{issues:?}"
        );
        assert!(
            issues
                .iter()
                .next()
                .unwrap()
                .message
                .contains("`http/json` is not supported")
        );

        let issues = resolve_with(None, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")]).unwrap_err();
        assert_eq!(
            issues.iter().next().unwrap().path,
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        );
        let issues =
            resolve_with(None, &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://c")]).unwrap_err();
        assert_eq!(
            issues.iter().next().unwrap().path,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        );
    }
}
