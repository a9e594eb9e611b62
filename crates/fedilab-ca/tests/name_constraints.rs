//! Issue 3: the lab root vouches for the lab domain and nothing else.
//!
//! Leaves outside the domain are built with rcgen directly and signed with
//! the lab key, bypassing `HostName`'s guard, to prove that the root's name
//! constraints (not our own checks) make OpenSSL and rustls/webpki reject
//! them. Needs the `openssl` command (Debian package `openssl`).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::SystemTime;

use fedilab_ca::{Ca, HostName};
use fedilab_profile::Domain;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

const DOMAIN: &str = "fediverse.local";

fn domain() -> Domain {
    DOMAIN.parse().unwrap()
}

/// A serverAuth leaf for `sans`, signed with the CA's own key, with none of
/// fedilab-ca's checks in the way.
fn rogue_leaf(ca: &Ca, sans: &[SanType]) -> rcgen::Certificate {
    let ca_key = KeyPair::from_pem(ca.key_pem().expose()).unwrap();
    let issuer = Issuer::from_ca_cert_der(&ca.cert_der().to_vec().into(), ca_key).unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "rogue");
    params.distinguished_name = dn;
    params.subject_alt_names = sans.to_vec();
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.signed_by(&key, &issuer).unwrap()
}

fn dns(name: &str) -> SanType {
    SanType::DnsName(name.to_owned().try_into().unwrap())
}

/// Runs `openssl verify` with the lab root as the only trust anchor and
/// returns (success, combined output).
fn openssl_verify(dir: &Path, ca: &Ca, leaf_pem: &str) -> (bool, String) {
    let ca_path = dir.join("ca.pem");
    let leaf_path = dir.join("leaf.pem");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    std::fs::write(&leaf_path, leaf_pem).unwrap();
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-purpose")
        .arg("sslserver")
        .arg("-CAfile")
        .arg(&ca_path)
        .arg(&leaf_path)
        .output()
        .expect("the `openssl` command is needed (Debian package openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Verifies `leaf` for `name` with rustls's own WebPKI verifier, trusting
/// only the lab root.
fn rustls_verify(ca: &Ca, leaf: &CertificateDer<'_>, name: &str) -> Result<(), rustls::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der().to_vec()))
        .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    verifier
        .verify_server_cert(
            leaf,
            &[],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

/// Verifies `leaf` with webpki directly (path building only, no name check),
/// trusting only the lab root.
fn webpki_verify(ca: &Ca, leaf: &CertificateDer<'_>) -> Result<(), webpki::Error> {
    let root = CertificateDer::from(ca.cert_der().to_vec());
    let anchor = webpki::anchor_from_trusted_cert(&root).unwrap();
    let ee = webpki::EndEntityCert::try_from(leaf).unwrap();
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map(|_| ())
}

#[test]
fn an_instance_leaf_verifies_with_openssl_and_rustls() {
    let tmp = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let ca = Ca::generate(&domain(), "test-host", now).unwrap();
    let host = HostName::new("mastodon1.fediverse.local", &domain()).unwrap();
    let leaf = ca.issue_leaf(&[host], now).unwrap();

    let (ok, out) = openssl_verify(tmp.path(), &ca, &leaf.cert_pem);
    assert!(ok, "openssl verify failed: {out}");
    assert!(out.contains(": OK"), "{out}");

    let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
    webpki_verify(&ca, &der).unwrap();
    rustls_verify(&ca, &der, "mastodon1.fediverse.local").unwrap();
}

#[test]
fn leaves_outside_the_domain_violate_the_name_constraints() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::generate(&domain(), "test-host", SystemTime::now()).unwrap();

    for name in ["example.com", "mastodon1.fediverse.local.example.com"] {
        let rogue = rogue_leaf(&ca, &[dns(name)]);
        let leaf = rogue.der();

        let (ok, out) = openssl_verify(tmp.path(), &ca, &rogue.pem());
        assert!(!ok, "openssl accepted a leaf for {name}: {out}");
        assert!(
            out.contains("permitted subtree violation"),
            "openssl rejected {name} for another reason: {out}"
        );

        assert_eq!(
            webpki_verify(&ca, leaf),
            Err(webpki::Error::NameConstraintViolation),
            "webpki on {name}"
        );
        let err = rustls_verify(&ca, leaf, name).unwrap_err();
        assert!(
            format!("{err:?}").contains("NameConstraintViolation"),
            "rustls rejected {name} for another reason: {err:?}"
        );
    }
}

#[test]
fn a_leaf_for_an_ip_address_violates_the_name_constraints() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::generate(&domain(), "test-host", SystemTime::now()).unwrap();
    let rogue = rogue_leaf(
        &ca,
        &[
            dns("mastodon1.fediverse.local"),
            SanType::IpAddress("192.0.2.1".parse().unwrap()),
        ],
    );
    let (ok, out) = openssl_verify(tmp.path(), &ca, &rogue.pem());
    assert!(!ok, "openssl accepted an IP leaf: {out}");
    assert!(out.contains("excluded subtree violation"), "{out}");
    assert_eq!(
        webpki_verify(&ca, rogue.der()),
        Err(webpki::Error::NameConstraintViolation)
    );
}

#[test]
fn the_root_has_the_promised_extensions() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::generate(&domain(), "test-host", SystemTime::now()).unwrap();
    let path = tmp.path().join("ca.pem");
    std::fs::write(&path, ca.cert_pem()).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "X509v3 Name Constraints: critical",
        "DNS:fediverse.local",
        "IP:0.0.0.0/0.0.0.0",
        "CA:TRUE, pathlen:0",
        "Certificate Sign, CRL Sign",
        "ASN1 OID: prime256v1",
        "X509v3 Subject Key Identifier",
        "CN = fedilab lab CA for fediverse.local",
        "test-host",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
