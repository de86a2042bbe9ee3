//! A short soak (issue 18): the smart-city scenario under `ktwin up`'s platform for a minute,
//! through one round of every fault — the store refusing commits for 10 s, the embedded
//! broker's link stalled for 10 s, a service replica killed, a burst of malformed and oversized
//! device messages. Nothing a device got its acknowledgement for may be lost or stored twice,
//! and every bad message must become a dead letter. The 30-minute run's figures are in
//! docs/benchmarks.md ("Soak").

use ktwin_runtime::bench::Format;
use ktwin_runtime::bench::soak::{BenchSoakArgs, soak};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_through_every_fault_loses_nothing() {
    let args = BenchSoakArgs {
        project_dir: ktwin_testkit::example_project(),
        // Two neighborhoods keep a debug build ahead of the load.
        neighborhoods: 2,
        minutes: 1.0,
        fault_round: 60,
        outage: 10,
        victim: "ngsi-ld-city-airqualityobserved".to_owned(),
        restart: 2,
        max_replicas: 4,
        format: Format::Json,
    };
    let report = soak(&args, ktwin::built_in_handlers())
        .await
        .expect("the soak runs");
    eprintln!("{}", serde_json::to_string(&report).unwrap());
    for fault in [
        "store_outage",
        "link_stall",
        "replica_kill",
        "bad_message_burst",
    ] {
        assert_eq!(report.faults.get(fault), Some(&1), "{fault}: {report:?}");
    }
    assert!(report.sent > 0, "the devices sent nothing: {report:?}");
    assert!(
        report.refused_commits > 0,
        "the store outage refused no commit, so it tested nothing: {report:?}"
    );
    assert_eq!(report.lost, 0, "acknowledged messages lost: {report:?}");
    assert_eq!(report.duplicates, 0, "messages stored twice: {report:?}");
    assert_eq!(report.link_dropped, 0, "{report:?}");
    assert!(
        report.dead_letters >= report.bad_sent && report.bad_sent > 0,
        "every malformed or oversized message is a dead letter: {report:?}"
    );
}
