//! Proofs inside activity bodies: FEP-8b32 Object Integrity Proofs
//! (`proof`, a `DataIntegrityProof` with cryptosuite `eddsa-jcs-2022`),
//! prepared here for an Ed25519 check, and the Linked Data signatures
//! Mastodon puts on activities it relays (`signature`, type
//! `RsaSignature2017`), reported as present but not verified: checking them
//! needs the JSON-LD expansion and RDF canonicalization (URDNA2015) of the
//! document, which the inspector does not do.
//!
//! Pure: [`find`] reads a parsed body; the key is looked up elsewhere.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::jcs::canonicalize;
use super::multibase::multibase_decode;

/// The FEP-8b32 cryptosuite the inspector verifies.
pub const EDDSA_JCS_2022: &str = "eddsa-jcs-2022";

/// A proof found in a body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyProof {
    /// `eddsa-jcs-2022` (a FEP-8b32 proof's cryptosuite), another
    /// cryptosuite, or an LD signature's type (`RsaSignature2017`).
    pub suite: String,
    /// The key: `verificationMethod`, or an LD signature's `creator`.
    pub key_id: Option<String>,
    /// `created`, as written.
    pub created: Option<String>,
    /// Why the proof cannot be checked without the key (malformed,
    /// unsupported suite, LD signature); `None` when it can.
    pub unchecked: Option<String>,
    /// What remains for [`super::verify_ed25519`].
    #[serde(skip)]
    pub pending: Option<ProofPending>,
}

/// What the key must sign for an `eddsa-jcs-2022` proof to verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofPending {
    /// SHA-256 of the canonical proof options, then of the canonical
    /// document without its proof.
    pub hash_data: Vec<u8>,
    /// The decoded `proofValue`.
    pub signature: Vec<u8>,
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

/// The proofs and LD signatures of a body document.
pub fn find(doc: &Value) -> Vec<BodyProof> {
    let mut out = Vec::new();
    let proofs: Vec<&Value> = match doc.get("proof") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    };
    for p in proofs {
        out.push(data_integrity(doc, p));
    }
    if let Some(sig) = doc.get("signature").filter(|s| s.is_object()) {
        let suite = str_of(sig, "type").unwrap_or_else(|| "(no type)".to_owned());
        out.push(BodyProof {
            unchecked: Some(format!(
                "a Linked Data signature ({suite}) is present but not verified: that needs RDF canonicalization (URDNA2015) of the JSON-LD document, which the inspector does not do"
            )),
            suite,
            key_id: str_of(sig, "creator"),
            created: str_of(sig, "created"),
            pending: None,
        });
    }
    out
}

fn data_integrity(doc: &Value, proof: &Value) -> BodyProof {
    let suite = str_of(proof, "cryptosuite")
        .or_else(|| str_of(proof, "type"))
        .unwrap_or_else(|| "(no cryptosuite)".to_owned());
    let mut found = BodyProof {
        key_id: str_of(proof, "verificationMethod"),
        created: str_of(proof, "created"),
        unchecked: None,
        pending: None,
        suite,
    };
    if str_of(proof, "type").as_deref() != Some("DataIntegrityProof")
        || found.suite != EDDSA_JCS_2022
    {
        found.unchecked = Some(format!(
            "proof suite {:?} is not supported (DataIntegrityProof with {EDDSA_JCS_2022} is)",
            found.suite
        ));
        return found;
    }
    match prepare(doc, proof) {
        Ok(p) => found.pending = Some(p),
        Err(why) => found.unchecked = Some(why),
    }
    found
}

/// The `eddsa-jcs-2022` verification input (W3C Data Integrity EdDSA
/// Cryptosuites, "Verify Proof (eddsa-jcs-2022)").
fn prepare(doc: &Value, proof: &Value) -> Result<ProofPending, String> {
    let value = str_of(proof, "proofValue").ok_or("the proof has no proofValue")?;
    let signature = multibase_decode(&value).ok_or("proofValue is not multibase base58btc (z…)")?;
    let mut options = proof.clone();
    if let Value::Object(m) = &mut options {
        m.remove("proofValue");
    }
    let mut unsecured = doc.clone();
    if let Value::Object(m) = &mut unsecured {
        m.remove("proof");
        if let Some(ctx) = proof.get("@context") {
            let as_list = |v: &Value| match v {
                Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            let doc_ctx = m.get("@context").map(as_list).unwrap_or_default();
            let proof_ctx = as_list(ctx);
            if !doc_ctx.starts_with(&proof_ctx) {
                return Err("the proof's @context is not a prefix of the document's".into());
            }
            m.insert("@context".to_owned(), ctx.clone());
        }
    }
    let mut hash_data = Sha256::digest(canonicalize(&options).as_bytes()).to_vec();
    hash_data.extend_from_slice(&Sha256::digest(canonicalize(&unsecured).as_bytes()));
    Ok(ProofPending {
        hash_data,
        signature,
    })
}
