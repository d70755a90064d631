//! The hostile corpus: every token an attacker or a broken client may send, each refused for
//! its specific reason; and a property test that arbitrary input is refused without a panic.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_oidc::{MAX_TOKEN_BYTES, TokenError, Verifier};
use portcullis_test_support::oidc::{encode_segment, mint_hs256, mint_unsigned, unix_now};
use portcullis_test_support::{MockAlg, MockIssuer};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::common::{AUD, config, verifier};

/// `token` with its payload replaced by `claims`, keeping the header and signature.
fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], encode_segment(claims), parts[2])
}

#[tokio::test]
async fn algorithm_attacks_are_refused_before_any_key_lookup() {
    let mock = MockIssuer::start().await;
    let verifier = verifier(vec![config(&mock)]);
    let claims = mock.claims(AUD);
    let rs_kid = mock.kid(MockAlg::RS256);

    for none in ["none", "None", "NONE"] {
        let unsigned = mint_unsigned(&json!({"alg": none, "typ": "JWT"}), &claims);
        assert_refused!(verifier, unsigned, TokenError::AlgorithmNone);
    }
    // `alg: none` with a signature attached is still `none`.
    let header = json!({"alg": "none", "kid": rs_kid});
    let signed_none = format!("{}c2lnbmF0dXJl", mint_unsigned(&header, &claims));
    assert_refused!(verifier, signed_none, TokenError::AlgorithmNone);

    // RS/HS confusion: HMAC keyed with the issuer's public key, as PEM and as JWK bytes.
    let pem = mock.rsa_public_key_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let jwks = mock.jwks();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == json!(rs_kid))
        .unwrap();
    for secret in [pem.into_bytes(), serde_json::to_vec(jwk).unwrap()] {
        for alg in ["HS256", "HS384", "HS512"] {
            let confused = mint_hs256(&secret, &json!({"alg": alg, "kid": rs_kid}), &claims);
            assert_refused!(verifier, confused, TokenError::SymmetricAlgorithm(ref a) if a == alg);
        }
    }
    for alg in ["ES512", "RS1", "A256GCM", "", "ps256"] {
        let token = mock.mint_with_header(MockAlg::RS256, &json!({"alg": alg}), &claims);
        assert_refused!(verifier, token, TokenError::UnsupportedAlgorithm(ref a) if a == alg);
    }
    assert_eq!(mock.jwks_fetches(), 0, "no key was looked up");
    assert_eq!(mock.discovery_fetches(), 0);
}

