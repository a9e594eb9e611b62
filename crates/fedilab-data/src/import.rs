//! What `fedilab import` takes from a real Mastodon: the secrets in its
//! `.env.production` (everything else there is listed and ignored), and
//! which format its `pg_dump` has. Also the secrets as env names and
//! values, the form the backup archive's `secrets.json` keeps them in.
//!
//! Pure: the caller reads the files and hands over their bytes.

use std::collections::BTreeMap;

use fedilab_manifest::MastodonSecrets;

/// `SECRET_KEY_BASE`: signs cookies and derives other keys.
pub const SECRET_KEY_BASE: &str = "SECRET_KEY_BASE";
/// `OTP_SECRET` (Mastodon 4.3 and older: two-factor secrets).
pub const OTP_SECRET: &str = "OTP_SECRET";
/// Web Push key pair, private half.
pub const VAPID_PRIVATE_KEY: &str = "VAPID_PRIVATE_KEY";
/// Web Push key pair, public half.
pub const VAPID_PUBLIC_KEY: &str = "VAPID_PUBLIC_KEY";
/// Active Record encryption (4.3+): deterministic key.
pub const AR_DETERMINISTIC_KEY: &str = "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY";
/// Active Record encryption (4.3+): key derivation salt.
pub const AR_KEY_DERIVATION_SALT: &str = "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT";
/// Active Record encryption (4.3+): primary key.
pub const AR_PRIMARY_KEY: &str = "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY";
/// The lab admin's password (archives only; fedilab's own key).
pub const ADMIN_PASSWORD: &str = "FEDILAB_ADMIN_PASSWORD";
/// The lab admin's API token (archives only; fedilab's own key).
pub const API_TOKEN: &str = "FEDILAB_API_TOKEN";

/// The keys `import` takes from an env file, in the order it reports them.
pub const IMPORTED_KEYS: [&str; 7] = [
    SECRET_KEY_BASE,
    OTP_SECRET,
    VAPID_PRIVATE_KEY,
    VAPID_PUBLIC_KEY,
    AR_DETERMINISTIC_KEY,
    AR_KEY_DERIVATION_SALT,
    AR_PRIMARY_KEY,
];

/// The instance's secrets as env names and values, as an archive keeps
/// them: the server's secrets and the lab admin's password and token.
/// The database password is the lab's own and stays out.
pub fn secret_entries(secrets: &MastodonSecrets) -> BTreeMap<String, String> {
    [
        (SECRET_KEY_BASE, &secrets.secret_key_base),
        (OTP_SECRET, &secrets.otp_secret),
        (VAPID_PRIVATE_KEY, &secrets.vapid_private_key),
        (VAPID_PUBLIC_KEY, &secrets.vapid_public_key),
        (AR_DETERMINISTIC_KEY, &secrets.ar_deterministic_key),
        (AR_KEY_DERIVATION_SALT, &secrets.ar_key_derivation_salt),
        (AR_PRIMARY_KEY, &secrets.ar_primary_key),
        (ADMIN_PASSWORD, &secrets.admin_password),
        (API_TOKEN, &secrets.api_token),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.clone()))
    .collect()
}

/// `base` with every secret `entries` has replaced (unknown names are
/// ignored; the database password is always `base`'s); and the names that
/// were replaced, in [`IMPORTED_KEYS`] order then the admin's.
pub fn apply_entries(
    base: &MastodonSecrets,
    entries: &BTreeMap<String, String>,
) -> (MastodonSecrets, Vec<&'static str>) {
    let mut out = base.clone();
    let mut taken = Vec::new();
    let fields: [(&'static str, &mut String); 9] = [
        (SECRET_KEY_BASE, &mut out.secret_key_base),
        (OTP_SECRET, &mut out.otp_secret),
        (VAPID_PRIVATE_KEY, &mut out.vapid_private_key),
        (VAPID_PUBLIC_KEY, &mut out.vapid_public_key),
        (AR_DETERMINISTIC_KEY, &mut out.ar_deterministic_key),
        (AR_KEY_DERIVATION_SALT, &mut out.ar_key_derivation_salt),
        (AR_PRIMARY_KEY, &mut out.ar_primary_key),
        (ADMIN_PASSWORD, &mut out.admin_password),
        (API_TOKEN, &mut out.api_token),
    ];
    for (name, field) in fields {
        if let Some(value) = entries.get(name).filter(|v| !v.is_empty()) {
            value.clone_into(field);
            taken.push(name);
        }
    }
    (out, taken)
}

/// What an env file gave.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvImport {
    /// The secrets found, by env name (only [`IMPORTED_KEYS`]).
    pub taken: BTreeMap<String, String>,
    /// The other keys, sorted, without their values.
    pub ignored: Vec<String>,
    /// Secrets the file lacks: the lab instance keeps its own for these.
    pub missing: Vec<&'static str>,
    /// The old instance's `LOCAL_DOMAIN`, if the file sets it.
    pub local_domain: Option<String>,
    /// The old instance's `WEB_DOMAIN`, if the file sets it.
    pub web_domain: Option<String>,
}

