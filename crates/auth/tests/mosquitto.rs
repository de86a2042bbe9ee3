//! The Mosquitto files ktwin generates, loaded by a real Mosquitto: passwords in its `$7$`
//! format authenticate, the ACL confines each device to its own topics, and lines written by
//! `mosquitto_passwd` verify with ktwin's reader.

mod common;

use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{WAIT, connect, publish_own_and_forged};
use ktwin_auth::Secret;
use ktwin_auth::mqtt::mosquitto::{acl_file, line_matches, password_line};
use ktwin_auth::mqtt::{DeclaredTopics, DeviceGrant, TopicRights};
use rumqttc::SubscribeReasonCode;

/// A Mosquitto of its own, on a free loopback port, killed when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_mosquitto(dir: &Path, passwords: &str, acl: &str) -> Mosquitto {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(dir.join("passwd"), passwords).unwrap();
    std::fs::write(dir.join("acl"), acl).unwrap();
    let mut config = std::fs::File::create(dir.join("mosquitto.conf")).unwrap();
    writeln!(config, "listener {port} 127.0.0.1").unwrap();
    writeln!(config, "allow_anonymous false").unwrap();
    writeln!(config, "persistence false").unwrap();
    writeln!(config, "password_file {}", dir.join("passwd").display()).unwrap();
    writeln!(config, "acl_file {}", dir.join("acl").display()).unwrap();
    // As root Mosquitto would switch to its own user, which cannot read the temporary files.
    writeln!(config, "user root").unwrap();
    let child = Command::new(mosquitto_binary())
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto runs (scripts/services.sh installs it)");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < WAIT,
            "mosquitto did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Mosquitto { child, port }
}

fn mosquitto_binary() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

#[tokio::test]
async fn generated_files_authenticate_and_confine_devices() {
    let dir = tempfile::tempdir().unwrap();
    let declared = DeclaredTopics::default();
    let users = [
        (
            "p1",
            TopicRights::of(&DeviceGrant::device("pole", "p1"), &declared),
        ),
        (
            "p2",
            TopicRights::of(&DeviceGrant::device("pole", "p2"), &declared),
        ),
        (
            "platform",
            TopicRights {
                publish: vec!["#".into()],
                subscribe: vec!["#".into()],
            },
        ),
    ];
    let passwords: Vec<Secret> = users.iter().map(|_| Secret::generate("ktwind_")).collect();
    let password_file: String = users
        .iter()
        .zip(&passwords)
        .map(|((name, _), password)| password_line(name, password).unwrap() + "\n")
        .collect();
    let acl = acl_file(users.iter().map(|(name, rights)| (*name, rights))).unwrap();
    let broker = start_mosquitto(dir.path(), &password_file, &acl);

    // Wrong and missing passwords are refused.
    assert!(connect(broker.port, "x", "p1", "wrong").await.is_err());
    assert!(
        connect(broker.port, "x", "nobody", passwords[0].expose())
            .await
            .is_err()
    );

    let mut platform = connect(broker.port, "platform", "platform", passwords[2].expose())
        .await
        .unwrap();
    let mut p1 = connect(broker.port, "p1", "p1", passwords[0].expose())
        .await
        .unwrap();
    let p2 = connect(broker.port, "p2", "p2", passwords[1].expose())
        .await
        .unwrap();
    assert_eq!(
        platform.subscribe("ktwin/real/#").await,
        Some(SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce))
    );

    // Each device publishes to its own topic only; the other device is unaffected.
    publish_own_and_forged(&p1, &p2, &mut platform).await;

    // Subscriptions: its own virtual topic, not another device's. (Mosquitto 2.0 acknowledges
    // a denied subscription over MQTT 3.1.1; it then delivers nothing on it.)
    assert!(
        p1.subscribe("ktwin/virtual/pole/p2").await.is_some(),
        "no SUBACK"
    );
    assert!(matches!(
        p1.subscribe("ktwin/virtual/pole/p1").await,
        Some(SubscribeReasonCode::Success(_))
    ));
    platform
        .publish("ktwin/virtual/pole/p2", "not for p1")
        .await;
    platform.publish("ktwin/virtual/pole/p1", "for p1").await;
    assert_eq!(
        p1.next_message(WAIT).await,
        Some(("ktwin/virtual/pole/p1".to_owned(), "for p1".to_owned()))
    );
    assert_eq!(p1.next_message(Duration::from_millis(300)).await, None);
}

#[test]
fn lines_written_by_mosquitto_passwd_verify() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    let status = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&file)
        .args(["device-7", "their password"])
        .status()
        .expect("mosquitto_passwd runs (scripts/services.sh installs Mosquitto)");
    assert!(status.success());
    let line = std::fs::read_to_string(&file).unwrap();
    assert!(line_matches(&line, "device-7", b"their password"), "{line}");
    assert!(!line_matches(&line, "device-7", b"another password"));
}
