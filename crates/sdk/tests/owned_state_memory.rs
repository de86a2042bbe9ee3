//! `OwnedStates` keeps its memory within `OwnedLimits::max_bytes` as the allocator counts it,
//! whatever instance names and event ids come from the wire: every allocation of this test
//! binary goes through a counting allocator, and the states of many instances, some with a
//! full window of remembered events, must not take more than the bound (with a small margin:
//! the maps' buckets and nodes are counted by estimate). Before its bytes counted the maps,
//! the slots and the buffers of remembered events, a 4 MiB bound let it take 42 MB.

use std::alloc::System;
use std::sync::Arc;

use cap::Cap;
use ktwin_sdk::{HandlerError, MemoryStates, OwnedLimits, OwnedStates, StaticGraph, TwinContext};
use ktwin_testkit::counter::Count;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

fn increment(previous: Option<Count>) -> Result<(Count, u64), HandlerError> {
    let n = previous.map_or(0, |c| c.n) + 1;
    Ok((Count { n }, n))
}

const MAX_BYTES: usize = 4 * 1024 * 1024;

#[tokio::test(flavor = "current_thread")]
async fn owned_states_stay_within_their_bound_as_the_allocator_counts() {
    let ctx = TwinContext::in_memory(StaticGraph::default(), Arc::new(MemoryStates::new()));
    let limits = OwnedLimits {
        max_bytes: MAX_BYTES,
        remembered_events: 64,
    };
    let before = ALLOCATOR.allocated();
    let owned = OwnedStates::<Count>::with_limits(limits);
    // Busy instances: each fills its window of remembered events, and more.
    for instance in 0..300 {
        let name = format!("streetlight-{instance:05}");
        for event in 0..100 {
            let id = format!("{name}-event-{event:06}");
            owned
                .update(&ctx, "streetlight", &name, &id, increment)
                .await
                .unwrap();
        }
    }
    // Then many instances seen once each, as names a stranger makes up would be.
    for instance in 0..60_000 {
        let name = format!("made-up-instance-{instance:06}");
        let id = format!("{name}-event");
        owned
            .update(&ctx, "streetlight", &name, &id, increment)
            .await
            .unwrap();
    }
    let taken = ALLOCATOR.allocated().saturating_sub(before);
    eprintln!(
        "{} instances kept: {taken} bytes of heap, {} counted, bound {MAX_BYTES}",
        owned.instances(),
        owned.bytes()
    );
    assert!(
        owned.bytes() <= MAX_BYTES,
        "counted {} bytes",
        owned.bytes()
    );
    assert!(
        owned.instances() > 1_000,
        "{} instances kept",
        owned.instances()
    );
    // A twentieth above the bound: the maps' buckets and nodes are counted by estimate.
    let allowed = MAX_BYTES + MAX_BYTES / 20;
    assert!(
        taken <= allowed,
        "OwnedStates took {taken} bytes of heap for {} instances, counting {} (bound {MAX_BYTES})",
        owned.instances(),
        owned.bytes()
    );
}
