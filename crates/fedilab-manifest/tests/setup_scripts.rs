//! The setup scripts of Misskey and GoToSocial, run for real here: their
//! SQL against a throwaway PostgreSQL holding the tables (and the columns
//! the scripts touch) that those releases create, their HTTP and CLI steps
//! against stand-ins of the documented API and commands (`tests/standins/`)
//! that write the same rows the real server would. Each script runs twice:
//! the second run must change nothing.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use fedilab_testdb::TempPostgres;

const TOKEN16: &str = "AbCdEfGh12345678";
const GTS_TOKEN: &str = "gts-token-value-with-43-characters-aaaaaaaa";

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `command` and waits until `url` answers.
fn serve(mut command: Command, url: &str) -> Running {
    let child = Running(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stand-in starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Command::new("wget")
        .args(["-q", "-O", "/dev/null", url])
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "{url} never answered");
        sleep(Duration::from_millis(50));
    }
    child
}

fn run_script(pg: &TempPostgres, script: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("sh");
    command
        .arg(here().join("scripts").join(script))
        .envs(pg.env())
        .env("PATH", path_with(&pg.bin("psql")));
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("sh runs")
}

/// PATH with the directory of the server's psql first.
fn path_with(psql: &Path) -> String {
    let dir = psql.parent().map(Path::to_path_buf).unwrap_or_default();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "script failed:\n{text}");
    text
}

#[test]
fn misskey_setup_creates_the_admin_once_and_sets_its_native_token() -> io::Result<()> {
    let pg = TempPostgres::start()?;
    pg.create_db("misskey")?;
    // The columns of Misskey's "user" table that setup reads and writes
    // (packages/backend/src/models/User.ts).
    pg.psql(
        "misskey",
        r#"CREATE TABLE "user" (
             id varchar(32) PRIMARY KEY,
             username varchar(128) NOT NULL,
             "usernameLower" varchar(128) NOT NULL,
             host varchar(128),
             token char(16) UNIQUE,
             UNIQUE ("usernameLower", host));
           INSERT INTO "user" (id, username, "usernameLower", host)
             VALUES ('remote1', 'labadmin', 'labadmin', 'elsewhere.example');"#,
    )?;
    let tmp = tempfile::tempdir()?;
    let log = tmp.path().join("calls");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut standin = Command::new("python3");
    standin
        .arg(here().join("tests/standins/misskey.py"))
        .arg(port.to_string())
        .arg("the-setup-password")
        .envs(pg.env())
        .env("PGDATABASE", "misskey")
        .env("PATH", path_with(&pg.bin("psql")))
        .env("STANDIN_LOG", &log);
    let _server = serve(standin, &format!("{url}/healthz"));
    let env = [
        ("FEDILAB_URL", url.as_str()),
        ("FEDILAB_ADMIN_USERNAME", "labadmin"),
        ("FEDILAB_ADMIN_PASSWORD", "pw"),
        ("FEDILAB_API_TOKEN", TOKEN16),
        ("FEDILAB_SETUP_PASSWORD", "the-setup-password"),
        ("PGDATABASE", "misskey"),
    ];
    let first = ok(&run_script(&pg, "misskey-setup.sh", &env));
    assert!(first.contains("setup complete"), "{first}");
    let second = ok(&run_script(&pg, "misskey-setup.sh", &env));
    assert!(second.contains("setup complete"), "{second}");
    assert_eq!(
        std::fs::read_to_string(&log)?,
        "create\n",
        "the admin is created once"
    );
    let rows = pg.psql(
        "misskey",
        r#"SELECT username, coalesce(host, '-'), coalesce(token, '-') FROM "user" ORDER BY id"#,
    )?;
    let mut rows: Vec<&str> = rows.lines().collect();
    rows.sort_unstable();
    assert_eq!(
        rows,
        [
            "labadmin|-|AbCdEfGh12345678",
            "labadmin|elsewhere.example|-"
        ],
        "only the local admin has the token"
    );

    let wrong = run_script(
        &pg,
        "misskey-setup.sh",
        &[
            ("FEDILAB_URL", url.as_str()),
            ("FEDILAB_ADMIN_USERNAME", "nobody"),
            ("FEDILAB_ADMIN_PASSWORD", "pw"),
            ("FEDILAB_API_TOKEN", "ZZZZZZZZZZZZZZZZ"),
            ("FEDILAB_SETUP_PASSWORD", "wrong"),
            ("PGDATABASE", "misskey"),
        ],
    );
    assert!(!wrong.status.success(), "a refused creation fails the Job");
    Ok(())
}

