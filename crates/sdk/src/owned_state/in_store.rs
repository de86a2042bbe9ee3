//! [`super::OwnedStates`] on replicas that nothing partitions (Knative on a cluster): the
//! state lives in the event store, not in memory, and every update is a read-modify-write
//! guarded by the state's version.
//!
//! An update reads the instance's latest state with its version, applies the event, and writes
//! the result as a `ktwin.store.<interface>` event with `If-Match: <version>`: the store commits
//! it only if no event was stored for the instance since the read, else answers `412` and the
//! update reads and applies again (at most [`ATTEMPTS`] times, then the event is handed back for
//! redelivery). The write's id is derived from the applied event's, so writing it again is a
//! no-op. The state is kept in the instance's stored state under [`OWNED_MEMBER`], with the ids
//! of the events applied last and what their updates answered, so that any replica recognises a
//! redelivered event and answers what its first application did.
//!
//! Stored form, one member of the instance's state (the Python SDK reads and writes the same):
//! `"ktwinOwned": [{"state": <state>, "applied": [[<event id>, <result>], …]}]`. The array
//! around it makes the event store's merge replace the member whole (a JSON merge patch merges
//! objects member by member, so a member the state dropped would otherwise survive).

use chrono::{DateTime, TimeDelta, Utc};
use cloudevents::{AttributesReader, AttributesWriter, Event};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::context::TwinContext;
use crate::emit::store_event;
use crate::error::HandlerError;
use crate::event::data_json;
use crate::json::from_json;
use crate::state::{ConditionalWrite, VersionedState};

/// Member of an instance's stored state that holds the state an `OwnedStates` owns.
pub const OWNED_MEMBER: &str = "ktwinOwned";

/// Reads and conditional writes per update before the event is handed back for redelivery:
/// each retry means another replica stored an event for the instance in between.
pub(super) const ATTEMPTS: usize = 8;

/// The owned state of an instance with the events applied last and their results.
#[derive(Serialize, Deserialize)]
#[serde(bound(deserialize = "T: DeserializeOwned, R: DeserializeOwned"))]
struct Owned<T, R> {
    state: Option<T>,
    applied: Vec<(String, R)>,
}

/// What an update read: the owned state, and the version and time of the instance's latest
/// state (none when nothing is stored).
struct Read<T, R> {
    owned: Owned<T, R>,
    version: Option<String>,
    time: Option<DateTime<Utc>>,
}

/// Runs `update` on the state of `interface`/`instance` kept in the event store, applying the
/// event `event_id` once whatever replica it reaches and however often (see the module).
pub(super) async fn update_in_store<T, R>(
    ctx: &TwinContext,
    (interface, instance): (&str, &str),
    event_id: &str,
    remembered: usize,
    update: &mut impl FnMut(Option<T>) -> Result<(T, R), HandlerError>,
) -> Result<R, HandlerError>
where
    T: DeserializeOwned + Serialize,
    R: DeserializeOwned + Serialize + Clone,
{
    for _ in 0..ATTEMPTS {
        let latest = ctx.states().latest_versioned(interface, instance).await?;
        let read = read_owned::<T, R>(latest, interface, instance)?;
        if let Some((_, result)) = read.owned.applied.iter().find(|(id, _)| id == event_id) {
            return Ok(result.clone());
        }
        let (next, result) = update(read.owned.state)?;
        let mut applied = read.owned.applied;
        applied.push((event_id.to_owned(), result.clone()));
        let excess = applied.len().saturating_sub(remembered.max(1));
        applied.drain(..excess);
        let owned = Owned {
            state: Some(next),
            applied,
        };
        let time = write_time(ctx.now(), read.time);
        let event = owned_event((interface, instance), event_id, time, &owned)?;
        match ctx
            .states()
            .write_if(event, read.version.as_deref())
            .await?
        {
            ConditionalWrite::Written => return Ok(result),
            ConditionalWrite::Conflict => continue,
        }
    }
    Err(HandlerError::Unavailable(format!(
        "the state of {interface}/{instance} changed under each of {ATTEMPTS} attempts to apply \
         event {event_id} (other replicas are updating it): deliver the event again"
    )))
}

