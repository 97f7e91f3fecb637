//! The MQTT-as-bus baseline: two processes (mosquitto_pub → mosquitto_sub) exchanging the
//! same messages through a local mosquitto, QoS 0.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use busbar_tests::mqtt::Mosquitto;

/// A child process killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Seconds for `n` messages of `size` bytes to go from one process to the other.
pub fn two_process_burst(n: u64, size: usize) -> anyhow::Result<f64> {
    let broker = Mosquitto::try_start()?;
    let port = broker.port.to_string();
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
