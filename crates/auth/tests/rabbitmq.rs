//! The RabbitMQ definitions ktwin generates, imported into the real RabbitMQ and exercised
//! through its MQTT plugin: passwords authenticate, topic permissions confine each device to
//! its own topics, another device is unaffected. Everything lives in a vhost of its own,
//! deleted afterwards.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{WAIT, connect};
use ktwin_auth::Secret;
use ktwin_auth::mqtt::rabbitmq::{RabbitUser, definitions};
use ktwin_auth::mqtt::{DeclaredTopics, DeviceGrant, TopicRights};
use ktwin_testkit::servers::{self, rabbitmqctl};
use rumqttc::SubscribeReasonCode;

/// The test's vhost and users, removed when dropped (also when an assertion fails).
struct Scratch {
    vhost: String,
    users: Vec<String>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.vhost])
            .output();
        for user in &self.users {
            let _ = Command::new("rabbitmqctl")
                .args(["delete_user", user])
                .output();
        }
    }
}

#[tokio::test]
async fn imported_definitions_authenticate_and_confine_devices() {
    let suffix = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let scratch = Scratch {
        vhost: format!("ktwin-auth-test-{suffix}"),
        users: vec![format!("pole-a-{suffix}"), format!("pole-b-{suffix}")],
    };
    let declared = DeclaredTopics::default();
    let rights = [
        TopicRights::of(&DeviceGrant::device("pole", "a"), &declared),
        TopicRights::of(&DeviceGrant::device("pole", "b"), &declared),
    ];
    let passwords = [Secret::generate("ktwind_"), Secret::generate("ktwind_")];
    let users: Vec<RabbitUser<'_>> = (0..2)
        .map(|i| RabbitUser {
            username: &scratch.users[i],
            password: &passwords[i],
            rights: &rights[i],
        })
        .collect();
    let document = definitions(&scratch.vhost, &users);
    assert!(!document.to_string().contains(passwords[0].expose()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("definitions.json");
    std::fs::write(&file, document.to_string()).unwrap();
    rabbitmqctl(&["import_definitions", file.to_str().unwrap()]);
    // The platform's side (the test observer) is guest, on this vhost only.
    rabbitmqctl(&[
        "set_permissions",
        "-p",
        &scratch.vhost,
        "guest",
        ".*",
        ".*",
        ".*",
    ]);

    let port = servers::rabbitmq_mqtt().port;
    let login = |user: &str| format!("{}:{user}", scratch.vhost);
    assert!(
        connect(port, "wrong", &login(&scratch.users[0]), "wrong")
            .await
            .is_err()
    );
    let mut platform = connect(port, "observer", &login("guest"), "guest")
        .await
        .unwrap();
    assert!(matches!(
        platform.subscribe("ktwin/real/#").await,
        Some(SubscribeReasonCode::Success(_))
    ));
    let a_id = format!("{}-1", scratch.users[0]);
    let b_id = format!("{}-1", scratch.users[1]);
    let mut a = connect(
        port,
        &a_id,
        &login(&scratch.users[0]),
        passwords[0].expose(),
    )
    .await
    .unwrap();
    let mut b = connect(
        port,
        &b_id,
        &login(&scratch.users[1]),
        passwords[1].expose(),
    )
    .await
    .unwrap();

    // Own topic: delivered.
    a.publish("ktwin/real/pole/a", "mine").await;
    assert_eq!(
        platform.next_message(WAIT).await,
        Some(("ktwin/real/pole/a".to_owned(), "mine".to_owned()))
    );
    // Own virtual topic: subscribed and delivered; another device's: refused.
    assert!(matches!(
        b.subscribe("ktwin/virtual/pole/b").await,
        Some(SubscribeReasonCode::Success(_))
    ));
    let refused = a.subscribe("ktwin/virtual/pole/b").await;
    assert!(
        refused != Some(SubscribeReasonCode::Success(rumqttc::QoS::AtLeastOnce)),
        "{refused:?}"
    );
    platform.publish("ktwin/virtual/pole/b", "for b").await;
    assert_eq!(
        b.next_message(WAIT).await,
        Some(("ktwin/virtual/pole/b".to_owned(), "for b".to_owned()))
    );

    // Another device's topic: refused (RabbitMQ closes the connection); b is unaffected.
    let mut a = connect(
        port,
        &a_id,
        &login(&scratch.users[0]),
        passwords[0].expose(),
    )
    .await
    .unwrap();
    a.publish("ktwin/real/pole/b", "forged").await;
    assert!(
        a.closed_within(WAIT).await,
        "the forged publish did not close the connection"
    );
    b.publish("ktwin/real/pole/b", "theirs").await;
    assert_eq!(
        platform.next_message(WAIT).await,
        Some(("ktwin/real/pole/b".to_owned(), "theirs".to_owned()))
    );
    assert_eq!(
        platform.next_message(Duration::from_millis(300)).await,
        None
    );
}
