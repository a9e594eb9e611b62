//! `lab-profiles/schema.json` is generated from the profile types; this test
//! fails when they drift. Regenerate with `FEDILAB_BLESS=1 cargo test -p
//! fedilab-profile --test schema`.

use fedilab_profile::LabProfile;

const SCHEMA_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../lab-profiles/schema.json"
);

#[test]
fn checked_in_schema_matches_the_profile_types() {
    let mut generated =
        serde_json::to_string_pretty(&LabProfile::json_schema()).expect("schema serializes");
    generated.push('\n');
    if std::env::var_os("FEDILAB_BLESS").is_some() {
        std::fs::write(SCHEMA_PATH, &generated).expect("write schema");
    }
    let checked_in = std::fs::read_to_string(SCHEMA_PATH).unwrap_or_default();
    assert!(
        checked_in == generated,
        "lab-profiles/schema.json is out of date; run FEDILAB_BLESS=1 cargo test -p fedilab-profile --test schema"
    );
}

#[test]
fn schema_describes_every_top_level_field() {
    let schema = serde_json::to_value(LabProfile::json_schema()).expect("schema serializes");
    let props = schema["properties"].as_object().expect("properties");
    for field in [
        "name",
        "domain",
        "network",
        "mastodon",
        "instances",
        "inspector",
    ] {
        assert!(
            props[field]["description"].is_string() || props[field].get("anyOf").is_some(),
            "{field}"
        );
    }
    assert_eq!(
        schema["additionalProperties"],
        serde_json::json!(false),
        "unknown fields are errors"
    );
}
