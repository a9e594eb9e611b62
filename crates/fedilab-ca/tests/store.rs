//! Issue 3: the CA on disk. Modes, reuse byte for byte, renewal when names
//! change or expiry nears (time moves through `now`, not sleeps), and the
//! refusal of key files others may read.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use fedilab_ca::{CaStore, HostName, Init, LeafAction, LeafError, LoadError, Reissue};
use fedilab_profile::Domain;

const DAY: Duration = Duration::from_secs(86_400);

fn domain() -> Domain {
    "fediverse.local".parse().unwrap()
}

fn host(name: &str) -> HostName {
    HostName::new(name, &domain()).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn init_writes_a_private_directory_and_key_and_is_idempotent() {
    let data = tempfile::tempdir().unwrap();
    let store = CaStore::new(data.path(), &domain());
    assert_eq!(store.dir(), data.path().join("ca/fediverse.local"));
    assert!(matches!(
        store.load(),
        Err(LoadError::NotInitialized { .. })
    ));

    let now = SystemTime::now();
    let (ca, init) = store.load_or_init("test-host", now).unwrap();
    assert_eq!(init, Init::Created);
    assert_eq!(mode(store.dir()), 0o700);
    assert_eq!(mode(&store.key_path()), 0o600);
    assert_eq!(mode(&store.cert_path()), 0o644);
    assert_eq!(
        fs::read_to_string(store.cert_path()).unwrap(),
        ca.cert_pem()
    );

    let (again, init) = store.load_or_init("test-host", now).unwrap();
    assert_eq!(init, Init::Existing);
    assert_eq!(again.cert_pem(), ca.cert_pem());

    // Only the files we promised, no temp files left behind.
    let mut names: Vec<String> = fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".lock", "ca.key", "ca.pem"]);
}

#[test]
fn a_loose_directory_is_tightened_to_0700() {
    let data = tempfile::tempdir().unwrap();
    let store = CaStore::new(data.path(), &domain());
    fs::create_dir_all(store.dir()).unwrap();
    chmod(store.dir(), 0o755);
    store.load_or_init("test-host", SystemTime::now()).unwrap();
    assert_eq!(mode(store.dir()), 0o700);
}

#[test]
fn a_ca_key_readable_by_others_is_refused_with_the_fix() {
    let data = tempfile::tempdir().unwrap();
    let store = CaStore::new(data.path(), &domain());
    store.load_or_init("test-host", SystemTime::now()).unwrap();
    for loose in [0o644, 0o640, 0o604] {
        chmod(&store.key_path(), loose);
        let err = store.load().unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, LoadError::InsecureKey { .. }), "{message}");
        let fix = format!("chmod 600 {}", store.key_path().display());
        assert!(message.contains(&fix), "{message}");
        assert!(!message.contains("PRIVATE KEY"), "{message}");
        // init refuses too: it must not paper over an exposed key.
        assert!(store.load_or_init("test-host", SystemTime::now()).is_err());
    }
    chmod(&store.key_path(), 0o400);
    store.load().unwrap();
}

#[test]
fn an_interrupted_init_is_reported_not_overwritten() {
    let data = tempfile::tempdir().unwrap();
    let store = CaStore::new(data.path(), &domain());
    store.load_or_init("test-host", SystemTime::now()).unwrap();
    fs::remove_file(store.cert_path()).unwrap();
    let err = store.load().unwrap_err();
    assert!(matches!(err, LoadError::Incomplete { .. }), "{err}");
    assert!(store.key_path().exists());
}

#[test]
fn a_leaf_is_reused_byte_for_byte_until_renewal_is_due() {
    let data = tempfile::tempdir().unwrap();
    let store = CaStore::new(data.path(), &domain());
    let now = SystemTime::now();
    let (ca, _) = store.load_or_init("test-host", now).unwrap();
    let names = [host("mastodon1.fediverse.local")];

    let first = store.ensure_leaf(&ca, &names, now).unwrap();
    assert_eq!(first.action, LeafAction::Issued(Reissue::Missing));
    assert_eq!(first.paths, store.leaf_paths(&names[0]));
    assert_eq!(
        first.paths.cert,
        store.dir().join("mastodon1.fediverse.local.pem")
    );
    assert_eq!(mode(&first.paths.key), 0o600);
    assert_eq!(mode(&first.paths.cert), 0o644);
    let on_disk = fs::read(&first.paths.cert).unwrap();

    // Again, and 59 days later (31 days left): the same bytes.
    for later in [now, now + 59 * DAY] {
        let again = store.ensure_leaf(&ca, &names, later).unwrap();
        assert_eq!(again.action, LeafAction::Reused);
        assert_eq!(again.leaf, first.leaf);
        assert_eq!(fs::read(&again.paths.cert).unwrap(), on_disk);
    }

    // 61 days later (29 days left): renewed, and the renewal is reused.
    let renewed = store.ensure_leaf(&ca, &names, now + 61 * DAY).unwrap();
    assert!(
        matches!(
            renewed.action,
            LeafAction::Issued(Reissue::ExpiresSoon { .. })
        ),
        "{:?}",
        renewed.action
    );
    assert_ne!(renewed.leaf.cert_pem, first.leaf.cert_pem);
    assert_ne!(renewed.leaf.key_pem, first.leaf.key_pem);
    let kept = store.ensure_leaf(&ca, &names, now + 61 * DAY).unwrap();
    assert_eq!(kept.action, LeafAction::Reused);
    assert_eq!(kept.leaf, renewed.leaf);
}

