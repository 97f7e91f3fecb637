//! The MQTT-as-bus baseline: two processes (mosquitto_pub → mosquitto_sub) exchanging the
//! same messages through a local mosquitto, QoS 0.

use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(port: u16) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < until, "mosquitto did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A mosquitto on a free loopback port; stopped when dropped.
pub struct Broker {
    /// The port it listens on.
    pub port: String,
    _process: Killed,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts one and waits until it listens.
    pub fn start() -> anyhow::Result<Self> {
        let port = free_port()?.to_string();
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"),
        )?;
        let process = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto (apt-get install mosquitto)")?;
        let process = Killed(process);
        wait_for_port(port.parse()?)?;
        Ok(Self {
            port,
            _process: process,
            _dir: dir,
        })
    }
}

/// Seconds for `n` messages of `size` bytes to go from one process to the other.
pub fn two_process_burst(n: u64, size: usize) -> anyhow::Result<f64> {
    let broker = Broker::start()?;
    let port = broker.port.clone();
    let common = ["-h", "127.0.0.1", "-p", &port, "-t", "bench", "-q", "0"];
    let sub = Command::new("mosquitto_sub")
        .args(common)
        .args(["-C", &n.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("starting mosquitto_sub (apt-get install mosquitto-clients)")?;
    let mut sub = Killed(sub);
    // mosquitto_sub has no "subscribed" signal without per-message debug output: give it
    // time to connect and subscribe (not part of the measured time).
    std::thread::sleep(Duration::from_millis(500));
    let line = format!("{}\n", "x".repeat(size.saturating_sub(1).max(1)));
    let input = line.repeat(n as usize);
    let t = Instant::now();
    let mut publisher = Command::new("mosquitto_pub")
        .args(common)
        .arg("-l")
        .stdin(Stdio::piped())
        .spawn()?;
    publisher
        .stdin
        .take()
        .context("mosquitto_pub stdin")?
        .write_all(input.as_bytes())?;
    let until = t + Duration::from_secs(120);
    loop {
        if sub.0.try_wait()?.is_some() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "mosquitto_sub did not get {n} messages"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = t.elapsed().as_secs_f64();
    publisher.wait()?;
    Ok(secs)
}
