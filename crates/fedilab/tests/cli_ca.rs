//! Issue 3: `fedilab ca` end to end, the built binary with FEDILAB_DATA_DIR
//! in a temp dir. Needs the `openssl` command (Debian package `openssl`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestDir, stderr, stdout};

fn ca_dir(t: &TestDir, domain: &str) -> PathBuf {
    t.dir.path().join("data/ca").join(domain)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn issue3_ca_init_then_show_describes_a_constrained_ca() {
    let t = TestDir::new();
    let out = t.run(&["ca", "init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("created the lab CA for fediverse.local"));

    let out = t.run(&["ca", "show"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.contains("critical; permitted: DNS:fediverse.local"),
        "{shown}"
    );
    assert!(shown.contains("excluded: IP:0.0.0.0/0, IP:::/0"), "{shown}");
    assert!(
        shown.contains("CN=fedilab lab CA for fediverse.local"),
        "{shown}"
    );
    assert!(shown.contains("path length  0"), "{shown}");
    assert!(shown.contains("(3649 days left)") || shown.contains("(3650 days left)"));
    assert!(!shown.contains("PRIVATE KEY"));

    // The fingerprint is the one openssl computes.
    let ca_pem = ca_dir(&t, "fediverse.local").join("ca.pem");
    let openssl = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&ca_pem)
        .output()
        .expect("the `openssl` command is needed (Debian package openssl)");
    let fingerprint = stdout(&openssl);
    let fingerprint = fingerprint.trim().rsplit('=').next().unwrap();
    assert!(
        shown.contains(&format!("sha256       {fingerprint}")),
        "{shown}"
    );

    // A second init changes nothing.
    let before = std::fs::read(&ca_pem).unwrap();
    let out = t.run(&["ca", "init"]);
    assert!(stdout(&out).contains("already exists"), "{}", stdout(&out));
    assert_eq!(std::fs::read(&ca_pem).unwrap(), before);
}

#[test]
fn issue3_ca_show_without_a_ca_says_how_to_make_one() {
    let t = TestDir::new();
    let out = t.run(&["ca", "show", "--domain", "fediverse.test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("fedilab ca init --domain fediverse.test"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn issue3_ca_trust_dry_run_prints_the_steps_and_changes_nothing() {
    let t = TestDir::new();
    let domain = "cli-dry-run.fediverse.test";
    assert!(t.run(&["ca", "init", "--domain", domain]).status.success());
    for (verb, system_step) in [("trust", "install -m 0644"), ("untrust", "rm -f")] {
        let out = t.run(&["ca", verb, "--dry-run", "--domain", domain]);
        assert!(out.status.success(), "{}", stderr(&out));
        let steps = stdout(&out);
        assert!(steps.contains("dry run: nothing changed"), "{steps}");
        assert!(steps.contains(system_step), "{steps}");
        assert!(
            steps.contains("update-ca-certificates") || steps.contains("update-ca-trust"),
            "{steps}"
        );
    }
    let out = t.run(&["ca", "trust", "--dry-run", "--domain", domain]);
    let ca_pem = ca_dir(&t, domain).join("ca.pem");
    assert!(stdout(&out).contains(&ca_pem.display().to_string()));
    for anchor in [
        format!("/usr/local/share/ca-certificates/fedilab-{domain}.crt"),
        format!("/etc/pki/ca-trust/source/anchors/fedilab-{domain}.pem"),
    ] {
        assert!(!Path::new(&anchor).exists(), "{anchor} was written");
    }
}

#[test]
fn issue3_ca_issue_prints_the_paths_it_wrote() {
    let t = TestDir::new();
    let out = t.run(&["ca", "issue", "myserver", "gts.fediverse.local"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("created the lab CA"),
        "{}",
        stderr(&out)
    );
    let printed = stdout(&out);
    let dir = ca_dir(&t, "fediverse.local");
    for host in ["myserver.fediverse.local", "gts.fediverse.local"] {
        let cert = dir.join(format!("{host}.pem"));
        let key = dir.join(format!("{host}.key"));
        assert!(printed.contains(&cert.display().to_string()), "{printed}");
        assert!(printed.contains(&key.display().to_string()), "{printed}");
        assert_eq!(mode(&key), 0o600);
        let verify = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(dir.join("ca.pem"))
            .arg(&cert)
            .output()
            .unwrap();
        assert!(verify.status.success(), "{}", stdout(&verify));
    }
    assert_eq!(mode(&dir), 0o700);
    assert!(!printed.contains("PRIVATE KEY"));

    let again = t.run(&["ca", "issue", "myserver"]);
    assert!(stdout(&again).contains("kept myserver.fediverse.local"));

    let outside = t.run(&["ca", "issue", "example.com"]);
    assert_eq!(outside.status.code(), Some(2));
    assert!(
        stderr(&outside).contains("outside the lab domain fediverse.local"),
        "{}",
        stderr(&outside)
    );
}

#[test]
fn issue3_ca_export_writes_the_certificate_only() {
    let t = TestDir::new();
    assert!(t.run(&["ca", "init"]).status.success());
    let ca_pem = std::fs::read_to_string(ca_dir(&t, "fediverse.local").join("ca.pem")).unwrap();

    let out = t.run(&["ca", "export"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), ca_pem);

    let file = t.dir.path().join("lab-ca.pem");
    let out = t.run(&["ca", "export", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), ca_pem);
    assert!(!ca_pem.contains("PRIVATE KEY"));
}

#[test]
fn issue3_a_world_readable_ca_key_is_refused_with_the_fix() {
    let t = TestDir::new();
    assert!(t.run(&["ca", "init"]).status.success());
    let key = ca_dir(&t, "fediverse.local").join("ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [
        &["ca", "show"][..],
        &["ca", "trust", "--dry-run"],
        &["render"],
    ] {
        let out = t.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("chmod 600 {}", key.display())),
            "{args:?}: {err}"
        );
        assert!(!err.contains("PRIVATE KEY"));
    }
}

#[test]
fn issue3_help_explains_the_name_constraints() {
    let t = TestDir::new();
    let out = t.run(&["ca", "--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    assert!(help.contains("name constraints"), "{help}");
    assert!(help.contains("example.com"), "{help}");
    let out = t.run(&["ca", "trust", "--help"]);
    let help = stdout(&out);
    assert!(help.contains("update-ca-certificates"), "{help}");
    assert!(help.contains("--dry-run"), "{help}");
}