#[tokio::test]
async fn hostile_tokens_are_refused_with_their_specific_reason() {
    let (mock, other) = tokio::join!(MockIssuer::start(), MockIssuer::start());
    let verifier = verifier(vec![config(&mock)]);
    let now = unix_now();
    let claims = mock.claims(AUD);
    let valid = mock.mint(MockAlg::RS256, &claims);
    let with = |changes: Value| {
        let mut c = claims.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let mint = |changes: Value| mock.mint(MockAlg::RS256, &with(changes));

    // Key selection.
    let wrong_kid = mock.mint_with_header(MockAlg::RS256, &json!({"kid": "no-such-key"}), &claims);
    assert_refused!(verifier, wrong_kid, TokenError::UnknownKeyId { ref kid, .. } if kid == "no-such-key");
    let ec_kid = json!({"kid": mock.kid(MockAlg::ES256)});
    let cross_type = mock.mint_with_header(MockAlg::RS256, &ec_kid, &claims);
    assert_refused!(verifier, cross_type, TokenError::KeyAlgorithmMismatch { ref alg, .. } if alg == "RS256");
    // An RSA key published for RS256 is not accepted for PS256.
    let rs_kid = json!({"kid": mock.kid(MockAlg::RS256)});
    let pss_on_rs_key = mock.mint_with_header(MockAlg::PS256, &rs_kid, &claims);
    assert_refused!(
        verifier,
        pss_on_rs_key,
        TokenError::KeyAlgorithmMismatch { .. }
    );
    let no_kid = mock.mint_with_header(MockAlg::ES256, &json!({"kid": null}), &claims);
    verifier.verify(&no_kid).await.unwrap();
    let no_kid_rsa = mock.mint_with_header(MockAlg::PS256, &json!({"kid": null}), &claims);
    verifier.verify(&no_kid_rsa).await.unwrap();
    let crit = mock.mint_with_header(MockAlg::RS256, &json!({"crit": ["exp"], "exp": 1}), &claims);
    assert_refused!(verifier, crit, TokenError::CriticalHeader);

    // Signatures.
    let tampered = with_payload(&valid, &with(json!({"sub": "admin"})));
    assert_refused!(verifier, tampered, TokenError::InvalidSignature);
    let foreign_key = other.mint_with_header(MockAlg::RS256, &rs_kid, &claims);
    assert_refused!(verifier, foreign_key, TokenError::InvalidSignature);
    let es_from_other = other.mint_with_header(MockAlg::ES256, &ec_kid, &claims);
    assert_refused!(verifier, es_from_other, TokenError::InvalidSignature);
    let (message, signature) = valid.rsplit_once('.').unwrap();
    let mut flipped = URL_SAFE_NO_PAD.decode(signature).unwrap();
    flipped[10] ^= 1;
    let bit_flip = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&flipped));
    assert_refused!(verifier, bit_flip, TokenError::InvalidSignature);
    let short = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&flipped[..200]));
    assert_refused!(verifier, short, TokenError::InvalidSignature);
    let stripped = format!("{}.", valid.rsplit_once('.').unwrap().0);
    assert_refused!(
        verifier,
        stripped,
        TokenError::Malformed("signature is empty")
    );

    // Time.
    assert_refused!(
        verifier,
        mint(json!({"exp": now - 3600})),
        TokenError::Expired
    );
    assert_refused!(
        verifier,
        mint(json!({"nbf": now + 3600})),
        TokenError::NotYetValid
    );
    assert_refused!(
        verifier,
        mint(json!({"iat": now + 3600})),
        TokenError::IssuedInFuture
    );
    assert_refused!(verifier, mint(json!({"exp": null})), TokenError::MissingClaim(ref c) if c == "exp");
    assert_refused!(
        verifier,
        mint(json!({"exp": "tomorrow"})),
        TokenError::InvalidClaim { ref claim, .. } if claim == "exp"
    );
    assert_refused!(
        verifier,
        mint(json!({"iat": "yesterday"})),
        TokenError::InvalidClaim { ref claim, .. } if claim == "iat"
    );

    // Audience.
    assert_refused!(
        verifier,
        mint(json!({"aud": "someone-else"})),
        TokenError::AudienceMismatch
    );
    assert_refused!(
        verifier,
        mint(json!({"aud": ["a", "b"]})),
        TokenError::AudienceMismatch
    );
    assert_refused!(
        verifier,
        mint(json!({"aud": []})),
        TokenError::AudienceMismatch
    );
    assert_refused!(verifier, mint(json!({"aud": null})), TokenError::MissingClaim(ref c) if c == "aud");

    // Issuer.
    let issuer = mock.issuer();
    assert_refused!(
        verifier,
        mint(json!({"iss": format!("{issuer}/")})),
        TokenError::UnknownIssuer(ref i) if *i == format!("{issuer}/")
    );
    assert_refused!(
        verifier,
        mint(json!({"iss": "https://evil.example"})),
        TokenError::UnknownIssuer(ref i) if i == "https://evil.example"
    );
    assert_refused!(
        verifier,
        mint(json!({"iss": null})),
        TokenError::MissingIssuer
    );
    assert_refused!(
        verifier,
        mint(json!({"iss": [issuer]})),
        TokenError::InvalidClaim { ref claim, .. } if claim == "iss"
    );
    let unconfigured = other.mint(MockAlg::RS256, &other.claims(AUD));
    assert_refused!(verifier, unconfigured, TokenError::UnknownIssuer(_));
    // Another issuer's token relabelled with our `iss`: its key id is not ours.
    let relabelled = other.mint(MockAlg::RS256, &claims);
    assert_refused!(verifier, relabelled, TokenError::UnknownKeyId { .. });

    // Subject.
    assert_refused!(verifier, mint(json!({"sub": null})), TokenError::MissingClaim(ref c) if c == "sub");
    assert_refused!(
        verifier,
        mint(json!({"sub": 42})),
        TokenError::InvalidClaim { ref claim, .. } if claim == "sub"
    );

    // The valid token of the corpus still passes: every refusal above is the change's doing.
    verifier.verify(&valid).await.unwrap();
}