/// The owned state in `latest`: its [`OWNED_MEMBER`], or, before any replica wrote one, the
/// whole stored state (what the handler's own events stored) with no event applied yet.
fn read_owned<T: DeserializeOwned, R: DeserializeOwned>(
    latest: Option<VersionedState>,
    interface: &str,
    instance: &str,
) -> Result<Read<T, R>, HandlerError> {
    let Some(latest) = latest else {
        return Ok(Read {
            owned: Owned {
                state: None,
                applied: Vec::new(),
            },
            version: None,
            time: None,
        });
    };
    let invalid = |err: &dyn std::fmt::Display| {
        HandlerError::Failed(format!(
            "stored state of {interface}/{instance} is not a valid {}: {err}",
            std::any::type_name::<T>()
        ))
    };
    let mut data = data_json(&latest.event).map_err(|e| invalid(&e))?;
    let owned = match data.get_mut(OWNED_MEMBER).map(Value::take) {
        Some(Value::Array(mut wrapped)) if wrapped.len() == 1 => {
            serde_json::from_value(wrapped.remove(0)).map_err(|e| invalid(&e))?
        }
        Some(other) => return Err(invalid(&format!("member {OWNED_MEMBER} is {other}"))),
        None => Owned {
            state: Some(from_json(data).map_err(|e| invalid(&e))?),
            applied: Vec::new(),
        },
    };
    Ok(Read {
        owned,
        version: Some(latest.version),
        time: latest.event.time().copied(),
    })
}

/// The time of a write: now, but after the latest stored event, so that the store, which
/// orders an instance's events by time, merges the write last even when this replica's clock
/// is behind the one that wrote before.
fn write_time(now: DateTime<Utc>, latest: Option<DateTime<Utc>>) -> DateTime<Utc> {
    match latest {
        Some(latest) if latest >= now => latest + TimeDelta::microseconds(1),
        _ => now,
    }
}

/// The store event that writes `owned` for `instance`, with an id derived from the applied
/// event's: the same application, written again, is the same event.
fn owned_event<T: Serialize, R: Serialize>(
    (interface, instance): (&str, &str),
    event_id: &str,
    time: DateTime<Utc>,
    owned: &Owned<T, R>,
) -> Result<Event, HandlerError> {
    let mut data = serde_json::Map::new();
    let owned = serde_json::to_value(owned)
        .map_err(|e| HandlerError::Failed(format!("owned state does not serialize: {e}")))?;
    data.insert(OWNED_MEMBER.to_owned(), Value::Array(vec![owned]));
    let mut event = store_event(interface, instance, data)?;
    let mut digest = Sha256::new();
    for part in ["ktwin.owned", interface, instance, event_id] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    let hash = digest.finalize();
    let id = hash.first_chunk::<16>().expect("SHA-256 has 32 bytes");
    event.set_id(uuid::Uuid::from_bytes(*id).hyphenated().to_string());
    event.set_time(Some(time));
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_come_after_the_latest_stored_event() {
        let now = DateTime::from_timestamp_micros(1_000).unwrap();
        let ahead = DateTime::from_timestamp_micros(5_000).unwrap();
        assert_eq!(write_time(now, None), now);
        assert_eq!(write_time(ahead, Some(now)), ahead);
        assert_eq!(
            write_time(now, Some(ahead)),
            DateTime::from_timestamp_micros(5_001).unwrap()
        );
        assert_eq!(
            write_time(now, Some(now)),
            DateTime::from_timestamp_micros(1_001).unwrap()
        );
    }

    #[test]
    fn the_same_application_is_the_same_event() {
        let owned = Owned {
            state: Some(3),
            applied: vec![("e1".to_owned(), 3)],
        };
        let time = DateTime::from_timestamp_micros(7).unwrap();
        let a = owned_event(("p", "p1"), "e1", time, &owned).unwrap();
        let b = owned_event(("p", "p1"), "e1", time, &owned).unwrap();
        let other = owned_event(("p", "p1"), "e2", time, &owned).unwrap();
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), other.id());
        assert_eq!(a.ty(), "ktwin.store.p");
        assert_eq!(
            data_json(&a).unwrap(),
            serde_json::json!({"ktwinOwned": [{"state": 3, "applied": [["e1", 3]]}]})
        );
    }
}
