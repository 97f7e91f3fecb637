//! Raises an alert when a temperature reading exceeds a threshold.
//!
//! Actions:
//! - `reading` (`{"sensor": .., "seq": n, "celsius": ..}`): above the threshold, submits
//!   `{"alert": "over-threshold", "sensor", "seq", "celsius", "threshold"}` to Com with header
//!   `kind: alert`;
//! - `get-threshold` → `{"threshold": x}`;
//! - `set-threshold` (`{"threshold": x}`) → the new `{"threshold": x}`.
//!
//! Property `threshold`: the initial threshold in °C (default 30).

use busbar_guest::{Error, Message, Reply, Service, info, property_or, submit_with_headers, warn};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Reading {
    sensor: String,
    seq: u64,
    celsius: f64,
}

#[derive(Serialize)]
struct Alert<'a> {
    alert: &'static str,
    sensor: &'a str,
    seq: u64,
    celsius: f64,
    threshold: f64,
}

#[derive(Serialize, Deserialize)]
struct Threshold {
    threshold: f64,
}

struct ThresholdAlert {
    threshold: f64,
}

impl ThresholdAlert {
    fn reading(&self, reading: Reading) -> Result<(), Error> {
        if reading.celsius <= self.threshold {
            return Ok(());
        }
        warn!(
            "{} reads {} °C, above {} °C (seq {})",
            reading.sensor, reading.celsius, self.threshold, reading.seq
        );
        let alert = Alert {
            alert: "over-threshold",
            sensor: &reading.sensor,
            seq: reading.seq,
            celsius: reading.celsius,
            threshold: self.threshold,
        };
        submit_with_headers(&alert, &[("kind", "alert")])?;
        Ok(())
    }

    fn threshold(&self) -> Result<Option<Reply>, Error> {
        Reply::json(&Threshold {
            threshold: self.threshold,
        })
        .map(Some)
    }
}

impl Service for ThresholdAlert {
    fn start() -> Result<Self, String> {
        let threshold = property_or("threshold", 30.0);
        info!("alerting above {threshold} °C");
        Ok(ThresholdAlert { threshold })
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        match msg.action() {
            "reading" => self.reading(msg.json()?).map(|()| None),
            "get-threshold" => self.threshold(),
            "set-threshold" => {
                let Threshold { threshold } = msg.json()?;
                if !threshold.is_finite() {
                    return Err(Error::bad_payload(format!(
                        "threshold must be a finite number, not {threshold}"
                    )));
                }
                info!(
                    "threshold changed from {} to {threshold} °C",
                    self.threshold
                );
                self.threshold = threshold;
                self.threshold()
            }
            _ => Err(Error::unknown_action(msg)),
        }
    }
}

busbar_guest::export!(ThresholdAlert);