#[tokio::test]
async fn garbage_and_oversized_input_is_refused_without_parsing() {
    let mock = MockIssuer::start().await;
    let verifier = verifier(vec![config(&mock)]);
    let claims = mock.claims(AUD);
    let valid = mock.mint(MockAlg::RS256, &claims);
    let (header, rest) = valid.split_once('.').unwrap();

    let padded = format!("{valid}{}", "A".repeat(100 * 1024));
    let e = assert_refused!(verifier, padded, TokenError::TooLarge { .. });
    assert_eq!(e.reason(), "too_large");
    let huge_header = mock.mint_with_header(
        MockAlg::RS256,
        &json!({"x5c": ["A".repeat(MAX_TOKEN_BYTES)]}),
        &claims,
    );
    assert_refused!(verifier, huge_header, TokenError::TooLarge { len, max } if len > max);

    let malformed = [
        String::new(),
        ".".to_owned(),
        "..".to_owned(),
        "...".to_owned(),
        "not base64!!".to_owned(),
        "not base64!.at all?.really".to_owned(),
        format!("{header}.{}", rest.split_once('.').unwrap().0),
        format!("{valid}.extra"),
        format!("{valid}.a.b"),
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode("[1, 2]")),
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode("{\"typ\": \"JWT\"}")),
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode("{\"alg\": 256}")),
        format!("{header}=.{rest}"),
        format!("{header}.bm90IGpzb24.{}", valid.rsplit_once('.').unwrap().1),
        format!("{header}.WzEsMl0.{}", valid.rsplit_once('.').unwrap().1),
        "\u{0}\u{0}.\u{0}.\u{0}".to_owned(),
        "🦀.🦀.🦀".to_owned(),
    ];
    for token in malformed {
        assert_refused!(verifier, token, TokenError::Malformed(_));
    }
    assert_eq!(mock.jwks_fetches(), 0);
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    mock: MockIssuer,
    verifier: Verifier,
}

/// One issuer and verifier for every property-test case.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mock = runtime.block_on(MockIssuer::start());
        let verifier = verifier(vec![config(&mock)]);
        Fixture {
            runtime,
            mock,
            verifier,
        }
    })
}

/// Tokens with a plausible header and payload and a signature of random bytes.
fn forged() -> impl Strategy<Value = String> {
    let alg = prop::sample::select(vec![
        "RS256", "RS384", "PS256", "PS512", "ES256", "ES384", "EdDSA", "HS256", "none", "x",
    ]);
    let kid = prop::option::of(prop::sample::select(vec![
        "rs256", "ps256", "es256", "eddsa", "random",
    ]));
    let iss = prop::sample::select(vec!["ours", "other", "number"]);
    let exp = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::from("soon")),
        Just(Value::from(unix_now() + 3600)),
    ];
    let signature = prop::collection::vec(any::<u8>(), 0..600);
    (alg, kid, iss, exp, signature).prop_map(|(alg, kid, iss, exp, signature)| {
        let mock = &fixture().mock;
        let kid = kid.map(|k| match k {
            "rs256" => mock.kid(MockAlg::RS256),
            "ps256" => mock.kid(MockAlg::PS256),
            "es256" => mock.kid(MockAlg::ES256),
            "eddsa" => mock.kid(MockAlg::EdDSA),
            other => other.to_owned(),
        });
        let iss = match iss {
            "ours" => Value::from(mock.issuer()),
            "other" => Value::from("https://elsewhere.example"),
            _ => Value::from(7),
        };
        let header = json!({"alg": alg, "kid": kid});
        let claims = json!({"iss": iss, "aud": AUD, "sub": "x", "exp": exp});
        format!(
            "{}.{}.{}",
            encode_segment(&header),
            encode_segment(&claims),
            URL_SAFE_NO_PAD.encode(signature)
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_input_is_refused_without_panicking(
        token in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,80}",
            "ey[A-Za-z0-9_=+/-]{0,80}(\\.[A-Za-z0-9_=+/.-]{0,80}){0,4}",
            forged(),
        ]
    ) {
        let fixture = fixture();
        let result = fixture.runtime.block_on(fixture.verifier.verify(&token));
        prop_assert!(result.is_err(), "accepted: {:?}", result);
    }
}