impl std::fmt::Debug for EnvImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: never print a secret.
        f.debug_struct("EnvImport")
            .field("taken", &self.taken.keys().collect::<Vec<_>>())
            .field("ignored", &self.ignored)
            .field("missing", &self.missing)
            .field("local_domain", &self.local_domain)
            .field("web_domain", &self.web_domain)
            .finish()
    }
}

/// Why an env file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A line that is not `KEY=VALUE`.
    #[error("line {line}: {problem}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the value).
        problem: String,
    },
    /// Without `SECRET_KEY_BASE` the sessions and signed ids cannot be read.
    #[error(
        "it has no SECRET_KEY_BASE: is it the instance's .env.production? (the lab needs the \
         old instance's key to read its data)"
    )]
    NoSecretKeyBase,
}

/// Parses a dotenv file (`KEY=VALUE` lines, `#` comments, optional
/// `export `, values bare, in single quotes taken literally, or in double
/// quotes with `\n`, `\"` and `\\` escapes; a later line wins) and takes
/// the secrets a lab instance needs from it.
///
/// # Errors
/// [`EnvError::Syntax`] for a line that does not parse (the message holds
/// no value), [`EnvError::NoSecretKeyBase`] when the file lacks it.
pub fn parse_env(text: &str) -> Result<EnvImport, EnvError> {
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, raw)) = lines.next() {
        let line_no = index + 1;
        let syntax = |problem: &str| EnvError::Syntax {
            line: line_no,
            problem: problem.to_owned(),
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, rest)) = line.split_once('=') else {
            return Err(syntax("no `=` (expected KEY=VALUE)"));
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            || key.as_bytes()[0].is_ascii_digit()
        {
            return Err(syntax("the key is not a variable name"));
        }
        let rest = rest.trim_start();
        let value = if let Some(body) = rest.strip_prefix('\'') {
            let Some(end) = body.find('\'') else {
                return Err(syntax(&format!("{key}: the single quote is not closed")));
            };
            body[..end].to_owned()
        } else if let Some(body) = rest.strip_prefix('"') {
            // A double-quoted value may span lines.
            let mut body = body.to_owned();
            loop {
                if let Some(value) = double_quoted(&body) {
                    break value;
                }
                match lines.next() {
                    Some((_, next)) => {
                        body.push('\n');
                        body.push_str(next);
                    }
                    None => {
                        return Err(syntax(&format!("{key}: the double quote is not closed")));
                    }
                }
            }
        } else {
            // A bare value ends at ` #` (a comment).
            let end = rest.find(" #").unwrap_or(rest.len());
            rest[..end].trim_end().to_owned()
        };
        values.insert(key.to_owned(), value);
    }
    if values.get(SECRET_KEY_BASE).is_none_or(String::is_empty) {
        return Err(EnvError::NoSecretKeyBase);
    }
    let mut taken = BTreeMap::new();
    let mut missing = Vec::new();
    for key in IMPORTED_KEYS {
        match values.remove(key).filter(|v| !v.is_empty()) {
            Some(v) => {
                taken.insert(key.to_owned(), v);
            }
            None => missing.push(key),
        }
    }
    let local_domain = values.get("LOCAL_DOMAIN").cloned();
    let web_domain = values.get("WEB_DOMAIN").cloned();
    Ok(EnvImport {
        taken,
        ignored: values.into_keys().collect(),
        missing,
        local_domain,
        web_domain,
    })
}

/// The value of a double-quoted string whose opening quote is gone, if
/// `body` holds its closing quote.
fn double_quoted(body: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            other => out.push(other),
        }
    }
    None
}

/// The format of a `pg_dump` output, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    /// `pg_dump -Fc`: restored with `pg_restore`.
    Custom,
    /// Plain SQL: run with `psql`.
    Plain,
}

/// Why a dump cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DumpError {
    /// A gzip file.
    #[error("it is gzip-compressed: `gunzip` it (or pass `pg_dump -Fc` output) first")]
    Gzip,
    /// `pg_dump -Ft` or a tar of a directory dump.
    #[error(
        "it is a tar archive (`pg_dump -Ft` or a directory dump): make a custom-format dump \
         (`pg_restore -Fc -f out.dump` reads it) or a plain one"
    )]
    Tar,
    /// Neither.
    #[error(
        "it is neither a PostgreSQL custom-format dump (`pg_dump -Fc`, starts with PGDMP) nor a \
         plain SQL dump"
    )]
    Unknown,
}

