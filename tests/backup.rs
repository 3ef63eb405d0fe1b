//! Backup, restore and migration round trips, with the real binary: the
//! CA that comes back serves the same revocations (its CRL lists them,
//! OCSP answers the same, checked by openssl), its audit trail verifies,
//! and what was issued after the backup is not there.

mod common;
#[path = "support/postgres.rs"]
mod postgres;

use std::process::Command;

use agentca::wire::IssuedCertificate;
use common::*;

/// A CA's state to find again: one live certificate, one revoked.
struct Known {
    live: IssuedCertificate,
    gone: IssuedCertificate,
    dir: tempfile::TempDir,
}

async fn issue_and_revoke(ca: &TestCa) -> Known {
    let (live, _) = ca.enrolled("acme", "prod", "live").await;
    let (gone, _) = ca.enrolled("acme", "prod", "gone").await;
    ca.revoke_agent("acme", "prod", "gone", "keyCompromise")
        .await;
    let dir = tempfile::tempdir().unwrap();
    for (name, issued) in [("live", &live), ("gone", &gone)] {
        write(
            dir.path(),
            &format!("{name}.pem"),
            &issued.certificate_chain,
        );
    }
    let intermediate = pem::encode(&pem::parse_many(&live.certificate_chain).unwrap()[1]);
    write(dir.path(), "intermediate.pem", &intermediate);
    Known { live, gone, dir }
}

/// `ca` serves what `known` says: the revoked certificate on its CRL and
/// revoked by OCSP, the live one good, and its audit trail verifies.
async fn serves_the_same(ca: &TestCa, known: &Known) {
    let (serials, _) = crl_serials(&ca.crl().await);
    assert!(
        serials.contains(&known.gone.serial.to_string()),
        "{serials:?}"
    );
    assert!(!serials.contains(&known.live.serial.to_string()));
    let text = openssl_ocsp(ca, known.dir.path(), "gone.pem");
    assert!(
        text.contains("Response verify OK") && text.contains("gone.pem: revoked"),
        "{text}"
    );
    let text = openssl_ocsp(ca, known.dir.path(), "live.pem");
    assert!(
        text.contains("Response verify OK") && text.contains("live.pem: good"),
        "{text}"
    );
    let out = ok(ca.command().args(["audit", "verify"]));
    assert!(out.starts_with("audit trail intact"), "{out}");
}

