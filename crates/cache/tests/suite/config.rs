//! The `cache:` section (YAML → raw → validated settings, with layering) and the per-request
//! cache headers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use portcullis_cache::{
    CacheBackend, CacheRequestOptions, CacheSettings, MAX_REQUEST_TTL, RawCacheConfig,
    parse_key_header, parse_skip_header, parse_ttl_header,
};
use portcullis_core::ChatRequest;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    cache: RawCacheConfig,
}

fn parse(yaml: &str) -> RawCacheConfig {
    serde_saphyr::from_str::<File>(yaml).unwrap().cache
}

fn issues(raw: &RawCacheConfig) -> Vec<String> {
    raw.validate("cache")
        .unwrap_err()
        .iter()
        .map(|issue| issue.to_string())
        .collect()
}

#[test]
fn the_documented_example_validates() {
    let raw = parse(
        "cache:
  enabled: true
  ttl: 5m
  backend: redis
  max_bytes: 268435456
  max_entry_bytes: 1048576
  nondeterministic: false
  coalesce: true
  per_request: false
",
    );
    let settings = raw.validate("cache").unwrap();
    assert_eq!(
        settings,
        CacheSettings {
            enabled: true,
            ttl: Duration::from_secs(300),
            backend: CacheBackend::Redis,
            max_bytes: 268_435_456,
            max_entry_bytes: 1_048_576,
            nondeterministic: false,
            coalesce: true,
            per_request: false,
        }
    );
}

#[test]
fn unset_keys_take_defaults() {
    let settings = RawCacheConfig::default().validate("cache").unwrap();
    assert_eq!(settings, CacheSettings::default());
    assert!(!settings.enabled, "caching is opt-in");
    assert_eq!(settings.ttl, Duration::from_secs(300));
    assert_eq!(settings.backend, CacheBackend::Memory);
    assert!(settings.coalesce);
    assert!(settings.per_request, "a request may ask for caching");
}

#[test]
fn ttls_accept_units_and_plain_seconds() {
    for (written, seconds) in [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1d", 86_400),
        ("90", 90),
        ("\"45\"", 45),
    ] {
        let raw = parse(&format!("cache:\n  ttl: {written}\n"));
        assert_eq!(
            raw.validate("cache").unwrap().ttl,
            Duration::from_secs(seconds),
            "ttl: {written}"
        );
    }
}

#[test]
fn every_problem_is_reported_with_its_key_path() {
    let raw = parse(
        "cache:
  ttl: 5x
  backend: disk
  max_bytes: 0
  max_entry_bytes: 0
",
    );
    let found = issues(&raw);
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(
        found[0].starts_with("cache.ttl: `5x` is not a duration"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("cache.backend: unknown backend `disk`"),
        "{found:?}"
    );
    assert_eq!(found[2], "cache.max_bytes: must be greater than 0");
    assert_eq!(found[3], "cache.max_entry_bytes: must be greater than 0");

    for (ttl, message) in [
        ("0", "cache.ttl: must be at least 1s"),
        ("366d", "cache.ttl: must be at most 365d"),
        ("-5", "cache.ttl: `-5` is negative"),
        ("1.5", "cache.ttl: `1.5` is not whole"),
        ("m", "cache.ttl: `m` is not a duration"),
        (
            "99999999999999999999d",
            "cache.ttl: `99999999999999999999d` is not a duration",
        ),
    ] {
        let found = issues(&parse(&format!("cache:\n  ttl: {ttl}\n")));
        assert!(found[0].starts_with(message), "ttl {ttl}: {found:?}");
    }

    let found = issues(&parse(
        "cache:\n  max_bytes: 1000\n  max_entry_bytes: 2000\n",
    ));
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("cache.max_entry_bytes: 2000 exceeds max_bytes"));

    // The path names where the section sits.
    let route = RawCacheConfig {
        backend: Some("disk".into()),
        ..RawCacheConfig::default()
    };
    assert!(
        route
            .validate("routes.fast.cache")
            .unwrap_err()
            .has("routes.fast.cache.backend")
    );
}

#[test]
fn unknown_keys_are_refused() {
    let error = serde_saphyr::from_str::<File>("cache:\n  enable: true\n").unwrap_err();
    assert!(error.to_string().contains("enable"), "{error}");
}

#[test]
fn routes_layer_over_the_top_level_section() {
    let global = parse("cache:\n  enabled: true\n  ttl: 1h\n  backend: redis\n");
    let route = parse("cache:\n  ttl: 30s\n  nondeterministic: true\n");
    let settings = global.overlay(&route).validate("routes.r.cache").unwrap();
    assert!(settings.enabled, "inherited");
    assert_eq!(settings.backend, CacheBackend::Redis, "inherited");
    assert_eq!(settings.ttl, Duration::from_secs(30), "overridden");
    assert!(settings.nondeterministic, "added");

    let off = parse("cache:\n  enabled: false\n");
    assert!(!global.overlay(&off).validate("cache").unwrap().enabled);

    assert!(route.route_issues("routes.r.cache").is_empty());
    let store_keys = parse("cache:\n  backend: memory\n  max_bytes: 10\n");
    let found: Vec<String> = store_keys
        .route_issues("routes.r.cache")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            "routes.r.cache.backend: can only be set in the top-level cache section",
            "routes.r.cache.max_bytes: can only be set in the top-level cache section",
        ]
    );
}

