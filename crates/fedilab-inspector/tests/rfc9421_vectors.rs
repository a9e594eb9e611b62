//! The RFC 9421 implementation held against the RFC's own test vectors:
//! the `test-request` of Appendix B.2, the `test-key-rsa-pss` public key of
//! Appendix B.1.2, and the signatures of B.2.1 (minimal) and B.2.3 (full
//! coverage with rsa-pss-sha512); the `test-key-ed25519` public key of
//! B.1.4 and the signature of B.2.6 (ed25519). Signing and verifying with our own code
//! alone could hide a shared misreading of the signature base; these
//! cannot.

use base64::Engine as _;
use fedilab_inspector::exchange::{Body, Exchange, RequestRecord};
use fedilab_inspector::signature::{
    DigestStatus, ProblemCode, PublicKey, inspect, verify, verify_explained, verify_rsa,
};
use fedilab_inspector::{SignatureConfig, signature::Scheme};
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey as _;

const TEST_KEY_RSA_PSS: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr4tmm3r20Wd/PbqvP1s2
+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry53mm+
oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHq
gDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUAAN5W
Utzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4
aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oyc6XI
2wIDAQAB
-----END PUBLIC KEY-----";

/// RFC 9421 B.2 `test-request`, arriving at the signature's creation time.
fn test_request(signature_input: &str, signature: &str) -> Exchange {
    let body = br#"{"hello": "world"}"#;
    let headers = [
        ("host", "example.com"),
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("content-type", "application/json"),
        (
            "content-digest",
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        ),
        ("content-length", "18"),
        ("signature-input", signature_input),
        ("signature", signature),
    ];
    Exchange {
        id: 1,
        started_us: 1_618_884_473 * 1_000_000,
        client: None,
        host: "example.com".into(),
        upstream: None,
        request: RequestRecord {
            method: "POST".into(),
            uri: "/foo?param=Value&Pet=dog".into(),
            version: "HTTP/1.1".into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: Body {
                captured: body.to_vec().into(),
                size: body.len() as u64,
                truncated: false,
                complete: true,
            },
        },
        response: None,
        error: None,
        headers_us: None,
        total_us: 0,
        upgrade: None,
    }
}

fn key() -> RsaPublicKey {
    RsaPublicKey::from_public_key_pem(TEST_KEY_RSA_PSS).expect("RFC 9421 B.1.2 key")
}

#[test]
fn b_2_3_full_coverage_verifies() {
    let ex = test_request(
        r#"sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss""#,
        "sig-b23=:bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvKiLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==:",
    );
    let info = inspect(&ex, &SignatureConfig::default()).expect("signed");
    assert_eq!(info.scheme, Scheme::Rfc9421);
    assert_eq!(info.key_id.as_deref(), Some("test-key-rsa-pss"));
    assert!(info.problems.is_empty(), "{:?}", info.problems);
    assert_eq!(
        info.digest.as_ref().map(|d| d.status),
        Some(DigestStatus::Match)
    );
    assert_eq!(
        info.base.as_deref(),
        Some(concat!(
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n",
            "\"@method\": POST\n",
            "\"@path\": /foo\n",
            "\"@query\": ?param=Value&Pet=dog\n",
            "\"@authority\": example.com\n",
            "\"content-type\": application/json\n",
            "\"content-digest\": sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:\n",
            "\"content-length\": 18\n",
            "\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@query\" \"@authority\" \"content-type\" \"content-digest\" \"content-length\");created=1618884473;keyid=\"test-key-rsa-pss\""
        ))
    );
    let pending = info.pending.as_ref().expect("pending");
    assert!(verify_rsa(&key(), pending).is_ok());

    let mut tampered = pending.clone();
    tampered.base[10] ^= 1;
    let err = verify_rsa(&key(), &tampered).expect_err("tampered base");
    assert_eq!(err.code, ProblemCode::BadSignature);
}

#[test]
fn b_2_1_minimal_verifies() {
    let ex = test_request(
        r#"sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#,
        "sig-b21=:d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++wgGxbtRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rgFWhzx2VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5TmcAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==:",
    );
    let info = inspect(&ex, &SignatureConfig::default()).expect("signed");
    let pending = info.pending.as_ref().expect("pending");
    assert!(verify_rsa(&key(), pending).is_ok());
    // Nothing is covered: the verdict must still say so.
    let codes: Vec<_> = info.problems.iter().map(|p| p.code).collect();
    assert_eq!(
        codes,
        [ProblemCode::DigestNotSigned, ProblemCode::TargetNotSigned]
    );
}

/// RFC 9421 B.1.4 `test-key-ed25519`, the public key (the JWK's `x`).
fn ed25519_key() -> PublicKey {
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode("JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs")
        .expect("base64url");
    PublicKey::Ed25519(x.try_into().expect("32 bytes"))
}

#[test]
fn b_2_6_ed25519_verifies() {
    let ex = test_request(
        r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#,
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
    );
    let info = inspect(&ex, &SignatureConfig::default()).expect("signed");
    assert_eq!(info.key_id.as_deref(), Some("test-key-ed25519"));
    let pending = info.pending.as_ref().expect("pending");
    // No `alg`: the key decides.
    assert_eq!(verify(&ed25519_key(), pending), Ok("ed25519"));
    let mut tampered = pending.clone();
    tampered.base[3] ^= 1;
    let err = verify(&ed25519_key(), &tampered).expect_err("tampered base");
    assert_eq!(err.code, ProblemCode::BadSignature);
    // The RSA key of B.1.2 does not verify it.
    let rsa = PublicKey::Rsa(key());
    assert!(verify(&rsa, pending).is_err());

    // With `alg="ed25519"` in the parameters the base changes, so the RFC's
    // signature no longer fits; the parameter itself is understood.
    let ex = test_request(
        r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519";alg="ed25519""#,
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
    );
    let info = inspect(&ex, &SignatureConfig::default()).expect("signed");
    let codes: Vec<_> = info.problems.iter().map(|p| p.code).collect();
    assert!(
        !codes.contains(&ProblemCode::UnsupportedAlgorithm),
        "{codes:?}"
    );
    let pending = info.pending.as_ref().expect("pending");
    assert_eq!(
        verify_explained(&ed25519_key(), pending).map_err(|p| p.code),
        Err(ProblemCode::BadSignature)
    );
}
