//! Every secret a Mastodon instance needs, generated in Rust once per
//! instance: nothing is read back from pod logs, so fedilab knows every
//! credential it hands out.
//!
//! Generation is a pure function of a 32-byte master seed and the instance
//! name. The CLI passes OS randomness, or the SHA-256 of `--seed` for
//! reproducible (and therefore insecure) golden files. A seeded lab's
//! secrets do not depend on how many instances it has.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use fedilab_profile::{InstanceName, InstanceSpecKind, LabSpec};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

/// The generated secrets of one instance fedilab runs. Named for Mastodon,
/// which uses every field; Misskey and GoToSocial use the database and
/// admin fields (Misskey its secret key base as `setupPassword`).
#[derive(Clone, PartialEq, Eq)]
pub struct MastodonSecrets {
    /// `SECRET_KEY_BASE`: 128 hex digits.
    pub secret_key_base: String,
    /// `OTP_SECRET`: 128 hex digits (emitted only for 4.3, which needs it).
    pub otp_secret: String,
    /// `VAPID_PRIVATE_KEY`: the P-256 scalar, URL-safe base64 with padding.
    pub vapid_private_key: String,
    /// `VAPID_PUBLIC_KEY`: the uncompressed P-256 point, URL-safe base64.
    pub vapid_public_key: String,
    /// `ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY`: 32 alphanumerics.
    pub ar_deterministic_key: String,
    /// `ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT`: 32 alphanumerics.
    pub ar_key_derivation_salt: String,
    /// `ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY`: 32 alphanumerics.
    pub ar_primary_key: String,
    /// The PostgreSQL password (`DB_PASS`).
    pub db_password: String,
    /// The Owner account's password.
    pub admin_password: String,
    /// The value of the admin's API access token (Misskey's native tokens
    /// are 16 characters: [`MastodonSecrets::generate_for`] cuts it).
    pub api_token: String,
}

impl std::fmt::Debug for MastodonSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, not even in debug logs.
        f.write_str("MastodonSecrets { .. }")
    }
}

/// The secrets of every instance of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabSecrets {
    /// Per instance.
    pub instances: BTreeMap<InstanceName, MastodonSecrets>,
}

impl LabSecrets {
    /// Generates secrets for every instance of `spec` that runs in the
    /// cluster, from `master_seed` (external instances have none).
    pub fn generate(spec: &LabSpec, master_seed: [u8; 32]) -> Self {
        let instances = spec
            .instances
            .iter()
            .filter(|i| i.kind.runs_in_cluster())
            .map(|i| {
                (
                    i.name.clone(),
                    MastodonSecrets::generate_for(&i.kind, master_seed, &i.name),
                )
            })
            .collect();
        LabSecrets { instances }
    }
}

/// The master seed for `--seed TEXT`: its SHA-256.
pub fn seed_from_text(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The length of Misskey's native API tokens (`"user".token`, `char(16)`).
pub const MISSKEY_TOKEN_LEN: usize = 16;

impl MastodonSecrets {
    /// [`MastodonSecrets::generate`], with the API token cut to what the
    /// instance's kind stores (Misskey: 16 characters).
    pub fn generate_for(
        kind: &InstanceSpecKind,
        master_seed: [u8; 32],
        instance: &InstanceName,
    ) -> Self {
        let mut secrets = MastodonSecrets::generate(master_seed, instance);
        if matches!(kind, InstanceSpecKind::Misskey(_)) {
            secrets.api_token.truncate(MISSKEY_TOKEN_LEN);
        }
        secrets
    }

    /// Generates one instance's secrets from the lab's master seed.
    pub fn generate(master_seed: [u8; 32], instance: &InstanceName) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(master_seed);
        hasher.update(b"\0fedilab instance\0");
        hasher.update(instance.as_str().as_bytes());
        let mut rng = ChaCha20Rng::from_seed(hasher.finalize().into());
        let (vapid_private_key, vapid_public_key) = vapid_keypair(&mut rng);
        MastodonSecrets {
            secret_key_base: hex(&mut rng, 64),
            otp_secret: hex(&mut rng, 64),
            vapid_private_key,
            vapid_public_key,
            ar_deterministic_key: alphanumeric(&mut rng, 32),
            ar_key_derivation_salt: alphanumeric(&mut rng, 32),
            ar_primary_key: alphanumeric(&mut rng, 32),
            db_password: alphanumeric(&mut rng, 32),
            admin_password: alphanumeric(&mut rng, 24),
            api_token: urlsafe_token(&mut rng, 32),
        }
    }
}

fn hex(rng: &mut impl RngCore, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn alphanumeric(rng: &mut impl RngCore, len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut byte = [0u8; 1];
        rng.fill_bytes(&mut byte);
        // Reject the top of the range so every character is equally likely.
        if usize::from(byte[0]) < 256 - 256 % CHARS.len() {
            out.push(char::from(CHARS[usize::from(byte[0]) % CHARS.len()]));
        }
    }
    out
}

fn urlsafe_token(rng: &mut impl RngCore, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A VAPID key pair as the webpush gem writes it: URL-safe base64 (with
/// padding) of the 32-byte private scalar and of the 65-byte uncompressed
/// public point.
fn vapid_keypair(rng: &mut impl RngCore) -> (String, String) {
    loop {
        let mut scalar = [0u8; 32];
        rng.fill_bytes(&mut scalar);
        // Zero or a value at or above the group order is not a key: draw
        // again (probability about 2^-32).
        if let Ok(secret) = p256::SecretKey::from_slice(&scalar) {
            let public = secret.public_key().to_encoded_point(false);
            return (URL_SAFE.encode(scalar), URL_SAFE.encode(public.as_bytes()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> InstanceName {
        s.parse().expect("valid name")
    }

    #[test]
    fn secrets_have_mastodons_shapes() {
        let s = MastodonSecrets::generate(seed_from_text("t"), &name("mastodon1"));
        assert_eq!(s.secret_key_base.len(), 128);
        assert!(s.secret_key_base.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(s.otp_secret.len(), 128);
        for k in [
            &s.ar_deterministic_key,
            &s.ar_key_derivation_salt,
            &s.ar_primary_key,
            &s.db_password,
        ] {
            assert_eq!(k.len(), 32);
            assert!(k.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        assert_eq!(s.admin_password.len(), 24);
        assert_eq!(s.api_token.len(), 43);
        let private = URL_SAFE.decode(&s.vapid_private_key).expect("base64");
        let public = URL_SAFE.decode(&s.vapid_public_key).expect("base64");
        assert_eq!(private.len(), 32);
        assert_eq!(public.len(), 65);
        assert_eq!(public[0], 4, "uncompressed point");
        let secret = p256::SecretKey::from_slice(&private).expect("valid scalar");
        assert_eq!(
            secret.public_key().to_encoded_point(false).as_bytes(),
            public.as_slice()
        );
    }

    #[test]
    fn seeded_generation_is_reproducible_and_per_instance() {
        let a1 = MastodonSecrets::generate(seed_from_text("x"), &name("a"));
        let a2 = MastodonSecrets::generate(seed_from_text("x"), &name("a"));
        let b = MastodonSecrets::generate(seed_from_text("x"), &name("b"));
        let other = MastodonSecrets::generate(seed_from_text("y"), &name("a"));
        assert!(a1 == a2);
        assert!(a1.secret_key_base != b.secret_key_base);
        assert!(a1.secret_key_base != other.secret_key_base);
    }

    #[test]
    fn debug_output_hides_values() {
        let s = MastodonSecrets::generate(seed_from_text("t"), &name("m"));
        assert!(!format!("{s:?}").contains(&s.admin_password));
    }
}