#[test]
fn settings_decide_what_is_cached() {
    let mut settings = CacheSettings {
        enabled: true,
        ..CacheSettings::default()
    };
    let deterministic = ChatRequest {
        temperature: Some(0.0),
        ..ChatRequest::default()
    };
    let creative = ChatRequest {
        temperature: Some(0.9),
        ..ChatRequest::default()
    };
    assert!(settings.should_cache(&deterministic));
    assert!(!settings.should_cache(&creative));
    settings.nondeterministic = true;
    assert!(settings.should_cache(&creative));
    settings.enabled = false;
    assert!(!settings.should_cache(&deterministic));

    // A TTL or key header turns a disabled cache on for its request, unless the operator
    // forbids per-request caching.
    assert!(!settings.applies(&deterministic, false));
    assert!(settings.applies(&creative, true));
    settings.per_request = false;
    assert!(!settings.applies(&creative, true));
    settings.enabled = true;
    assert!(
        settings.applies(&creative, true),
        "asking works where the cache is on"
    );
    settings.nondeterministic = false;
    assert!(!settings.applies(&creative, false));
    assert!(settings.applies(&deterministic, false));
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

#[test]
fn request_headers_amend_the_settings() {
    let options = CacheRequestOptions::from_headers(&headers(&[
        ("x-portcullis-cache-ttl", "120"),
        ("x-portcullis-skip-cache", "false"),
        ("x-portcullis-cache-key", "report-2024-q1"),
    ]))
    .unwrap();
    assert_eq!(
        options,
        CacheRequestOptions {
            ttl: Some(Duration::from_secs(120)),
            skip: false,
            key: Some("report-2024-q1".into()),
        }
    );
    let base = CacheSettings {
        enabled: true,
        ..CacheSettings::default()
    };
    let amended = base.with_request(&options);
    assert_eq!(amended.ttl, Duration::from_secs(120));
    assert!(amended.enabled);

    // Cloudflare AI Gateway's header names work too.
    let options =
        CacheRequestOptions::from_headers(&headers(&[("cf-aig-skip-cache", "true")])).unwrap();
    assert!(options.skip);
    assert!(!base.with_request(&options).enabled);

    assert_eq!(
        CacheRequestOptions::from_headers(&HeaderMap::new()).unwrap(),
        CacheRequestOptions::default()
    );
}

#[test]
fn malformed_headers_are_refused_by_name() {
    for bad in [
        "",
        "abc",
        "-1",
        "0",
        "1.5",
        "2592001",
        "31536000",
        "99999999999999999999999",
    ] {
        let error = parse_ttl_header(bad).unwrap_err();
        assert_eq!(error.header, "x-portcullis-cache-ttl", "{bad}");
    }
    assert_eq!(parse_ttl_header(" 60 ").unwrap(), Duration::from_secs(60));
    // At most 30 days.
    assert_eq!(parse_ttl_header("2592000").unwrap(), MAX_REQUEST_TTL);
    assert_eq!(
        parse_ttl_header("99999999999999999999999")
            .unwrap_err()
            .to_string(),
        "Invalid `x-portcullis-cache-ttl` header: must be at most 30 days (2592000 seconds)"
    );

    assert!(parse_skip_header("TRUE").unwrap());
    assert!(!parse_skip_header("0").unwrap());
    assert_eq!(
        parse_skip_header("maybe").unwrap_err().to_string(),
        "Invalid `x-portcullis-skip-cache` header: expected true or false"
    );

    assert_eq!(parse_key_header(" k 1 ").unwrap(), "k 1");
    assert!(parse_key_header(&"k".repeat(256)).is_ok());
    assert!(parse_key_header(&"k".repeat(257)).is_err());
    assert!(parse_key_header("").is_err());
    assert!(parse_key_header("tab\there").is_err());
    assert!(parse_key_header("naïve").is_err());

    // A non-ASCII header value is refused before it is read as text.
    let mut map = HeaderMap::new();
    map.insert(
        "x-portcullis-cache-key",
        HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
    );
    let error = CacheRequestOptions::from_headers(&map).unwrap_err();
    assert_eq!(error.header, "x-portcullis-cache-key");
}

#[test]
fn the_cache_block_reports_a_bad_route_value_at_its_path() {
    use portcullis_cache::{CacheConfig, RawCaches};
    use portcullis_core::config::Block;

    let raw = RawCaches {
        top: Some(parse("cache:\n  enabled: true\n  ttl: 10m\n")),
        routes: vec![("fast".to_owned(), parse("cache:\n  ttl: soon\n"))],
        redis_configured: false,
    };
    let shown: Vec<String> = CacheConfig::validate(raw, "")
        .unwrap_err()
        .iter()
        .map(|issue| issue.to_string())
        .collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0].starts_with("routes.fast.cache.ttl: `soon` is not a duration"),
        "{shown:?}"
    );

    let raw = RawCaches {
        top: Some(parse("cache:\n  enabled: true\n  ttl: 10m\n")),
        routes: vec![("fast".to_owned(), parse("cache:\n  ttl: 1m\n"))],
        redis_configured: false,
    };
    let caches = CacheConfig::validate(raw, "").unwrap();
    assert!(caches.settings(Some("fast")).enabled, "inherited");
    assert_eq!(caches.settings(Some("fast")).ttl, Duration::from_secs(60));
    assert_eq!(caches.settings(None).ttl, Duration::from_secs(600));
}
