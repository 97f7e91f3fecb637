//! A test-side MQTT 5 client on a field broker: publishes with user properties and response
//! topics, and records what it receives with its properties.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

use crate::guard;

/// One publish the field client received.
#[derive(Debug, Clone)]
pub struct Got {
    /// Its topic.
    pub topic: String,
    /// Its payload as text.
    pub payload: String,
    /// Whether it came as a retained value.
    pub retain: bool,
    /// Its MQTT 5 user properties.
    pub properties: Vec<(String, String)>,
    /// Its MQTT 5 content type.
    pub content_type: Option<String>,
}

/// A device, or any other client, on the broker.
#[derive(Debug)]
pub struct Field {
    client: AsyncClient,
    got: Arc<Mutex<Vec<Got>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Field {
    /// Connects as `id` (persistent session: what arrives while the broker restarts waits)
    /// and subscribes to `filters`; returns once the broker has them.
    pub async fn connect(port: u16, id: &str, filters: &[&str]) -> Self {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(600));
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(o, 4096);
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let (ready_tx, mut ready) = mpsc::channel(1);
        let sink = got.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = ready_tx.try_send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let props = p.properties.clone().unwrap_or_default();
                        sink.lock().unwrap().push(Got {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            retain: p.retain,
                            properties: props.user_properties,
                            content_type: props.content_type,
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(guard(), ready.recv())
            .await
            .expect("the field client connects");
        let field = Self {
            client,
            got,
            _task: task,
        };
        for f in filters {
            field
                .client
                .subscribe(*f, QoS::AtLeastOnce)
                .await
                .expect("subscribe");
        }
        // A round trip through the broker: the subscriptions are in place after it.
        let probe = format!("field-probe/{id}");
        field
            .client
            .subscribe(&probe, QoS::AtLeastOnce)
            .await
            .unwrap();
        field.publish(&probe, "ready").await;
        field
            .wait_for("its own probe", 1, |g| g.topic == probe)
            .await;
        field
    }

    /// Publishes `payload` on `topic` at QoS 1.
    pub async fn publish(&self, topic: &str, payload: &str) {
        self.publish_with(topic, payload, false, PublishProperties::default())
            .await;
    }

    /// Publishes with `retain` and MQTT 5 properties.
    pub async fn publish_with(
        &self,
        topic: &str,
        payload: &str,
        retain: bool,
        properties: PublishProperties,
    ) {
        self.client
            .publish_with_properties(
                topic,
                QoS::AtLeastOnce,
                retain,
                payload.as_bytes().to_vec(),
                properties,
            )
            .await
            .expect("publish");
    }

    /// Everything received so far matching `check`.
    pub fn got(&self, check: impl Fn(&Got) -> bool) -> Vec<Got> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| check(g))
            .cloned()
            .collect()
    }

    /// Waits until `n` received publishes match `check`; returns them.
    pub async fn wait_for(&self, what: &str, n: usize, check: impl Fn(&Got) -> bool) -> Vec<Got> {
        let guard = guard() * 2;
        let until = Instant::now() + guard;
        loop {
            let hits = self.got(&check);
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < until,
                "the field client got {} of {n} {what} in {guard:?}",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
