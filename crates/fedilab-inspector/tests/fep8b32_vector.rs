//! FEP-8b32 Object Integrity Proofs held against the FEP's own test vector
//! (`fep/8b32/fep-8b32.feature` in codeberg.org/fediverse/fep: an
//! `eddsa-jcs-2022` proof on a Create(Note) with a Place whose coordinates
//! are non-integer numbers, and the actor's Multikey). Our JCS and base58
//! could share a misreading with a proof made by our own code; this
//! vector, made elsewhere, cannot.

use fedilab_inspector::signature::multibase::ed25519_multikey;
use fedilab_inspector::signature::proof::find;
use fedilab_inspector::signature::verify_ed25519;
use serde_json::Value;

const SIGNED: &str = r#"{
    "@context": [
        "https://www.w3.org/ns/activitystreams",
        "https://w3id.org/security/data-integrity/v2"
    ],
    "id": "https://server.example/activities/1",
    "type": "Create",
    "actor": "https://server.example/users/alice",
    "object": {
        "id": "https://server.example/objects/1",
        "type": "Note",
        "attributedTo": "https://server.example/users/alice",
        "content": "Hello world",
        "location": {
            "type": "Place",
            "longitude": -71.184902,
            "latitude": 25.273962
        }
    },
    "proof": {
        "@context": [
            "https://www.w3.org/ns/activitystreams",
            "https://w3id.org/security/data-integrity/v2"
        ],
        "type": "DataIntegrityProof",
        "cryptosuite": "eddsa-jcs-2022",
        "verificationMethod": "https://server.example/users/alice#ed25519-key",
        "proofPurpose": "assertionMethod",
        "proofValue": "z42ffGu6AUKPCFcFPiabmUvnGLPJzC7e4DGWC52NUasSSH37UMa9c58tdgVszUcZfytxa4fQ5TYHaJENCxUDe9SdL",
        "created": "2023-02-24T23:36:38Z"
    }
}"#;

const ACTOR_MULTIKEY: &str = "z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2";

fn verifies(doc: &Value) -> bool {
    let key = ed25519_multikey(ACTOR_MULTIKEY).expect("multikey");
    let proofs = find(doc);
    assert_eq!(proofs.len(), 1);
    assert_eq!(proofs[0].suite, "eddsa-jcs-2022");
    assert_eq!(
        proofs[0].key_id.as_deref(),
        Some("https://server.example/users/alice#ed25519-key")
    );
    let pending = proofs[0].pending.as_ref().expect("checkable");
    verify_ed25519(&key, &pending.hash_data, &pending.signature)
}

#[test]
fn the_fep_test_vector_verifies() {
    let doc: Value = serde_json::from_str(SIGNED).expect("json");
    assert!(verifies(&doc));
}

#[test]
fn a_changed_document_or_proof_does_not() {
    let doc: Value = serde_json::from_str(SIGNED).expect("json");
    let mut changed = doc.clone();
    changed["object"]["location"]["latitude"] = 25.273963.into();
    assert!(!verifies(&changed));
    let mut changed = doc;
    changed["proof"]["created"] = "2023-02-24T23:36:39Z".into();
    assert!(!verifies(&changed));
}