#[test]
fn a_changed_host_set_reissues() {
    let data = tempfile::tempdir().unwrap();
    let store = CaStore::new(data.path(), &domain());
    let now = SystemTime::now();
    let (ca, _) = store.load_or_init("test-host", now).unwrap();
    let one = [host("mastodon1.fediverse.local")];
    let two = [one[0].clone(), host("inspect.mastodon1.fediverse.local")];

    let first = store.ensure_leaf(&ca, &one, now).unwrap();
    let wider = store.ensure_leaf(&ca, &two, now).unwrap();
    assert_eq!(
        wider.action,
        LeafAction::Issued(Reissue::NamesChanged {
            had: vec!["mastodon1.fediverse.local".into()]
        })
    );
    assert_eq!(wider.paths, first.paths);
    // Same set in another order: reused.
    let reordered = [two[0].clone(), two[1].clone()];
    assert_eq!(
        store.ensure_leaf(&ca, &reordered, now).unwrap().action,
        LeafAction::Reused
    );
    let forced = store.reissue_leaf(&ca, &reordered, now).unwrap();
    assert_eq!(forced.action, LeafAction::Forced);
    assert_ne!(forced.leaf, wider.leaf);
}

#[test]
fn a_new_ca_reissues_every_leaf() {
    let data = tempfile::tempdir().unwrap();
    let store = CaStore::new(data.path(), &domain());
    let now = SystemTime::now();
    let (ca, _) = store.load_or_init("test-host", now).unwrap();
    let names = [host("mastodon1.fediverse.local")];
    store.ensure_leaf(&ca, &names, now).unwrap();

    fs::remove_file(store.cert_path()).unwrap();
    fs::remove_file(store.key_path()).unwrap();
    let (new_ca, init) = store.load_or_init("test-host", now).unwrap();
    assert_eq!(init, Init::Created);
    let leaf = store.ensure_leaf(&new_ca, &names, now).unwrap();
    assert_eq!(leaf.action, LeafAction::Issued(Reissue::OtherCa));
}

#[test]
fn a_leaf_key_readable_by_others_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let store = CaStore::new(data.path(), &domain());
    let now = SystemTime::now();
    let (ca, _) = store.load_or_init("test-host", now).unwrap();
    let names = [host("mastodon1.fediverse.local")];
    let leaf = store.ensure_leaf(&ca, &names, now).unwrap();
    chmod(&leaf.paths.key, 0o644);
    let err = store.ensure_leaf(&ca, &names, now).unwrap_err();
    assert!(matches!(err, LeafError::InsecureKey { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("chmod 600 {}", leaf.paths.key.display())),
        "{err}"
    );
}

#[test]
fn leaves_are_listed_without_the_root() {
    let data = tempfile::tempdir().unwrap();
    let store = CaStore::new(data.path(), &domain());
    assert!(store.leaves().unwrap().is_empty());
    let now = SystemTime::now();
    let (ca, _) = store.load_or_init("test-host", now).unwrap();
    for name in ["mastodon2.fediverse.local", "mastodon1.fediverse.local"] {
        store.ensure_leaf(&ca, &[host(name)], now).unwrap();
    }
    let leaves = store.leaves().unwrap();
    assert_eq!(
        leaves,
        [
            store.leaf_paths(&host("mastodon1.fediverse.local")),
            store.leaf_paths(&host("mastodon2.fediverse.local")),
        ]
    );
}

#[test]
fn a_removed_leaf_is_gone_and_the_others_stay() {
    let data = tempfile::tempdir().unwrap();
    let store = CaStore::new(data.path(), &domain());
    let now = SystemTime::now();
    let (ca, _) = store.load_or_init("test", now).unwrap();
    store
        .ensure_leaf(&ca, &[host("mine.fediverse.local")], now)
        .unwrap();
    store
        .ensure_leaf(&ca, &[host("mastodon1.fediverse.local")], now)
        .unwrap();
    assert!(store.remove_leaf(&host("mine.fediverse.local")).unwrap());
    let left: Vec<_> = store
        .leaves()
        .unwrap()
        .into_iter()
        .map(|l| l.cert)
        .collect();
    assert_eq!(
        left,
        vec![store.dir().join("mastodon1.fediverse.local.pem")]
    );
    assert!(!store.leaf_paths(&host("mine.fediverse.local")).key.exists());
    assert!(
        !store.remove_leaf(&host("mine.fediverse.local")).unwrap(),
        "nothing left to remove"
    );
}

#[test]
fn remove_takes_the_whole_ca_directory_and_is_fine_when_absent() {
    let data = tempfile::tempdir().unwrap();
    let store = CaStore::new(data.path(), &"fediverse.local".parse().unwrap());
    let now = SystemTime::now();
    let (ca, _) = store.load_or_init("test", now).unwrap();
    store
        .ensure_leaf(&ca, &[host("mastodon1.fediverse.local")], now)
        .unwrap();
    assert!(store.dir().join("ca.pem").exists());
    assert!(store.remove().unwrap());
    assert!(!store.dir().exists());
    assert!(
        data.path().join("ca").exists(),
        "only this domain's directory goes"
    );
    assert!(!store.remove().unwrap(), "nothing left to remove");
}
