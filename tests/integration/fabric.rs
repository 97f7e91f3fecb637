//! Services across gateways: real `busbar run` nodes on one real mosquitto. Calls and sends
//! from a service on gw1 to one on gw2 and back, the CLI and the monitor across nodes, an
//! unknown, a stopped and a killed node, the grants; three nodes sharing a group split 3,000
//! messages, and finish them when one is killed mid-stream.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use busbar_tests::admin::AdminNode;
use busbar_tests::mqtt::Mosquitto;
use busbar_tests::{service, until};
use serde_json::{Value, json};

/// The node config of a gateway on the fabric of the mosquitto on `port`.
fn fabric_config(port: u16) -> String {
    format!(
        "[brokers.site]\nhost = \"127.0.0.1\"\nport = {port}\nbackoff_max_ms = 300\n\
         keep_alive_s = 5\n\n[fabric]\nbroker = \"site\"\nresend_ms = 1000\n"
    )
}

fn gateway(port: u16, id: &str, manifest: &str) -> AdminNode {
    let mut node = AdminNode::start_named(id, manifest, &fabric_config(port), &[]);
    node.process.wait_log(1, &["fabric inbox"]);
    node
}

/// `service`/`action` on `node` with a JSON payload; the JSON-RPC result.
async fn act(node: &AdminNode, service: &str, action: &str, params: Value) -> Value {
    let out = node
        .rpc(&json!({"jsonrpc": "2.0", "id": 1, "method": format!("{service}/{action}"), "params": params}))
        .await;
    assert!(out.get("error").is_none(), "{service}/{action}: {out}");
    out["result"].clone()
}

/// gw1's echo calls `destination` (`echo` action `action`) and returns what it got.
async fn call_from(node: &AdminNode, destination: &str, action: &str, timeout_ms: u32) -> Value {
    let req = json!({ "destination": destination, "action": action, "payload": {"hello": 1}, "timeout_ms": timeout_ms });
    act(node, "echo", "call", req).await
}

/// Waits until `from`'s echo reaches `destination`.
async fn reachable(from: &AdminNode, destination: &str) {
    until(&format!("{destination} to answer"), || async {
        let out = call_from(from, destination, "whoami", 2_000).await;
        out.get("ok").is_some().then_some(())
    })
    .await;
}