/// The format of a dump whose first bytes (at least 512 when the file
/// has them) are `head`.
///
/// # Errors
/// [`DumpError`] for compressed, tar and unknown files.
pub fn dump_format(head: &[u8]) -> Result<DumpFormat, DumpError> {
    if head.starts_with(b"PGDMP") {
        return Ok(DumpFormat::Custom);
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Err(DumpError::Gzip);
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Err(DumpError::Tar);
    }
    // Plain dumps are SQL text: UTF-8 (or an encoding that is ASCII at the
    // start), beginning with a comment or a statement.
    let text_like = head
        .iter()
        .take(256)
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace() || *b >= 0x80);
    let start = String::from_utf8_lossy(&head[..head.len().min(64)]);
    let start = start.trim_start();
    let sql_start = ["--", "SET", "CREATE", "BEGIN", "\\", "SELECT", "/*"]
        .iter()
        .any(|p| start.starts_with(p));
    if text_like && sql_start {
        Ok(DumpFormat::Plain)
    } else {
        Err(DumpError::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = r#"# Generated with mastodon:setup on 2024-05-01
LOCAL_DOMAIN=example.social
WEB_DOMAIN=www.example.social
SINGLE_USER_MODE=false
SECRET_KEY_BASE=0123abcd
OTP_SECRET="otp with \"quotes\""
export VAPID_PRIVATE_KEY='priv=#literal'
VAPID_PUBLIC_KEY=pub  # trailing comment

DB_HOST=db
DB_PASS=hunter2
ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY=det
ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT=salt
ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY=primary
S3_ENABLED=true
SMTP_PASSWORD="multi
line"
"#;

    #[test]
    fn secrets_are_taken_and_the_rest_listed_by_name() {
        let got = parse_env(FIXTURE).expect("parses");
        assert_eq!(got.taken[SECRET_KEY_BASE], "0123abcd");
        assert_eq!(got.taken[OTP_SECRET], "otp with \"quotes\"");
        assert_eq!(got.taken[VAPID_PRIVATE_KEY], "priv=#literal");
        assert_eq!(got.taken[VAPID_PUBLIC_KEY], "pub");
        assert_eq!(got.taken[AR_PRIMARY_KEY], "primary");
        assert_eq!(got.taken.len(), 7);
        assert!(got.missing.is_empty());
        assert_eq!(
            got.ignored,
            [
                "DB_HOST",
                "DB_PASS",
                "LOCAL_DOMAIN",
                "S3_ENABLED",
                "SINGLE_USER_MODE",
                "SMTP_PASSWORD",
                "WEB_DOMAIN"
            ]
        );
        assert_eq!(got.local_domain.as_deref(), Some("example.social"));
        assert_eq!(got.web_domain.as_deref(), Some("www.example.social"));
        // Debug shows names, never values.
        let debug = format!("{got:?}");
        assert!(
            !debug.contains("0123abcd") && !debug.contains("hunter2"),
            "{debug}"
        );
    }

    #[test]
    fn a_file_without_the_newer_keys_keeps_the_labs_own() {
        let got = parse_env("SECRET_KEY_BASE=k\nOTP_SECRET=o\n").expect("parses");
        assert_eq!(
            got.missing,
            [
                VAPID_PRIVATE_KEY,
                VAPID_PUBLIC_KEY,
                AR_DETERMINISTIC_KEY,
                AR_KEY_DERIVATION_SALT,
                AR_PRIMARY_KEY
            ]
        );
        let base = MastodonSecrets::generate([7; 32], &"m".parse().expect("name"));
        let (merged, replaced) = apply_entries(&base, &got.taken);
        assert_eq!(replaced, [SECRET_KEY_BASE, OTP_SECRET]);
        assert_eq!(merged.secret_key_base, "k");
        assert_eq!(merged.ar_primary_key, base.ar_primary_key);
        assert_eq!(merged.db_password, base.db_password);
    }

    #[test]
    fn bad_lines_are_named_without_their_values() {
        let err = parse_env("SECRET_KEY_BASE=k\nthis is not env\n").expect_err("syntax");
        assert_eq!(err.to_string(), "line 2: no `=` (expected KEY=VALUE)");
        let err = parse_env("SECRET_KEY_BASE='secretvalue\n").expect_err("quote");
        assert_eq!(
            err.to_string(),
            "line 1: SECRET_KEY_BASE: the single quote is not closed"
        );
        assert!(!err.to_string().contains("secretvalue"));
        assert_eq!(
            parse_env("LOCAL_DOMAIN=x\n").expect_err("no key"),
            EnvError::NoSecretKeyBase
        );
    }

    #[test]
    fn archive_entries_round_trip_all_but_the_database_password() {
        let a = MastodonSecrets::generate([1; 32], &"m".parse().expect("name"));
        let b = MastodonSecrets::generate([2; 32], &"m".parse().expect("name"));
        let (restored, replaced) = apply_entries(&b, &secret_entries(&a));
        assert_eq!(replaced.len(), 9);
        assert_eq!(restored.secret_key_base, a.secret_key_base);
        assert_eq!(restored.api_token, a.api_token);
        assert_eq!(restored.db_password, b.db_password);
    }

    #[test]
    fn dump_formats_are_told_apart() {
        assert_eq!(dump_format(b"PGDMP\x01\x0f\x00"), Ok(DumpFormat::Custom));
        assert_eq!(
            dump_format(b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;"),
            Ok(DumpFormat::Plain)
        );
        assert_eq!(dump_format(&[0x1f, 0x8b, 8, 0]), Err(DumpError::Gzip));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        tar[0] = b't';
        assert_eq!(dump_format(&tar), Err(DumpError::Tar));
        assert_eq!(dump_format(b"\x00\x01binary"), Err(DumpError::Unknown));
    }
}
