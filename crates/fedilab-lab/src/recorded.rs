//! The lab a command acts on, as `up` recorded it: commands that take the
//! lab's profile and flags again (`verify`) rebuild the spec from what the
//! lab runs when none are given, and refuse a spec that describes another
//! lab. Pure: reads a loaded [`LabState`], no files.

use fedilab_profile::{InstanceCounts, InstanceKind, LabSpec};
use fedilab_state::LabState;

/// The profile and flags given describe other instances than the lab runs.
#[derive(Debug, thiserror::Error)]
#[error(
    "lab {lab} runs {recorded}, but the profile and flags given describe {given}: pass \
     the profile and flags `fedilab up` was given (or none, for a lab made with --instances)"
)]
pub struct OtherLab {
    lab: String,
    recorded: String,
    given: String,
}

/// The `--instances` counts that rebuild the lab's in-cluster instances
/// from the built-in profile: per kind, in the order counts apply.
pub fn recorded_counts(state: &LabState) -> InstanceCounts {
    let counts = [
        InstanceKind::Mastodon,
        InstanceKind::Misskey,
        InstanceKind::Gotosocial,
    ]
    .into_iter()
    .map(|kind| {
        let n = state
            .instances
            .iter()
            .filter(|i| i.kind.in_cluster_kind() == Some(kind))
            .count();
        (kind, n)
    })
    .filter(|(_, n)| *n > 0)
    .collect();
    InstanceCounts::PerKind(counts)
}

/// `name (kind)` of every in-cluster instance, sorted.
fn described(pairs: impl Iterator<Item = (String, &'static str)>) -> Vec<String> {
    let mut out: Vec<String> = pairs.map(|(n, k)| format!("{n} ({k})")).collect();
    out.sort();
    out
}

/// Whether `spec` describes the in-cluster instances `state` records (names
/// and kinds; servers outside the cluster are left out).
///
/// # Errors
/// [`OtherLab`], naming both lists.
pub fn check_same_lab(spec: &LabSpec, state: &LabState) -> Result<(), OtherLab> {
    let recorded = described(
        state
            .instances
            .iter()
            .filter_map(|i| Some((i.name.to_string(), i.kind.in_cluster_kind()?.as_str()))),
    );
    let given = described(
        spec.instances
            .iter()
            .filter(|i| i.kind.runs_in_cluster())
            .map(|i| (i.name.to_string(), i.kind.kind().as_str())),
    );
    if recorded == given {
        return Ok(());
    }
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "no instance".to_owned()
        } else {
            v.join(", ")
        }
    };
    Err(OtherLab {
        lab: state.lab.to_string(),
        recorded: list(recorded),
        given: list(given),
    })
}

#[cfg(test)]
mod tests {
    use fedilab_profile::{DEFAULT_PROFILE_YAML, Overrides};

    use super::*;

    fn spec(counts: &str) -> LabSpec {
        let overrides = Overrides {
            instances: Some(counts.parse().expect("counts")),
            ..Overrides::default()
        };
        LabSpec::from_yaml(DEFAULT_PROFILE_YAML, "test", &overrides).expect("valid")
    }

    #[test]
    fn a_mixed_lab_is_rebuilt_from_what_it_runs() {
        let made = spec("mastodon=2,misskey=1,gotosocial=1");
        let state = LabState::from_spec(&made, None);
        let rebuilt = spec(&match recorded_counts(&state) {
            InstanceCounts::PerKind(v) => v
                .iter()
                .map(|(k, n)| format!("{}={n}", k.as_str()))
                .collect::<Vec<_>>()
                .join(","),
            InstanceCounts::Total(n) => n.to_string(),
        });
        assert_eq!(rebuilt.instances, made.instances);
        assert!(check_same_lab(&rebuilt, &state).is_ok());
    }

    #[test]
    fn another_lab_is_refused_naming_both() {
        let state = LabState::from_spec(&spec("mastodon=1,gotosocial=1"), None);
        let e = check_same_lab(&spec("2"), &state).expect_err("other lab");
        assert_eq!(
            e.to_string(),
            "lab main runs gts1 (gotosocial), mastodon1 (mastodon), but the profile and flags \
             given describe mastodon1 (mastodon), mastodon2 (mastodon): pass the profile and \
             flags `fedilab up` was given (or none, for a lab made with --instances)"
        );
    }
}