const HTTP: &[&str] = &["--http-listen", "127.0.0.1:0"];

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_of_a_running_ca_restores_into_a_new_directory_and_into_postgres() {
    let mut ca = TestCa::start_with(&[], HTTP);
    let known = issue_and_revoke(&ca).await;
    let file = ca.root.path().join("ca.backup");
    let out = ok(ca.command().arg("backup").arg("--out").arg(&file));
    assert!(out.contains("backup written"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Issued after the backup: the restored CA never heard of it.
    let (after, _) = ca.enrolled("acme", "prod", "after").await;
    write(known.dir.path(), "after.pem", &after.certificate_chain);
    let admin_token = ca.admin_token();
    ca.kill();

    let restored = ca.root.path().join("restored");
    let out = ok(Command::new(agentca_bin())
        .arg("restore")
        .arg("--in")
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored));
    assert!(out.contains("restored"), "{out}");
    let back = TestCa::serve_dir(&restored, &admin_token, HTTP);
    serves_the_same(&back, &known).await;
    let text = openssl_ocsp(&back, known.dir.path(), "after.pem");
    assert!(text.contains("after.pem: unknown"), "{text}");
    // It carries on: the agents it knew renew and enroll.
    back.enrolled("acme", "prod", "next").await;

    // The same backup into an empty PostgreSQL database.
    let url = postgres::fresh_database();
    ok(Command::new(agentca_bin())
        .arg("restore")
        .arg("--in")
        .arg(&file)
        .args(["--store", &url]));
    let bundle = std::fs::read(back.bundle_path()).unwrap();
    let replicas = TestCa::serve_replicas(&url, 2, &bundle, &admin_token, HTTP);
    for replica in &replicas {
        serves_the_same(replica, &known).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_single_node_ca_moves_onto_postgres_with_its_history() {
    let mut ca = TestCa::start_with(&[], HTTP);
    let known = issue_and_revoke(&ca).await;
    let (issued, key) = ca.enrolled("acme", "prod", "renewer").await;
    let admin_token = ca.admin_token();
    let bundle = std::fs::read(ca.bundle_path()).unwrap();
    let url = postgres::fresh_database();

    // Not while it runs: the store is the running CA's.
    let data_dir = ca.data_dir.clone();
    let migrate = || {
        let mut cmd = Command::new(agentca_bin());
        cmd.args(["store", "migrate", "--to", &url])
            .arg("--data-dir")
            .arg(&data_dir);
        cmd
    };
    let err = fails(&mut migrate());
    assert!(err.contains("stop the CA first"), "{err}");
    ca.kill();
    let out = ok(&mut migrate());
    assert!(out.contains("moved"), "{out}");

    let replicas = TestCa::serve_replicas(&url, 2, &bundle, &admin_token, HTTP);
    for replica in &replicas {
        serves_the_same(replica, &known).await;
    }
    // A certificate issued before the move renews after it, once.
    replicas[1].renewed(&issued, &key).await;
    // Into a database that is not empty: refused.
    let err = fails(&mut migrate());
    assert!(err.contains("not empty"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_dump_and_pg_restore_bring_back_a_ca_kept_in_postgres() {
    let url = postgres::fresh_database();
    let replicas = TestCa::start_replicas(&url, 1, HTTP);
    let known = issue_and_revoke(&replicas[0]).await;
    let admin_token = replicas[0].admin_token();
    let bundle = std::fs::read(replicas[0].bundle_path()).unwrap();
    let cluster = postgres::cluster();
    let db = url.rsplit('/').next().unwrap();
    let dump = known.dir.path().join("ca.dump");
    let port = cluster.port.to_string();
    ok(Command::new(cluster.bin.join("pg_dump"))
        .args(["-h", "127.0.0.1", "-p", &port, "-U", postgres::SUPERUSER])
        .args(["-Fc", "-f"])
        .arg(&dump)
        .arg(db));
    drop(replicas);

    let restored_url = postgres::fresh_database();
    ok(Command::new(cluster.bin.join("pg_restore"))
        .args(["-h", "127.0.0.1", "-p", &port, "-U", postgres::SUPERUSER])
        .args(["--no-owner", "-d", restored_url.rsplit('/').next().unwrap()])
        .arg(&dump));
    let back = TestCa::serve_replicas(&restored_url, 1, &bundle, &admin_token, HTTP);
    serves_the_same(&back[0], &known).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_backup_is_refused_and_nothing_is_written() {
    let ca = TestCa::start();
    issue_and_revoke(&ca).await;
    let file = ca.root.path().join("ca.backup");
    ok(ca.command().arg("backup").arg("--out").arg(&file));
    // Not over an existing file.
    let err = fails(ca.command().arg("backup").arg("--out").arg(&file));
    assert!(err.contains("refusing to overwrite"), "{err}");
    let good = std::fs::read(&file).unwrap();
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    for (name, bytes, why) in [
        ("flipped", flipped, "checksum"),
        ("truncated", good[..good.len() - 10].to_vec(), "checksum"),
        ("other", b"not a backup at all".to_vec(), "does not start"),
    ] {
        let bad = ca.root.path().join(name);
        std::fs::write(&bad, bytes).unwrap();
        let target = ca.root.path().join(format!("restored-{name}"));
        let err = fails(
            Command::new(agentca_bin())
                .arg("restore")
                .arg("--in")
                .arg(&bad)
                .arg("--data-dir")
                .arg(&target),
        );
        assert!(err.contains(why), "{name}: {err}");
        assert!(!target.exists(), "{name}: something was written");
    }
    // A scoped admin may not take one.
    let scoped: agentca::wire::CreateAdminResponse = ca
        .admin(
            reqwest::Method::POST,
            "/v1/admin/admins",
            Some(&agentca::wire::CreateAdminRequest {
                name: "acme-ops".into(),
                tenant: Some("acme".into()),
                role: None,
            }),
        )
        .await
        .unwrap();
    let token_file = write(ca.root.path(), "scoped.token", &scoped.token);
    let err = fails(
        ca.command()
            .env("AGENTCA_ADMIN_TOKEN_FILE", &token_file)
            .arg("backup")
            .arg("--out")
            .arg(ca.root.path().join("scoped.backup")),
    );
    assert!(err.contains("403"), "{err}");
    assert!(!ca.root.path().join("scoped.backup").exists());
}
