//! A throwaway PostgreSQL cluster for the tests, one per test process.
//!
//! The first test that asks for a database starts a cluster: `initdb` in a
//! temporary directory, then `pg_ctl start` on a free loopback port with
//! its socket in that directory (run as the `postgres` user when the tests
//! run as root, since PostgreSQL refuses root). A watchdog process stops
//! the cluster (`pg_ctl -m immediate`) and removes its directory once the
//! test process has exited, however it exits. Each test gets a database of
//! its own.
//!
//! The server binaries are found in `AGENTCA_TEST_PG_BIN`, else in the
//! newest `/usr/lib/postgresql/<version>/bin` (Debian's `postgresql`
//! package), else on the `PATH`. With none, the tests that need PostgreSQL
//! fail and say how to install it.
//!
//! Used by the CA's unit tests and by the end-to-end tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// A running cluster.
pub struct Cluster {
    /// Its loopback port.
    pub port: u16,
    /// Its directory (data, socket, log).
    pub dir: PathBuf,
    /// Where its binaries are.
    pub bin: PathBuf,
    /// Whether commands run as the `postgres` user.
    as_postgres: bool,
    /// More server options.
    options: String,
}

/// The superuser the cluster is created with.
pub const SUPERUSER: &str = "agentca";

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);
static NEXT_CLUSTER: AtomicU32 = AtomicU32::new(0);

/// The cluster the tests of this process share, started on first use.
/// No test may stop it: one that does uses [`own_cluster`].
pub fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(start) {
        Ok(cluster) => cluster,
        Err(e) => unavailable(e),
    }
}

/// A cluster of the caller's own, stopped and removed when dropped: for a
/// test that stops and starts the database.
pub fn own_cluster() -> Cluster {
    start().unwrap_or_else(|e| unavailable(&e))
}

/// A cluster of the caller's own that accepts TLS: its server certificate
/// is for `localhost`, issued by a CA whose certificate is
/// `<dir>/tls-ca.pem`; `<dir>/other-ca.pem` is a CA that issued nothing.
/// Made with the `openssl` binary.
pub fn own_tls_cluster() -> Cluster {
    let mut cluster = own_cluster();
    cluster.stop();
    let dir = cluster.dir.clone();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for ca in ["tls-ca", "other-ca"] {
        let mut args = vec!["req", "-x509"];
        args.extend(new_key);
        let (key, pem, subject) = (
            format!("{ca}.key"),
            format!("{ca}.pem"),
            format!("/CN=agentca test {ca}"),
        );
        args.extend([
            "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subject,
        ]);
        openssl(&args);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let mut args = vec!["req"];
    args.extend(new_key);
    args.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(&args);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "tls-ca.pem",
        "-CAkey",
        "tls-ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    if cluster.as_postgres {
        let owned = Command::new("chown")
            .args(["postgres:postgres", "server.key", "server.crt"])
            .current_dir(&dir)
            .status()
            .expect("chown");
        assert!(owned.success());
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    cluster.options = format!(
        "-c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
        dir.display()
    );
    cluster.start();
    cluster
}

fn unavailable(e: &str) -> ! {
    panic!(
        "these tests need a PostgreSQL server to start: {e}\n\
         Install Debian's `postgresql` package (apt-get install postgresql), or set \
         AGENTCA_TEST_PG_BIN to the directory of initdb and pg_ctl."
    )
}

/// The URL of a new, empty database on the shared cluster.
pub fn fresh_database() -> String {
    cluster().database()
}

impl Cluster {
    /// The URL of a new, empty database on this cluster.
    pub fn database(&self) -> String {
        let cluster = self;
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        cluster.psql("postgres", &format!("CREATE DATABASE {name}"));
        cluster.url(&name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` on database `db` with psql; panics if it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", SUPERUSER, "-d", db, "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `pg_ctl` with `args` on this cluster; whether it succeeded.
    pub fn pg_ctl(&self, args: &[&str]) -> bool {
        let data = self.dir.join("data");
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(&data).args(args);
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops the server at once, as a crash would (`-m immediate`).
    pub fn stop(&self) {
        assert!(
            self.pg_ctl(&["-m", "immediate", "-w", "stop"]),
            "pg_ctl stop"
        );
    }

    /// Starts the server again after [`Cluster::stop`].
    pub fn start(&self) {
        assert!(self.launch(), "pg_ctl start; see {}", self.log().display());
    }

    /// Freezes every process of the server (SIGSTOP), as a hung database
    /// host would look: connections open, nothing answers.
    pub fn freeze(&self) {
        self.signal_all("STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal_all("CONT");
    }

    fn signal_all(&self, signal: &str) {
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .expect("postmaster.pid")
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
            .expect("the postmaster's pid");
        let mut pids = vec![pid.to_string()];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if parent == Some(pid) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .args(&pids)
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pids:?}");
    }

    /// The server's log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    fn launch(&self) -> bool {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} \
             -c max_connections=400 -c shared_buffers=64MB {}",
            self.port,
            self.dir.display(),
            self.options
        );
        let log = self.log();
        self.pg_ctl(&[
            "-w",
            "-t",
            "60",
            "-l",
            log.to_str().expect("utf-8 path"),
            "-o",
            &options,
            "start",
        ])
    }

    fn command(&self, program: &str) -> Command {
        command(&self.bin, program, self.as_postgres)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The shared cluster is static and never dropped: its watchdog
        // removes it.
        self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn command(bin: &Path, program: &str, as_postgres: bool) -> Command {
    let path = bin.join(program);
    if as_postgres {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(path);
        cmd
    } else {
        Command::new(path)
    }
}

fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("AGENTCA_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|p| p.join("initdb").exists()))
        .ok_or_else(|| "initdb was not found".to_owned())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn start() -> Result<Cluster, String> {
    let bin = find_bin()?;
    let as_postgres = is_root();
    let dir = std::env::temp_dir().join(format!(
        "agentca-pg-{}-{}",
        std::process::id(),
        NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if as_postgres {
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !chown.success() {
            return Err("cannot give the cluster's directory to the postgres user".into());
        }
    }
    // The watchdog first: whatever happens next, the directory goes.
    let pg_ctl = bin.join("pg_ctl");
    let stop = if as_postgres {
        format!(
            "runuser -u postgres -- {} -D {}/data -m immediate -w stop",
            pg_ctl.display(),
            dir.display()
        )
    } else {
        format!(
            "{} -D {}/data -m immediate -w stop",
            pg_ctl.display(),
            dir.display()
        )
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the cluster's watchdog: {e}"))?;
    let init = command(&bin, "initdb", as_postgres)
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-sync"])
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !init.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    let cluster = Cluster {
        port: free_port(),
        dir,
        bin,
        as_postgres,
        options: String::new(),
    };
    if !cluster.launch() {
        let log = std::fs::read_to_string(cluster.log()).unwrap_or_default();
        return Err(format!("pg_ctl start failed: {log}"));
    }
    Ok(cluster)
}
