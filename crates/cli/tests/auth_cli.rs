//! `ktwin auth`: tokens and device credentials created, listed, rotated and revoked in a
//! project's `.ktwin/auth/` files, which then authenticate exactly what they should.

use std::path::Path;
use std::process::Command;

use ktwin_auth::local::{DEVICES_FILE, TOKENS_FILE};
use ktwin_auth::mqtt::{DeviceCredentialFile, DeviceGrant, DeviceRegistry};
use ktwin_auth::{Scope, TokenFile, TokenSet};

/// Runs `ktwin auth <args> --project <project>`; its stdout, or a panic with its stderr.
fn auth(project: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ktwin"))
        .arg("auth")
        .args(args)
        .arg("--project")
        .arg(project)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ktwin auth {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn tokens(project: &Path) -> TokenSet {
    let file = TokenFile::load(&project.join(".ktwin/auth").join(TOKENS_FILE)).unwrap();
    TokenSet::new(&file).unwrap()
}

#[test]
fn tokens_are_created_scoped_rotated_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path();
    let args = [
        "token",
        "add",
        "pole-dashboard",
        "--scope",
        "read",
        "--interface",
        "city-pole",
        "--instance-prefix",
        "pole-00",
    ];
    let first = auth(project, &args).trim().to_owned();
    assert!(
        first.starts_with("ktwin_"),
        "only the token on stdout: {first}"
    );
    let now = chrono::Utc::now();
    let principal = tokens(project).authenticate(&first, now).unwrap();
    assert_eq!(principal.scope, Scope::Read);
    assert!(principal.allows_twin("city-pole", "pole-001"));
    assert!(!principal.allows_twin("city-pole", "pole-101"));
    assert!(!principal.allows_twin("parking", "pole-001"));

    let listed = auth(project, &["token", "list"]);
    assert!(
        listed.contains("pole-dashboard")
            && listed.contains("city-pole")
            && !listed.contains(&first),
        "{listed}"
    );
    let second = auth(project, &["token", "rotate", "pole-dashboard"])
        .trim()
        .to_owned();
    assert_ne!(second, first);
    let set = tokens(project);
    assert!(
        set.authenticate(&first, now).is_err(),
        "the old token stops working"
    );
    assert_eq!(set.authenticate(&second, now).unwrap().scope, Scope::Read);

    auth(project, &["token", "revoke", "pole-dashboard"]);
    assert!(tokens(project).is_empty());
    let missing = Command::new(env!("CARGO_BIN_EXE_ktwin"))
        .args(["auth", "token", "revoke", "pole-dashboard", "--project"])
        .arg(project)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no token named"));
}

#[test]
fn device_credentials_are_created_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path();
    let password = auth(
        project,
        &[
            "device",
            "add",
            "pole-001",
            "--device",
            "city-pole/pole-001",
        ],
    )
    .trim()
    .to_owned();
    let path = project.join(".ktwin/auth").join(DEVICES_FILE);
    let registry = DeviceRegistry::new(&DeviceCredentialFile::load(&path).unwrap()).unwrap();
    assert_eq!(
        registry.verify("pole-001", password.as_bytes()).unwrap(),
        DeviceGrant::device("city-pole", "pole-001")
    );
    assert!(auth(project, &["device", "list"]).contains("city-pole/pole-001"));
    auth(project, &["device", "revoke", "pole-001"]);
    assert!(
        DeviceCredentialFile::load(&path)
            .unwrap()
            .credentials
            .is_empty()
    );
}
