//! Summarises temperature readings over a window.
//!
//! Actions:
//! - `reading` (`{"sensor": .., "seq": n, "celsius": ..}`): adds the reading to the window;
//!   once it holds `window` readings, submits
//!   `{"summary": {"sensor", "count", "min", "avg", "max", "first_seq", "last_seq"}}` to Com
//!   and starts a new window;
//! - `stats` → the same fields for the window so far (`count` 0 and nulls when empty).
//!
//! Property `window`: readings per summary (default 10). Readings from every sensor share one
//! window; `sensor` names the latest.

use busbar_guest::{Error, Message, Reply, Service, info, property_or, submit, warn};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Reading {
    sensor: String,
    seq: u64,
    celsius: f64,
}

#[derive(Serialize, Default)]
struct Summary {
    sensor: Option<String>,
    count: usize,
    min: Option<f64>,
    avg: Option<f64>,
    max: Option<f64>,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
}

#[derive(Serialize)]
struct Report<'a> {
    summary: &'a Summary,
}

struct Aggregator {
    window: usize,
    current: Summary,
    sum: f64,
}

impl Aggregator {
    fn add(&mut self, reading: Reading) {
        let s = &mut self.current;
        s.count += 1;
        self.sum += reading.celsius;
        s.min = Some(s.min.map_or(reading.celsius, |m| m.min(reading.celsius)));
        s.max = Some(s.max.map_or(reading.celsius, |m| m.max(reading.celsius)));
        s.avg = Some(self.sum / s.count as f64);
        s.first_seq.get_or_insert(reading.seq);
        s.last_seq = Some(reading.seq);
        s.sensor = Some(reading.sensor);

        if s.count >= self.window {
            let summary = std::mem::take(&mut self.current);
            self.sum = 0.0;
            if let Err(e) = submit(&Report { summary: &summary }) {
                warn!("submitting the summary failed: {e}");
            }
        }
    }
}

impl Service for Aggregator {
    fn start() -> Result<Self, String> {
        let window = property_or("window", 10usize).max(1);
        info!("summarising every {window} readings");
        Ok(Aggregator {
            window,
            current: Summary::default(),
            sum: 0.0,
        })
    }

    fn process(&mut self, msg: &Message) -> Result<Option<Reply>, Error> {
        match msg.action() {
            "reading" => {
                self.add(msg.json()?);
                Ok(None)
            }
            "stats" => Reply::json(&self.current).map(Some),
            _ => Err(Error::unknown_action(msg)),
        }
    }
}

busbar_guest::export!(Aggregator);
