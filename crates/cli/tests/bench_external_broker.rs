//! `ktwin bench e2e --mqtt URL --broker-pid PID` (issue 23: brokers compared side by side):
//! the platform and the simulated devices use the machine's Mosquitto instead of the embedded
//! broker, nothing is lost, and Mosquitto's CPU is reported as part of the platform's.

use ktwin_runtime::bench::{BenchE2eArgs, Format, e2e};

/// The local Mosquitto's process id, read from `/proc` (scripts/services.sh starts it).
fn mosquitto_pid() -> u32 {
    std::fs::read_dir("/proc")
        .expect("/proc lists processes")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "mosquitto")
        })
        .expect("a local Mosquitto runs (scripts/services.sh starts it)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_runs_on_an_external_broker_whose_cpu_counts() {
    let (host, port) = ktwin_testkit::servers::host_port(&ktwin_testkit::servers::mqtt_addr());
    let mosquitto = format!("mqtt://{host}:{port}");
    let args = BenchE2eArgs {
        project_dir: ktwin_testkit::example_project(),
        neighborhoods: 1,
        duration: 4,
        warmup: 3,
        speedup: 1.0,
        drain_deadline: 60,
        mosquitto: mosquitto.clone(),
        processes: false,
        max_replicas: 2,
        mqtt: Some(mosquitto),
        broker_pid: Some(mosquitto_pid()),
        trace: ktwin_service::cli::TraceArgs {
            sampler: ktwin_events::trace::TraceSampler::DEFAULT,
        },
        format: Format::Json,
    };
    let report = e2e(&args, ktwin::built_in_handlers())
        .await
        .expect("the bench runs");
    eprintln!("{}", serde_json::to_string(&report).unwrap());
    assert!(
        report.tally.sent > 0,
        "the devices sent nothing: {report:?}"
    );
    assert_eq!(report.tally.lost, 0, "{report:?}");
    assert!(report.device_msgs_per_s > 0.0, "{report:?}");
    // A few hundred messages cost Mosquitto less than one 10 ms tick of CPU accounting, so
    // only the bound is checked here; that the process is counted is `bench::tests::
    // an_external_process_is_counted`.
    let broker = report
        .external_broker_cpu_percent
        .expect("the external broker's CPU is reported");
    assert!(
        (0.0..=report.cpu_percent).contains(&broker),
        "Mosquitto's CPU is part of the platform's: {report:?}"
    );
}

#[tokio::test]
async fn a_broker_pid_that_names_no_process_is_refused() {
    let args = BenchE2eArgs {
        project_dir: ktwin_testkit::example_project(),
        neighborhoods: 1,
        duration: 1,
        warmup: 1,
        speedup: 1.0,
        drain_deadline: 1,
        mosquitto: "mqtt://127.0.0.1:1".to_owned(),
        processes: false,
        max_replicas: 1,
        mqtt: Some("mqtt://127.0.0.1:1".to_owned()),
        broker_pid: Some(u32::MAX),
        trace: ktwin_service::cli::TraceArgs {
            sampler: ktwin_events::trace::TraceSampler::DEFAULT,
        },
        format: Format::Json,
    };
    let err = e2e(&args, ktwin::built_in_handlers())
        .await
        .expect_err("no process has that id");
    assert!(err.to_string().contains("--broker-pid"), "{err}");
}
