//! The generated secrets as saved in `secrets.json`: one
//! [`MastodonSecrets`] per instance, field names being the file format.
//!
//! Pure conversions; [`crate::LabDir::secrets`] reads and writes the file.

use std::collections::BTreeMap;

use fedilab_manifest::MastodonSecrets;
use serde::{Deserialize, Serialize};

/// Serialized [`MastodonSecrets`]; field names are the file format.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredSecrets {
    secret_key_base: String,
    otp_secret: String,
    vapid_private_key: String,
    vapid_public_key: String,
    ar_deterministic_key: String,
    ar_key_derivation_salt: String,
    ar_primary_key: String,
    db_password: String,
    pub(crate) admin_password: String,
    pub(crate) api_token: String,
}

impl From<&MastodonSecrets> for StoredSecrets {
    fn from(s: &MastodonSecrets) -> Self {
        StoredSecrets {
            secret_key_base: s.secret_key_base.clone(),
            otp_secret: s.otp_secret.clone(),
            vapid_private_key: s.vapid_private_key.clone(),
            vapid_public_key: s.vapid_public_key.clone(),
            ar_deterministic_key: s.ar_deterministic_key.clone(),
            ar_key_derivation_salt: s.ar_key_derivation_salt.clone(),
            ar_primary_key: s.ar_primary_key.clone(),
            db_password: s.db_password.clone(),
            admin_password: s.admin_password.clone(),
            api_token: s.api_token.clone(),
        }
    }
}

impl From<StoredSecrets> for MastodonSecrets {
    fn from(s: StoredSecrets) -> Self {
        MastodonSecrets {
            secret_key_base: s.secret_key_base,
            otp_secret: s.otp_secret,
            vapid_private_key: s.vapid_private_key,
            vapid_public_key: s.vapid_public_key,
            ar_deterministic_key: s.ar_deterministic_key,
            ar_key_derivation_salt: s.ar_key_derivation_salt,
            ar_primary_key: s.ar_primary_key,
            db_password: s.db_password,
            admin_password: s.admin_password,
            api_token: s.api_token,
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
pub(crate) struct SecretsFile {
    pub(crate) instances: BTreeMap<String, StoredSecrets>,
}
