use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::message::{ACTION_ERROR, new_message};

fn msg(bus: &Bus, from: &str, to: &str, action: &str) -> Message {
    new_message(
        bus.next_id(),
        from,
        to,
        action,
        "text/plain",
        b"hi".to_vec(),
    )
}

fn custom(bus: &Bus, name: &str, cap: usize, on_full: OnFull) -> mpsc::Receiver<Delivery> {
    let (tx, rx) = mpsc::channel(cap);
    bus.register(name, Route::new(tx, on_full, RouteKind::Custom))
        .unwrap();
    rx
}

#[tokio::test]
async fn send_reaches_the_named_mailbox() {
    let bus = Bus::new(1024);
    let mut rx = custom(&bus, "a", 4, OnFull::Refuse);
    let id = bus.send(msg(&bus, "test", "a", "go")).await.unwrap();
    let d = rx.recv().await.unwrap();
    assert_eq!(d.msg.id, id);
    assert_eq!(d.msg.action, "go");
}

#[tokio::test]
async fn unknown_destination_names_it_and_the_running_services() {
    let bus = Bus::new(1024);
    let _rx = custom(&bus, "a", 4, OnFull::Refuse);
    let e = bus.send(msg(&bus, "test", "nope", "go")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownDestination);
    assert!(
        e.message.contains("`nope`") && e.message.contains("running: a"),
        "{e}"
    );
}

#[tokio::test]
async fn broadcast_skips_sender_and_internal_routes() {
    let bus = Bus::new(1024);
    let mut a = custom(&bus, "a", 4, OnFull::Refuse);
    let mut b = custom(&bus, "b", 4, OnFull::Refuse);
    let (tx, mut internal) = mpsc::channel(4);
    bus.register("com", Route::new(tx, OnFull::Refuse, RouteKind::Internal))
        .unwrap();
    bus.send(msg(&bus, "a", BROADCAST, "ping")).await.unwrap();
    assert_eq!(b.recv().await.unwrap().msg.action, "ping");
    assert!(a.try_recv().is_err());
    assert!(internal.try_recv().is_err());
}

#[tokio::test]
async fn refuse_policy_fails_fast_when_full() {
    let bus = Bus::new(1024);
    let _rx = custom(&bus, "a", 1, OnFull::Refuse);
    bus.send(msg(&bus, "t", "a", "1")).await.unwrap();
    let e = bus.send(msg(&bus, "t", "a", "2")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::QueueFull);
    assert!(e.message.contains("full (1 messages)"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn block_policy_waits_for_room_then_gives_up() {
    let bus = Bus::new(1024);
    let mut rx = custom(&bus, "a", 1, OnFull::Block(Duration::from_millis(50)));
    bus.send(msg(&bus, "t", "a", "1")).await.unwrap();
    let e = bus.send(msg(&bus, "t", "a", "2")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::QueueFull);
    let waiting = tokio::spawn({
        let bus = bus.clone();
        async move { bus.send(msg(&bus, "t", "a", "3")).await }
    });
    tokio::task::yield_now().await;
    assert_eq!(rx.recv().await.unwrap().msg.action, "1");
    waiting.await.unwrap().unwrap();
    assert_eq!(rx.recv().await.unwrap().msg.action, "3");
}

#[tokio::test]
async fn oversized_payload_is_refused_with_the_limit() {
    let bus = Bus::new(4);
    let _rx = custom(&bus, "a", 1, OnFull::Refuse);
    let e = bus
        .send(msg(&bus, "t", "a", "go").tap_payload(10))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::TooLarge);
    assert!(
        e.message.contains("10 bytes") && e.message.contains("limit of 4"),
        "{e}"
    );
}

trait TapPayload {
    fn tap_payload(self, len: usize) -> Self;
}
impl TapPayload for Message {
    fn tap_payload(mut self, len: usize) -> Self {
        self.payload = vec![0; len];
        self
    }
}

#[tokio::test(start_paused = true)]
async fn call_returns_reply_or_times_out() {
    let bus = Bus::new(1024);
    let mut rx = custom(&bus, "a", 4, OnFull::Refuse);
    let server = tokio::spawn(async move {
        let d = rx.recv().await.unwrap();
        let reply = Reply {
            content_type: "text/plain".into(),
            payload: b"pong".to_vec(),
        };
        assert!(d.answer(Ok(Some(reply))).is_none());
        let _silent = rx.recv().await.unwrap();
        std::future::pending::<()>().await;
    });
    let r = bus
        .call(msg(&bus, "t", "a", "ping"), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(r.payload, b"pong");
    let e = bus
        .call(msg(&bus, "t", "a", "ping"), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Timeout);
    assert!(e.message.contains("within 100 ms"), "{e}");
    server.abort();
}

#[tokio::test]
async fn failure_notice_goes_back_to_a_custom_sender_only() {
    let bus = Bus::new(1024);
    let mut sender = custom(&bus, "s", 4, OnFull::Refuse);
    let failed = msg(&bus, "s", "r", "do");
    let err = BusError::new(ErrorCode::UnknownAction, "`r` has no action `do`");
    bus.report_failure(&failed, "r", &err);
    let notice = sender.recv().await.unwrap();
    assert_eq!(notice.msg.action, ACTION_ERROR);
    assert_eq!(
        notice.msg.correlation_id.as_deref(),
        Some(failed.id.as_str())
    );
    let body: serde_json::Value = serde_json::from_slice(&notice.msg.payload).unwrap();
    assert_eq!(body["code"], "unknown-action");
    // A failed notice is never answered with another notice.
    let notice = Arc::unwrap_or_clone(notice.msg);
    bus.report_failure(&notice, "s", &err);
    assert!(sender.try_recv().is_err());
}
