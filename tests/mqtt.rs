//! A real mosquitto started by a test on a free loopback port (persistent, so a restart keeps
//! the cloud's session and what was queued for it), and a test-side "cloud" client that reads
//! what the node publishes and plays IoT Hub's twin for the `azure-iot-hub` dialect.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::guard;

/// A mosquitto process; stopped when dropped.
#[derive(Debug)]
pub struct Mosquitto {
    /// The loopback port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Lines added to its config; with them, clients must sign in.
    secured: Option<String>,
}

/// A loopback port no other broker of this test process was given: the OS may hand a
/// just-freed port out again, and two tests sharing one mosquitto (and its client ids)
/// would knock each other's clients off.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
}

impl Mosquitto {
    /// Starts one and waits until it listens (panics when it cannot: a test needs it).
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts one and waits until it listens.
    pub fn try_start() -> anyhow::Result<Self> {
        let mut m = Self {
            port: free_port()?,
            dir: tempfile::tempdir()?,
            child: None,
            secured: None,
        };
        m.run()?;
        Ok(m)
    }

    /// Starts one where clients sign in as one of `users` (name, password) and may use only
    /// what `acl` (a mosquitto ACL file's text) allows them.
    pub fn start_secured(users: &[(&str, &str)], acl: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let passwords = dir.path().join("passwords");
        for (i, (user, password)) in users.iter().enumerate() {
            let mut cmd = Command::new("mosquitto_passwd");
            cmd.arg("-b");
            if i == 0 {
                cmd.arg("-c");
            }
            let ok = cmd
                .arg(&passwords)
                .arg(user)
                .arg(password)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run mosquitto_passwd (apt-get install mosquitto)")
                .success();
            assert!(ok, "mosquitto_passwd failed");
        }
        let acl_file = dir.path().join("acl");
        std::fs::write(&acl_file, acl).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        for f in [&passwords, &acl_file] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let mut m = Self {
            port: free_port().unwrap(),
            dir,
            child: None,
            secured: Some(format!(
                "allow_anonymous false\npassword_file {}\nacl_file {}\n",
                passwords.display(),
                acl_file.display()
            )),
        };
        m.run().unwrap_or_else(|e| panic!("{e:#}"));
        m
    }

    fn run(&mut self) -> anyhow::Result<()> {
        // Run as root, mosquitto drops to its own user: it must be able to write its
        // persistence file here.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o777))
            .context("chmod the mosquitto folder")?;
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\n{}persistence true\n\
                 persistence_location {}/\nmax_queued_messages 0\nmax_inflight_messages 100\n\
                 set_tcp_nodelay true\n",
                self.port,
                self.secured.as_deref().unwrap_or("allow_anonymous true\n"),
                self.dir.path().display()
            ),
        )
        .context("writing mosquitto.conf")?;
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto (apt-get install mosquitto)")?;
        let until = Instant::now() + guard();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            anyhow::ensure!(
                Instant::now() < until,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Something listens there: not this mosquitto if it has exited (unable to bind).
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "mosquitto on port {} exited ({status}): the port is taken",
                self.port
            );
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops it (SIGTERM: it saves its sessions and queues) and waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.run().unwrap_or_else(|e| panic!("{e:#}"));
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One publish the cloud received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl Received {
    /// The payload as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("payload on {} is not JSON: {e}", self.topic))
    }
}

/// The test's side of the broker.
#[derive(Debug)]
pub struct Cloud {
    client: AsyncClient,
    received: Arc<Mutex<Vec<Received>>>,
    /// The desired properties it answers twin GETs with (`azure-iot-hub`).
    pub twin: Arc<Mutex<Value>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Cloud {
    /// Connects with a persistent session (so nothing published to it while the broker
    /// restarts is lost) and subscribes to `topics`.
    pub async fn connect(port: u16, topics: &[&str]) -> Self {
        let mut o = MqttOptions::new(format!("cloud-{port}"), "127.0.0.1", port);
        o.set_clean_session(false);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(o, 1024);
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let twin = Arc::new(Mutex::new(Value::Null));
        let (ready_tx, mut ready) = mpsc::channel(1);
        let (sink, answer, twin2) = (received.clone(), client.clone(), twin.clone());
        let wanted: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                        if !ack.session_present && ready_tx.is_closed() {
                            // The broker forgot the session: subscribe again.
                            for t in &wanted {
                                let _ = answer.try_subscribe(t.clone(), QoS::AtLeastOnce);
                            }
                        }
                        let _ = ready_tx.try_send(());
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let r = Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                        };
                        play_iot_hub(&answer, &twin2, &r).await;
                        sink.lock().unwrap().push(r);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(guard(), ready.recv())
            .await
            .expect("the cloud client connects");
        for t in topics {
            client
                .subscribe(*t, QoS::AtLeastOnce)
                .await
                .expect("subscribe");
        }
        // A round trip through the broker: the subscriptions are in place after it.
        let probe = format!("cloud-probe/{port}");
        client.subscribe(&probe, QoS::AtLeastOnce).await.unwrap();
        client
            .publish(&probe, QoS::AtLeastOnce, false, "ready")
            .await
            .unwrap();
        let cloud = Self {
            client,
            received,
            twin,
            _task: task,
        };
        cloud
            .wait_for("subscriptions", 1, |r| r.topic == probe)
            .await;
        cloud
    }

    /// Publishes `payload` on `topic` at QoS 1.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.into())
            .await
            .expect("publish");
    }

    /// Everything received so far whose topic starts with `prefix`.
    pub fn on(&self, prefix: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.topic.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Waits until `n` received messages match `check`; returns them.
    pub async fn wait_for(
        &self,
        what: &str,
        n: usize,
        check: impl Fn(&Received) -> bool,
    ) -> Vec<Received> {
        let guard = guard() * 2;
        let until = Instant::now() + guard;
        loop {
            let hits: Vec<Received> = self
                .received
                .lock()
                .unwrap()
                .iter()
                .filter(|r| check(r))
                .cloned()
                .collect();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < until,
                "the cloud got {} of {n} {what} in {guard:?}",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Answers twin requests the way IoT Hub does: GET → 200 with the desired properties,
/// reported PATCH → 204.
async fn play_iot_hub(client: &AsyncClient, twin: &Mutex<Value>, r: &Received) {
    let rid = |topic: &str| topic.split("$rid=").nth(1).unwrap_or("").to_owned();
    if r.topic.starts_with("$iothub/twin/GET/") {
        let desired = twin.lock().unwrap().clone();
        let body = serde_json::json!({ "desired": desired, "reported": {} });
        let topic = format!("$iothub/twin/res/200/?$rid={}", rid(&r.topic));
        let _ = client
            .publish(topic, QoS::AtLeastOnce, false, body.to_string())
            .await;
    } else if r
        .topic
        .starts_with("$iothub/twin/PATCH/properties/reported/")
    {
        let topic = format!("$iothub/twin/res/204/?$rid={}&$version=2", rid(&r.topic));
        let _ = client
            .publish(topic, QoS::AtLeastOnce, false, Vec::new())
            .await;
    }
}