/// How many round trips with `peer` `node` measured.
async fn round_trips(node: &AdminNode, peer: &str) -> f64 {
    let m = node.metrics().await;
    match m.sample("busbar_fabric_round_trip_seconds", &[("peer", peer)]) {
        prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        other => panic!("not a histogram: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_and_sends_cross_gateways_and_come_back() {
    let mosquitto = Mosquitto::start();
    let gw2 = gateway(
        mosquitto.port,
        "gw2",
        &(service("echo", "echo", "grants.destinations = [\"echo@gw1\"]")
            + &service("seq-receiver", "seq_receiver", "")),
    );
    // seq-sender sends `seq`, which echo does not take: each comes back to it as `$error`.
    let gw1 = gateway(
        mosquitto.port,
        "gw1",
        &(service(
            "echo",
            "echo",
            "grants.destinations = [\"echo@gw2\", \"seq-receiver@gw2\", \"*@gw9\", \"echo@gw3\"]",
        ) + &service(
            "seq-sender",
            "seq_sender",
            "grants.destinations = [\"echo@gw2\"]\n[services.config]\ntarget = \"echo@gw2\"\n\
             count = 3\nperiod_ms = 50\n",
        )),
    );
    reachable(&gw1, "echo@gw2").await;

    // A call there and one back, each seeing the other as `service@node`.
    let out = call_from(&gw1, "echo@gw2", "whoami", 5_000).await;
    assert_eq!(out["ok"]["source"], "echo@gw1", "{out}");
    let out = call_from(&gw1, "echo@gw2", "echo", 5_000).await;
    assert_eq!(out["ok"], json!({"hello": 1}), "{out}");
    let out = call_from(&gw2, "echo@gw1", "whoami", 5_000).await;
    assert_eq!(out["ok"]["source"], "echo@gw2", "{out}");
    let out = call_from(&gw1, "echo@gw2", "nope", 5_000).await;
    assert_eq!(out["error"]["code"], "unknown-action", "{out}");
    let done = gw1.cli(&["call", "nope@gw2", "x"]);
    assert!(!done.status.success(), "{}", done.all());
    assert!(
        done.all().contains("no service named `nope` on node `gw2`"),
        "{}",
        done.all()
    );

    // Sends: each accepted once the fabric has it, each processed there once.
    for n in 0..50 {
        let req =
            json!({ "destination": "seq-receiver@gw2", "action": "seq", "payload": {"n": n} });
        let out = act(&gw1, "echo", "send", req).await;
        assert!(out["id"].is_string(), "{out}");
    }
    until("gw2 to process the 50 sends", || async {
        let r = act(&gw2, "seq-receiver", "report", json!({})).await;
        (r["received"] == 50).then_some(r)
    })
    .await;
    until("gw1's outbox to empty", || async {
        let m = gw1.metrics().await;
        (m.number("busbar_fabric_outbox_messages", &[]) == 0.0).then_some(())
    })
    .await;
    let r = act(&gw2, "seq-receiver", "report", json!({})).await;
    assert_eq!(r["duplicates"], 0, "{r}");

    // The operator's CLI and monitor see across nodes too.
    let mut monitor = gw2.cli_start(&["monitor"]);
    until("gw2's monitor to show a call from gw1", || async {
        let done = gw1.cli(&["call", "echo@gw2", "whoami"]);
        assert!(done.status.success(), "{}", done.all());
        assert!(done.all().contains("admin@gw1"), "{}", done.all());
        monitor
            .stdout()
            .iter()
            .any(|l| l.contains("admin@gw1 → echo:whoami"))
            .then_some(())
    })
    .await;
    monitor.signal("INT");
    assert!(monitor.wait().success());
    assert!(round_trips(&gw1, "gw2").await >= 3.0);
    let status = gw1.get_json("/status").await;
    assert!(
        status["fabric"]["peers"]["gw2"]["sent"].as_u64().unwrap() >= 50,
        "{status}"
    );
    let done = gw1.cli(&["status"]);
    assert!(
        done.stdout.iter().any(|l| l.starts_with("gw2 ")) && done.all().contains("PEER"),
        "{}",
        done.all()
    );

    // A send its service refused comes back to the sender as `$error`, as a local one does.
    until("seq-sender to hear its 3 sends failed", || async {
        let s = sent(&gw1).await;
        (s["sent"] == 3 && s["failed"] == 3).then_some(())
    })
    .await;

    // Slow work is not sent again: gw2 says it is still at it.
    let before = gw2.processed("echo").await;
    let req = json!({ "destination": "echo@gw2", "action": "sleep", "payload": {"ms": 2_500} });
    let out = act(&gw1, "echo", "send", req).await;
    assert!(out["id"].is_string(), "{out}");
    until("gw2 to finish the slow send", || async {
        (gw2.processed("echo").await > before).then_some(())
    })
    .await;
    until("gw1's outbox to empty", || async {
        let m = gw1.metrics().await;
        (m.number("busbar_fabric_outbox_messages", &[]) == 0.0).then_some(())
    })
    .await;
    assert_eq!(gw2.processed("echo").await, before + 1);
    let m = gw1.metrics().await;
    assert_eq!(
        m.number("busbar_fabric_resent_total", &[("peer", "gw2")]),
        0.0
    );

    // The grants: an address outside them is refused before anything is sent.
    let out = call_from(&gw1, "seq-receiver@gw3", "report", 5_000).await;
    assert_eq!(out["error"]["code"], "not-permitted", "{out}");
    let out = call_from(&gw1, "echo@*", "whoami", 5_000).await;
    assert_eq!(out["error"]["code"], "unknown-destination", "{out}");
    let out = call_from(&gw1, "orchestrator@gw2", "status", 5_000).await;
    assert_eq!(out["error"]["code"], "unknown-destination", "{out}");

    // A node nobody runs: `unavailable` at once, not after the timeout.
    let began = Instant::now();
    let out = call_from(&gw1, "echo@gw9", "whoami", 20_000).await;
    assert_eq!(out["error"]["code"], "unavailable", "{out}");
    assert!(
        out["error"]["message"].as_str().unwrap().contains("gw9"),
        "{out}"
    );
    let req = json!({ "destination": "echo@gw9", "action": "x", "payload": {} });
    let out = act(&gw1, "echo", "send", req).await;
    assert_eq!(out["error"]["code"], "unavailable", "{out}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );

    // A stopped node: `unavailable`; a killed one (the broker has not noticed yet): a call
    // times out at its own timeout, never hangs.
    let gw3 = gateway(mosquitto.port, "gw3", &service("echo", "echo", ""));
    reachable(&gw1, "echo@gw3").await;
    gw3.process.signal("KILL");
    let began = Instant::now();
    let out = call_from(&gw1, "echo@gw3", "whoami", 1_000).await;
    let code = out["error"]["code"].as_str().unwrap_or_default().to_owned();
    assert!(code == "timeout" || code == "unavailable", "{out}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    let mut gw2 = gw2;
    gw2.process.signal("TERM");
    assert!(gw2.process.wait().success());
    until("a call to the stopped gw2 to be unavailable", || async {
        let out = call_from(&gw1, "echo@gw2", "whoami", 5_000).await;
        (out["error"]["code"] == "unavailable").then_some(())
    })
    .await;
}

/// Every number `node`'s seq-receiver saw.
async fn numbers(node: &AdminNode) -> BTreeSet<u64> {
    let out = act(node, "seq-receiver", "ranges", json!({})).await;
    let mut all = BTreeSet::new();
    for r in out["ranges"].as_array().unwrap() {
        let (a, b) = (r[0].as_u64().unwrap(), r[1].as_u64().unwrap());
        all.extend(a..=b);
    }
    all
}

fn worker() -> String {
    service("seq-receiver", "seq_receiver", "shared = \"workers\"")
}

/// A sender of `count` numbers to the group, `batch` every `period_ms`.
fn sender(count: u32, batch: u32, period_ms: u32) -> String {
    service(
        "seq-sender",
        "seq_sender",
        &format!(
            "grants.destinations = [\"seq-receiver@workers\"]\n[services.config]\n\
             target = \"seq-receiver@workers\"\ncount = {count}\nbatch = {batch}\n\
             period_ms = {period_ms}\n"
        ),
    )
}

async fn sent(node: &AdminNode) -> Value {
    act(node, "seq-sender", "sent", json!({})).await
}

#[tokio::test(flavor = "multi_thread")]
async fn three_gateways_in_a_group_split_the_work_once_each() {
    let mosquitto = Mosquitto::start();
    let gw2 = gateway(mosquitto.port, "gw2", &worker());
    let gw3 = gateway(mosquitto.port, "gw3", &worker());
    let gw1 = gateway(mosquitto.port, "gw1", &(worker() + &sender(3_000, 20, 10)));
    until("the sender to have 3,000 accepted", || async {
        let s = sent(&gw1).await;
        (s["sent"] == 3_000).then_some(())
    })
    .await;
    let nodes = [&gw1, &gw2, &gw3];
    let sets = until("the group to process all 3,000", || async {
        let mut sets = Vec::new();
        for n in nodes {
            sets.push(numbers(n).await);
        }
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        (total >= 3_000).then_some(sets)
    })
    .await;
    let mut all = BTreeSet::new();
    for (i, set) in sets.iter().enumerate() {
        assert!(!set.is_empty(), "gw{} got none of the work", i + 1);
        for n in set {
            assert!(all.insert(*n), "{n} was processed twice");
        }
    }
    assert_eq!(all, (0..3_000).collect::<BTreeSet<u64>>());
    assert_eq!(sent(&gw1).await["failed"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_member_leaves_its_share_to_the_others_and_nothing_is_lost() {
    let mosquitto = Mosquitto::start();
    let gw2 = gateway(mosquitto.port, "gw2", &worker());
    let gw3 = gateway(mosquitto.port, "gw3", &worker());
    let gw1 = gateway(mosquitto.port, "gw1", &(worker() + &sender(3_000, 5, 10)));
    until("gw3 to be mid-stream", || async {
        (numbers(&gw3).await.len() >= 200).then_some(())
    })
    .await;
    // gw3 hangs (its connection stays open, so the broker keeps giving it its share), then
    // dies: what it was given and never processed must reach the others.
    gw3.process.signal("STOP");
    let stopped_at = sent(&gw1).await["sent"].as_u64().unwrap();
    until("the stream to go on past the hung gw3", || async {
        let now = sent(&gw1).await["sent"].as_u64().unwrap();
        (now >= stopped_at + 150).then_some(())
    })
    .await;
    gw3.process.signal("KILL");
    let killed_at = sent(&gw1).await["sent"].as_u64().unwrap();
    assert!(killed_at < 3_000, "the stream ended before the kill");
    until("the sender to have 3,000 accepted", || async {
        (sent(&gw1).await["sent"] == 3_000).then_some(())
    })
    .await;
    // Every send was confirmed processed by one member: the outbox is empty.
    until("gw1's outbox to empty", || async {
        let m = gw1.metrics().await;
        (m.number("busbar_fabric_outbox_messages", &[]) == 0.0).then_some(())
    })
    .await;
    let mut survivors = numbers(&gw1).await;
    survivors.extend(numbers(&gw2).await);
    let missing: Vec<u64> = (0..3_000).filter(|n| !survivors.contains(n)).collect();
    // What the survivors lack is what gw3 processed and confirmed before it died.
    let confirmed_by_gw3 = round_trips(&gw1, "gw3").await as usize;
    assert!(
        missing.len() <= confirmed_by_gw3,
        "{} numbers missing, gw3 confirmed only {confirmed_by_gw3}: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let m = gw1.metrics().await;
    assert!(m.number("busbar_fabric_resent_total", &[("peer", "workers")]) >= 1.0);
}

/// Starts `node`'s `busbar run` again in its folder (after it was killed).
fn restart(node: &mut AdminNode) {
    let args = [
        "run",
        "--manifest",
        "manifest.toml",
        "--config",
        "node.toml",
    ];
    node.process = busbar_tests::process::Busbar::start(&node.dir, &args);
    node.process.wait_log(1, &["admin API listening"]);
    node.process.wait_log(1, &["fabric inbox"]);
    let state = node.state_dir();
    node.url = std::fs::read_to_string(state.join("admin-url")).unwrap();
    node.token = std::fs::read_to_string(state.join("admin-token")).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_a_killed_sender_accepted_reach_a_receiver_that_died_too() {
    let mosquitto = Mosquitto::start();
    let mut gw2 = gateway(
        mosquitto.port,
        "gw2",
        &service("seq-receiver", "seq_receiver", ""),
    );
    let mut gw1 = gateway(
        mosquitto.port,
        "gw1",
        &service(
            "echo",
            "echo",
            "grants.destinations = [\"seq-receiver@gw2\"]",
        ),
    );
    let send =
        |n: u64| json!({ "destination": "seq-receiver@gw2", "action": "seq", "payload": {"n": n} });
    until("gw2 to take a send", || async {
        let out = act(&gw1, "echo", "send", send(0)).await;
        out["id"].is_string().then_some(())
    })
    .await;
    // gw2 hangs: the broker still takes sends for it, and gw1 accepts them; then both die.
    gw2.process.signal("STOP");
    for n in 1..=20 {
        let out = act(&gw1, "echo", "send", send(n)).await;
        assert!(out["id"].is_string(), "{n}: {out}");
    }
    gw1.process.signal("KILL");
    gw2.process.signal("KILL");
    gw1.process.wait();
    gw2.process.wait();
    // Both come back, the sender first: it sends again what gw2 never said it processed,
    // and keeps it while gw2 is not there yet.
    restart(&mut gw1);
    until("gw1 to find gw2 gone", || async {
        let m = gw1.metrics().await;
        (m.number("busbar_fabric_outbox_messages", &[]) >= 20.0).then_some(())
    })
    .await;
    restart(&mut gw2);
    let seen = until("gw2 to get the 20 sends back", || async {
        let seen = numbers(&gw2).await;
        (1..=20).all(|n| seen.contains(&n)).then_some(seen)
    })
    .await;
    assert!(seen.len() <= 21, "{seen:?}");
    until("gw1's outbox to empty", || async {
        let m = gw1.metrics().await;
        (m.number("busbar_fabric_outbox_messages", &[]) == 0.0).then_some(())
    })
    .await;
}

#[test]
fn check_and_run_refuse_a_shared_service_without_a_fabric_and_a_bad_fabric() {
    let dir = tempfile::tempdir().unwrap();
    let node = "node_id = \"gw\"\ndata_dir = \"state\"\ncache_dir = \"cache\"\n\
                [brokers.site]\nhost = \"127.0.0.1\"\nport = 1\n";
    for (config, words) in [
        (node.to_owned(), "needs a fabric, and this node is on none"),
        (
            format!("{node}[fabric]\nbroker = \"cloud\"\n"),
            "[fabric] broker: `cloud` is not a broker connection of this node",
        ),
        (
            format!("{node}[fabric]\nbroker = \"site\"\nprefix = \"a/#\"\n"),
            "[fabric] prefix `a/#`",
        ),
    ] {
        std::fs::write(dir.path().join("node.toml"), config).unwrap();
        std::fs::write(dir.path().join("services.toml"), worker()).unwrap();
        for command in ["check", "run"] {
            let done = busbar_tests::process::Busbar::run(
                dir.path(),
                &[
                    command,
                    "--manifest",
                    "services.toml",
                    "--config",
                    "node.toml",
                ],
            );
            let text = done.all();
            assert!(!done.status.success(), "{command}: {text}");
            assert!(text.contains(words), "{command}: {text}");
        }
    }
}

/// The broker ACL README's "Across gateways" gives a fleet: each node signs in with its node
/// id, reads its own inbox, sends only in its own name, and reads the groups it is in.
const FABRIC_ACL: &str = "\
pattern read busbar/fabric/%u/#
pattern write busbar/fabric/+/to/+/%u
pattern write busbar/fabric/+/reply

user gw2
topic read busbar/fabric/workers/#
";

/// A client signed in as `user` that subscribes to `filters`, then publishes QoS 1 on
/// `topic` (if any): what it received and the broker's answer to the publish (its PUBACK
/// reason, or the connection's end), collected.
struct Rogue {
    received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    puback: tokio::sync::oneshot::Receiver<String>,
    _client: rumqttc::v5::AsyncClient,
}

impl Rogue {
    async fn start(
        port: u16,
        user: &str,
        password: &str,
        filters: &[&str],
        topic: Option<&str>,
    ) -> Self {
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::{AsyncClient, Event, MqttOptions};
        let mut o = MqttOptions::new(format!("rogue-{user}-{}", filters.len()), "127.0.0.1", port);
        o.set_credentials(user, password);
        let (client, mut events) = AsyncClient::new(o, 16);
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, puback) = tokio::sync::oneshot::channel();
        let (subacks_tx, mut subacks) = tokio::sync::mpsc::unbounded_channel();
        let got = received.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            loop {
                let e = match events.poll().await {
                    Ok(e) => e,
                    Err(e) => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(format!("the connection ended: {e}"));
                        }
                        return;
                    }
                };
                match e {
                    Event::Incoming(Packet::Publish(p)) => got
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&p.topic).into_owned()),
                    Event::Incoming(Packet::PubAck(a)) => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(format!("{:?}", a.reason));
                        }
                    }
                    Event::Incoming(Packet::SubAck(_)) => {
                        let _ = subacks_tx.send(());
                    }
                    _ => {}
                }
            }
        });
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).await.unwrap();
            tokio::time::timeout(busbar_tests::guard(), subacks.recv())
                .await
                .unwrap();
        }
        if let Some(topic) = topic {
            client
                .publish(topic, QoS::AtLeastOnce, false, "forged")
                .await
                .unwrap();
        }
        Self {
            received,
            puback,
            _client: client,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_documented_broker_acl_holds_nodes_to_their_own_inbox_and_name() {
    let mosquitto = Mosquitto::start_secured(&[("gw1", "pw-gw1"), ("gw2", "pw-gw2")], FABRIC_ACL);
    let with_user = |id: &str| {
        fabric_config(mosquitto.port).replace(
            "keep_alive_s = 5\n",
            &format!("keep_alive_s = 5\nusername = \"{id}\"\npassword = \"pw-{id}\"\n"),
        )
    };
    let mut gw2 = AdminNode::start_named(
        "gw2",
        &(service("echo", "echo", "") + &worker()),
        &with_user("gw2"),
        &[],
    );
    gw2.process.wait_log(1, &["fabric inbox"]);
    let mut gw1 = AdminNode::start_named(
        "gw1",
        &service(
            "echo",
            "echo",
            "grants.destinations = [\"echo@gw2\", \"seq-receiver@workers\"]",
        ),
        &with_user("gw1"),
        &[],
    );
    gw1.process.wait_log(1, &["fabric inbox"]);
    reachable(&gw1, "echo@gw2").await;
    let out = call_from(&gw1, "echo@gw2", "whoami", 5_000).await;
    assert_eq!(out["ok"]["source"], "echo@gw1", "{out}");
    // The group's subscription is made as gw2's service starts: sends wait until it is.
    until("the group to take a send", || async {
        let req =
            json!({ "destination": "seq-receiver@workers", "action": "seq", "payload": {"n": 7} });
        let out = act(&gw1, "echo", "send", req).await;
        out["id"].is_string().then_some(())
    })
    .await;
    until("gw2's group member to get it", || async {
        numbers(&gw2).await.contains(&7).then_some(())
    })
    .await;
    // gw1's credentials read neither gw2's inbox nor its group, nor send in gw3's name
    // (mosquitto answers a refused publish with PUBACK `not authorized`, or ends the
    // connection).
    let reader = Rogue::start(
        mosquitto.port,
        "gw1",
        "pw-gw1",
        &[
            "busbar/fabric/gw2/#",
            "$share/workers/busbar/fabric/workers/to/seq-receiver/+",
        ],
        None,
    )
    .await;
    let forger = Rogue::start(
        mosquitto.port,
        "gw1",
        "pw-gw1",
        &[],
        Some("busbar/fabric/gw2/to/echo/gw3"),
    )
    .await;
    let answer = tokio::time::timeout(busbar_tests::guard(), forger.puback)
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.contains("NotAuthorized") || answer.contains("connection ended"),
        "{answer}"
    );
    for n in 8..12 {
        let out = call_from(&gw1, "echo@gw2", "whoami", 5_000).await;
        assert_eq!(out["ok"]["source"], "echo@gw1", "{out}");
        let req =
            json!({ "destination": "seq-receiver@workers", "action": "seq", "payload": {"n": n} });
        let out = act(&gw1, "echo", "send", req).await;
        assert!(out["id"].is_string(), "{out}");
    }
    until("gw2's group member to get them all", || async {
        let seen = numbers(&gw2).await;
        (8..12).all(|n| seen.contains(&n)).then_some(())
    })
    .await;
    let leaked = reader.received.lock().unwrap().clone();
    assert!(leaked.is_empty(), "gw1's credentials read {leaked:?}");
    for node in [&mut gw1, &mut gw2] {
        node.process.signal("TERM");
        assert!(node.process.wait().success());
    }
}
