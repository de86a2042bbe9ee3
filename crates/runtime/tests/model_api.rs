//! `ktwin up`'s model and command routes on the smart-city example, over HTTP: the model
//! document lists every interface with its commands' request schemas; a command is checked
//! against its schema, runs in the twin's service, and what the service changes is stored;
//! bad commands get a problem naming what is wrong.

mod common;

use std::time::{Duration, Instant};

use ktwin_runtime::up::Platform;
use serde_json::{Value, json};

const NEIGHBORHOOD: &str = "s4city-city-neighborhood";
const PARKING: &str = "ngsi-ld-city-offstreetparking";

/// The first twin of `interface` in the platform's graph.
fn twin_of(platform: &Platform, interface: &str) -> String {
    platform
        .planned
        .project
        .instances
        .iter()
        .find(|i| i.spec.interface == interface)
        .and_then(|i| i.metadata.name.clone())
        .expect("the example has such a twin")
}

async fn post(client: &reqwest::Client, url: &str, body: &str) -> (u16, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_list_interfaces_and_commands_reach_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let platform = common::start_smart_city(dir.path()).await;
    let base = format!("http://{}", platform.http);
    let client = common::api_client(&platform);

    let models: Value = client
        .get(format!("{base}/api/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let interfaces = models["interfaces"].as_array().unwrap();
    assert_eq!(
        interfaces.len(),
        platform.planned.project.interfaces.len(),
        "every interface of the project"
    );
    let neighborhood = interfaces
        .iter()
        .find(|i| i["name"] == NEIGHBORHOOD)
        .expect("the neighbourhood interface");
    assert_eq!(
        neighborhood["id"],
        "dtmi:digitaltwins:s4city:city:Neighborhood;1"
    );
    let command = neighborhood["contents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "Command")
        .expect("its command");
    assert_eq!(command["name"], "updateairqualityindex");
    assert_eq!(command["request"]["schema"]["type"], "object");
    assert_eq!(
        command["request"]["schema"]["fields"][0]["name"],
        "aqiLevel"
    );
    assert!(models["diagnostics"].is_array());

    // A command runs in the neighbourhood's service, which stores the level it was sent.
    let twin = twin_of(&platform, NEIGHBORHOOD);
    let url = format!("{base}/api/v1/commands/{NEIGHBORHOOD}/{twin}/updateAirQualityIndex");
    let (status, accepted) = post(&client, &url, r#"{"aqiLevel": "HAZARDOUS"}"#).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(
        accepted["type"],
        format!("ktwin.command.{NEIGHBORHOOD}.updateairqualityindex")
    );
    assert_eq!(accepted["source"], twin.as_str());
    let sent: chrono::DateTime<chrono::Utc> = accepted["time"].as_str().unwrap().parse().unwrap();
    let latest = format!("{base}/api/v1/twin-events/{NEIGHBORHOOD}/{twin}/latest");
    let started = Instant::now();
    let state = loop {
        let response = client.get(&latest).send().await.unwrap();
        if response.status() == 200 {
            break response.json::<Value>().await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the neighbourhood's state was not stored: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(state["aqiLevel"], "HAZARDOUS", "{state}");
    let seen: chrono::DateTime<chrono::Utc> = state["aqiLevelLastSeen"]["HAZARDOUS"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(seen >= sent, "stored {seen}, sent {sent}");

    let openapi: Value = client
        .get(format!("{base}/api/v1/models/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/models",
        "/api/v1/commands/{interface}/{instance}/{command}",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} documented");
    }
    platform.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_get_a_problem_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let platform = common::start_smart_city(dir.path()).await;
    let base = format!("http://{}", platform.http);
    let client = common::api_client(&platform);
    let parking = twin_of(&platform, PARKING);
    let neighborhood = twin_of(&platform, NEIGHBORHOOD);
    let command = |interface: &str, twin: &str, name: &str| {
        format!("{base}/api/v1/commands/{interface}/{twin}/{name}")
    };
    let count = command(PARKING, &parking, "updatevehiclecount");

    let cases = [
        (
            count.clone(),
            json!({"vehicleExitCount": "two"}).to_string(),
            400,
            r#"request "updateVehicleCountRequest" of command updatevehiclecount: $.vehicleExitCount: "two" is not a whole number in integer's range"#,
        ),
        (
            count.clone(),
            json!({"vehicleEntranceCount": 1, "colour": "red"}).to_string(),
            400,
            "$.colour: a field is not declared (the fields are vehicleEntranceCount, vehicleExitCount)",
        ),
        (
            count.clone(),
            json!({"vehicleEntranceCount": 3_000_000_000_u64}).to_string(),
            400,
            "$.vehicleEntranceCount: 3000000000 is not a whole number in integer's range",
        ),
        (
            count.clone(),
            "{not json".to_owned(),
            400,
            "the body must be JSON",
        ),
        (
            count.clone(),
            String::new(),
            400,
            "needs its request payload \"updateVehicleCountRequest\"",
        ),
        (
            command(PARKING, &parking, "reboot"),
            "{}".to_owned(),
            404,
            "ngsi-ld-city-offstreetparking declares no command \"reboot\"; it declares updatevehiclecount",
        ),
        (
            command(PARKING, &neighborhood, "updatevehiclecount"),
            "{}".to_owned(),
            404,
            "is a s4city-city-neighborhood, not a ngsi-ld-city-offstreetparking",
        ),
        (
            command(PARKING, "no-such-twin", "updatevehiclecount"),
            "{}".to_owned(),
            404,
            "no twin \"no-such-twin\"",
        ),
        (
            command("no-such-interface", &parking, "x"),
            "{}".to_owned(),
            404,
            "no interface \"no-such-interface\"",
        ),
    ];
    for (url, body, status, detail) in cases {
        let (got, problem) = post(&client, &url, &body).await;
        assert_eq!(got, status, "{url} {body}: {problem}");
        let text = problem["detail"].as_str().unwrap_or_default();
        assert!(text.contains(detail), "{url} {body}: {text}");
    }
    let (status, _) = post(&client, &count, &"x".repeat(300 * 1024)).await;
    assert_eq!(status, 413, "bodies are bounded");
    platform.shutdown(Duration::from_secs(10)).await;
}
