//! The store on its own: retention, rates, trouble, forgetting, and the import of the JSON
//! records earlier hubs wrote.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::protocol::{EventKind, NodeEvent, NodeStatus, ServiceStatus, test_service};
use crate::store::schema::MAX_EVENTS;
use crate::store::{Store, Write, read};

fn event(n: u64, kind: EventKind) -> NodeEvent {
    NodeEvent {
        at_ms: n,
        service: "s".into(),
        kind,
        sha256: test_service("s", 'a').sha256,
        detail: format!("event {n}"),
    }
}

fn status(processed: u64, events: Vec<NodeEvent>) -> NodeStatus {
    NodeStatus {
        services: vec![ServiceStatus {
            name: "s".into(),
            sha256: Some(test_service("s", 'a').sha256),
            state: "running".into(),
            restarts: 0,
            processed: Some(processed),
        }],
        events,
    }
}

/// A store in `dir` with its writer running.
fn open(dir: &std::path::Path, cancel: &CancellationToken) -> Arc<Store> {
    let (store, writer) = Store::open(dir, cancel.clone()).unwrap();
    tokio::spawn(writer);
    Arc::new(store)
}

#[tokio::test]
async fn events_are_kept_up_to_their_bound_and_trouble_follows_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let store = open(dir.path(), &cancel);
    let node = || "gw1".to_owned();
    let first: Vec<_> = (0..150).map(|n| event(n, EventKind::Swapped)).collect();
    let mut second: Vec<_> = (150..299).map(|n| event(n, EventKind::Swapped)).collect();
    second.push(event(299, EventKind::RolledBack));
    for events in [first, second] {
        store
            .write(Write::Status {
                node: node(),
                status: status(0, events),
            })
            .await
            .unwrap();
    }
    let (stored, lights) = store
        .read(|c| Ok((read::node(c, "gw1", 1000)?, read::lights(c)?)))
        .await
        .unwrap();
    let stored = stored.unwrap();
    assert_eq!(stored.events.len() as i64, MAX_EVENTS);
    assert_eq!(stored.events[0].at_ms, 300 - MAX_EVENTS as u64);
    assert_eq!(stored.events.last().unwrap().kind, EventKind::RolledBack);
    assert!(lights["gw1"].trouble);
    // A later good swap of the same service clears it.
    store
        .write(Write::Status {
            node: node(),
            status: status(0, vec![event(300, EventKind::Swapped)]),
        })
        .await
        .unwrap();
    let lights = store.read(read::lights).await.unwrap();
    assert!(!lights["gw1"].trouble);
    cancel.cancel();
}

#[tokio::test]
async fn rates_come_from_the_counters_and_forgotten_nodes_go() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let store = open(dir.path(), &cancel);
    for processed in [100, 100_000] {
        store
            .write(Write::Status {
                node: "gw1".into(),
                status: status(processed, vec![]),
            })
            .await
            .unwrap();
        // Two reports at least a millisecond apart.
        let before = busbar_base::time::unix_ms();
        while busbar_base::time::unix_ms() == before {
            tokio::task::yield_now().await;
        }
    }
    let (stored, rates) = store
        .read(|c| Ok((read::node(c, "gw1", 0)?.unwrap(), read::rates(c, "gw1")?)))
        .await
        .unwrap();
    assert!(stored.messages_per_s.unwrap() > 0.0, "{stored:?}");
    assert_eq!(rates.len(), 1, "{rates:?}");
    assert_eq!(stored.services.unwrap()[0].processed, Some(100_000));
    store
        .write(Write::Forget(vec!["gw1".into()]))
        .await
        .unwrap();
    assert!(
        store
            .read(|c| read::node(c, "gw1", 0))
            .await
            .unwrap()
            .is_none()
    );
    cancel.cancel();
}

#[tokio::test]
async fn json_records_of_earlier_hubs_are_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("nodes")).unwrap();
    let record = serde_json::json!({
        "identity": null,
        "last_seen_ms": 1234,
        "status": status(7, vec![]),
        "events": [event(1, EventKind::Refused)],
    });
    std::fs::write(dir.path().join("nodes/gw1.json"), record.to_string()).unwrap();
    std::fs::write(dir.path().join("nodes/bad.json"), "{not json").unwrap();
    let cancel = CancellationToken::new();
    let store = open(dir.path(), &cancel);
    let stored = store
        .read(|c| read::node(c, "gw1", 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.last_seen_ms, Some(1234));
    assert_eq!(stored.events.len(), 1);
    assert_eq!(stored.services.unwrap()[0].name, "s");
    cancel.cancel();
    drop(store);
    // Opened again, nothing is imported twice.
    std::fs::write(dir.path().join("nodes/gw2.json"), record.to_string()).unwrap();
    let cancel = CancellationToken::new();
    let store = open(dir.path(), &cancel);
    assert!(
        store
            .read(|c| read::node(c, "gw2", 10))
            .await
            .unwrap()
            .is_none()
    );
    cancel.cancel();
}
