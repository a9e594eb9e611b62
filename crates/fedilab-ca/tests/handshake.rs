//! Issue 3: a real TLS handshake over loopback with a lab leaf.
//!
//! A rustls server presents the instance leaf; a client that trusts only the
//! lab root connects with SNI `mastodon1.<domain>` and reads a greeting. The
//! same client refuses a name the leaf does not carry, and refuses a leaf for
//! a name outside the domain even though the lab key signed it. Every await
//! is bounded by a timeout; the server task is aborted at the end.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fedilab_ca::{Ca, HostName};
use fedilab_profile::Domain;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const GREETING: &[u8] = b"hello from the lab\n";
const BUDGET: Duration = Duration::from_secs(10);

async fn within<F: std::future::IntoFuture>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(BUDGET, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {BUDGET:?}"))
}

fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Serves `cert_pem`/`key_pem` on 127.0.0.1:0: every connection that
/// completes a handshake gets [`GREETING`].
async fn serve(cert_pem: &str, key_pem: &str) -> (std::net::SocketAddr, JoinHandle<()>) {
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = within("bind", TcpListener::bind("127.0.0.1:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok(Ok((tcp, _))) = tokio::time::timeout(BUDGET, listener.accept()).await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate aborts the handshake:
                // nothing to do then.
                if let Ok(Ok(mut tls)) = tokio::time::timeout(BUDGET, acceptor.accept(tcp)).await {
                    let _ = tokio::time::timeout(BUDGET, async {
                        tls.write_all(GREETING).await?;
                        tls.shutdown().await
                    })
                    .await;
                }
            });
        }
    });
    (addr, task)
}

/// Connects to `addr` as `sni`, trusting only `ca`, and reads the greeting.
async fn fetch(addr: std::net::SocketAddr, ca: &Ca, sni: &str) -> std::io::Result<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der().to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = within("connect", TcpStream::connect(addr)).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let mut tls = within("handshake", connector.connect(name, tcp)).await?;
    let mut body = Vec::new();
    within("read", tls.read_to_end(&mut body)).await?;
    Ok(body)
}

fn lab() -> (Domain, Ca) {
    let domain: Domain = "fediverse.local".parse().unwrap();
    let ca = Ca::generate(&domain, "test-host", SystemTime::now()).unwrap();
    (domain, ca)
}

#[tokio::test]
async fn a_client_trusting_only_the_lab_ca_reaches_the_instance() {
    install_ring();
    let (domain, ca) = lab();
    let host = HostName::new("mastodon1.fediverse.local", &domain).unwrap();
    let leaf = ca.issue_leaf(&[host], SystemTime::now()).unwrap();
    let (addr, server) = serve(&leaf.cert_pem, leaf.key_pem.expose()).await;

    let body = fetch(addr, &ca, "mastodon1.fediverse.local").await.unwrap();
    assert_eq!(body, GREETING);

    // The leaf does not carry example.com: the client refuses it.
    let err = fetch(addr, &ca, "example.com").await.unwrap_err();
    assert!(
        format!("{err:?}").contains("NotValidForName"),
        "refused for another reason: {err:?}"
    );

    server.abort();
}

#[tokio::test]
async fn a_lab_signed_leaf_outside_the_domain_is_refused() {
    install_ring();
    let (_, ca) = lab();
    // Signed with the lab key, bypassing fedilab-ca's own guard.
    let ca_key = rcgen::KeyPair::from_pem(ca.key_pem().expose()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(&ca.cert_der().to_vec().into(), ca_key).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["example.com".to_owned()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let rogue = params.signed_by(&key, &issuer).unwrap();
    let (addr, server) = serve(&rogue.pem(), &key.serialize_pem()).await;

    let err = fetch(addr, &ca, "example.com").await.unwrap_err();
    assert!(
        format!("{err:?}").contains("NameConstraintViolation"),
        "refused for another reason: {err:?}"
    );

    server.abort();
}
