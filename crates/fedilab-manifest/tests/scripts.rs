//! The setup Job's Ruby, run with Debian's Ruby against stand-ins for the
//! Rails models it touches (the lab runs it with `rails runner` in the
//! Mastodon image): every script parses, and `credentials.rb` leaves a
//! matching password alone.

use std::process::Command;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts");

fn ruby() -> bool {
    let found = Command::new("ruby").arg("--version").output().is_ok();
    if !found {
        eprintln!("skipped: no `ruby` on this machine (scripts/install-test-deps.sh installs it)");
    }
    found
}

#[test]
fn every_ruby_script_parses() {
    if !ruby() {
        return;
    }
    for file in ["credentials.rb", "allow_domains.rb"] {
        let out = Command::new("ruby")
            .args(["-c", &format!("{SCRIPTS}/{file}")])
            .output()
            .expect("ruby runs");
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Stand-ins for Account, User, Doorkeeper and the tootctl CLI: they record
/// what the script does, printed as `calls: ...` at exit.
const STANDINS: &str = r#"
$calls = []
at_exit { puts "calls: #{$calls.join(',')}" }
class FakeUser
  attr_accessor :password, :password_confirmation
  def id = 1
  def valid_password?(p) = p == ENV['STANDIN_CURRENT_PASSWORD']
  def save!(**) = $calls << 'save'
end
class FakeAccount
  def user = FakeUser.new
end
module Account
  def self.find_local(_) = FakeAccount.new
end
class FakeToken
  def token = ENV['FEDILAB_API_TOKEN']
  def update_columns(**) = $calls << 'token'
end
module Doorkeeper
  class Application
    def self.find_or_create_by!(**) = Struct.new(:id).new(1)
  end
  class AccessToken
    def self.where(**) = [FakeToken.new]
  end
end
"#;

fn run_credentials(current_password: &str) -> String {
    let script = format!("{SCRIPTS}/credentials.rb");
    let out = Command::new("ruby")
        .args(["-e", &format!("{STANDINS}\nload ARGV[0]"), &script])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FEDILAB_ADMIN_USERNAME", "labadmin")
        .env("FEDILAB_ADMIN_EMAIL", "labadmin@a.fediverse.local")
        .env("FEDILAB_ADMIN_PASSWORD", "generated-password")
        .env("FEDILAB_API_TOKEN", "generated-token")
        .env("FEDILAB_OAUTH_APP", "fedilab")
        .env("STANDIN_CURRENT_PASSWORD", current_password)
        .output()
        .expect("ruby runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Issue 12: a rerun must not re-hash the password (nor queue a
/// password-change mail); a password that differs is still set.
#[test]
fn issue_12_credentials_saves_the_password_only_when_it_differs() {
    if !ruby() {
        return;
    }
    let rerun = run_credentials("generated-password");
    assert!(rerun.contains("can sign in"), "{rerun}");
    assert!(rerun.ends_with("calls: \n"), "nothing saved: {rerun}");
    let changed = run_credentials("someone-changed-it");
    assert!(changed.contains("calls: save"), "{changed}");
}