#[test]
fn gotosocial_setup_creates_promotes_and_writes_one_app_and_token() -> io::Result<()> {
    let pg = TempPostgres::start()?;
    pg.create_db("gotosocial")?;
    // The tables GoToSocial 0.19+ creates that setup touches, with the
    // columns of their models (internal/db/bundb/migrations/
    // 20250224105654_token_app_client_refactor; accounts and users cut to
    // the columns used).
    pg.psql(
        "gotosocial",
        "CREATE TABLE accounts (id char(26) PRIMARY KEY, username varchar NOT NULL, domain varchar);
         CREATE TABLE users (id char(26) PRIMARY KEY, account_id char(26) NOT NULL UNIQUE,
                             admin boolean DEFAULT false);
         CREATE TABLE applications (
             id char(26) NOT NULL UNIQUE PRIMARY KEY, name varchar NOT NULL, website varchar,
             redirect_uris varchar[], client_id char(26) NOT NULL, client_secret varchar NOT NULL,
             scopes varchar NOT NULL, managed_by_user_id char(26));
         CREATE TABLE tokens (
             id char(26) NOT NULL UNIQUE, last_used timestamptz, client_id char(26) NOT NULL,
             user_id char(26), redirect_uri varchar NOT NULL,
             scope varchar NOT NULL DEFAULT 'read', code varchar NOT NULL DEFAULT '',
             code_challenge varchar, code_challenge_method varchar,
             code_create_at timestamptz, code_expires_at timestamptz,
             access varchar NOT NULL DEFAULT '', access_create_at timestamptz,
             access_expires_at timestamptz, refresh varchar NOT NULL DEFAULT '',
             refresh_create_at timestamptz, refresh_expires_at timestamptz,
             PRIMARY KEY (id, code, access, refresh));",
    )?;
    // /readyz from a static directory.
    let www = tempfile::tempdir()?;
    std::fs::write(www.path().join("readyz"), "ok")?;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut standin = Command::new("python3");
    standin
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(www.path());
    let _server = serve(standin, &format!("{url}/readyz"));
    let cli = here().join("tests/standins/gotosocial");
    let cli = cli.to_string_lossy();
    let admin = [
        ("FEDILAB_URL", url.as_str()),
        ("FEDILAB_GTS_BIN", cli.as_ref()),
        ("FEDILAB_ADMIN_USERNAME", "labadmin"),
        ("FEDILAB_ADMIN_EMAIL", "labadmin@gts1.fediverse.local"),
        ("FEDILAB_ADMIN_PASSWORD", "pw"),
        ("PGDATABASE", "gotosocial"),
    ];
    let token = [
        ("FEDILAB_ADMIN_USERNAME", "labadmin"),
        ("FEDILAB_API_TOKEN", GTS_TOKEN),
        ("FEDILAB_OAUTH_APP", "fedilab"),
        ("PGDATABASE", "gotosocial"),
    ];
    let before_admin = run_script(&pg, "gotosocial-token.sh", &token);
    assert!(
        !before_admin.status.success(),
        "no token without the admin account"
    );
    for round in 0..2 {
        let text = ok(&run_script(&pg, "gotosocial-admin.sh", &admin));
        if round == 1 {
            assert!(text.contains("labadmin exists"), "{text}");
        }
        ok(&run_script(&pg, "gotosocial-token.sh", &token));
    }
    let rows = pg.psql(
        "gotosocial",
        "SELECT u.admin, t.access, t.client_id = a.client_id, t.access_expires_at IS NULL
         FROM tokens t JOIN users u ON u.id = t.user_id JOIN applications a ON a.client_id = t.client_id",
    )?;
    assert_eq!(
        rows.trim(),
        format!("t|{GTS_TOKEN}|t|t"),
        "one promoted admin, one never-expiring token of the app"
    );
    let counts = pg.psql(
        "gotosocial",
        "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM applications), (SELECT count(*) FROM tokens)",
    )?;
    assert_eq!(counts.trim(), "1|1|1", "the second run added nothing");
    Ok(())
}
