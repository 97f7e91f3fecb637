//! A simulated temperature sensor.
//!
//! Every `interval_ms` (default 1000) it takes a reading
//! `{"sensor": .., "seq": n, "celsius": ..}`, submits it to Com and sends it as action
//! `reading` to each service in `forward_to`.
//!
//! Properties:
//! - `sensor_id`: the name in each reading (default `sensor-1`);
//! - `interval_ms`: time between readings (default 1000);
//! - `values`: comma-separated temperatures to cycle through, e.g. `20,25,31.5`; without it
//!   the temperature wanders randomly around 22 °C;
//! - `seed`: seed of that random walk (default 1);
//! - `forward_to`: comma-separated services to send readings to (default
//!   `threshold-alert,aggregator`; empty for none);
//! - `count`: stop after this many readings (default: never).

use std::time::Duration;

use busbar_guest::{Service, info, property, property_or, submit, submit_action, timers, warn};
use serde::Serialize;

const TIMER: &str = "sample";

#[derive(Serialize)]
struct Reading<'a> {
    sensor: &'a str,
    seq: u64,
    celsius: f64,
}

/// Where temperatures come from.
enum Source {
    /// The `values` property, in a loop.
    Values { values: Vec<f64>, next: usize },
    /// A random walk pulled towards 22 °C.
    Walk { rng: u64, celsius: f64 },
}

impl Source {
    fn next(&mut self) -> f64 {
        match self {
            Source::Values { values, next } => {
                let value = values[*next];
                *next = (*next + 1) % values.len();
                value
            }
            Source::Walk { rng, celsius } => {
                // xorshift64: plenty for a simulation.
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                let step = (*rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5; // in [-0.5, 0.5)
                *celsius += step + (22.0 - *celsius) * 0.1;
                (*celsius * 100.0).round() / 100.0
            }
        }
    }
}

struct TemperatureSensor {
    sensor: String,
    seq: u64,
    count: Option<u64>,
    forward_to: Vec<String>,
    source: Source,
}

impl Service for TemperatureSensor {
    fn start() -> Result<Self, String> {
        let source = match property("values") {
            Some(text) => {
                let values = text
                    .split(',')
                    .map(|v| v.trim().parse::<f64>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("property `values` ({text:?}): {e}"))?;
                Source::Values { values, next: 0 }
            }
            None => Source::Walk {
                rng: property_or("seed", 1u64).max(1), // xorshift is stuck at 0
                celsius: 22.0,
            },
        };
        let count = match property("count") {
            Some(text) => Some(
                text.trim()
                    .parse()
                    .map_err(|e| format!("property `count` ({text:?}): {e}"))?,
            ),
            None => None,
        };
        let forward_to = property("forward_to")
            .unwrap_or_else(|| "threshold-alert,aggregator".to_owned())
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect();

        let interval = Duration::from_millis(property_or("interval_ms", 1000));
        if count != Some(0) {
            timers::set_interval(TIMER, interval).map_err(|e| e.to_string())?;
        }
        info!("sampling every {interval:?}, forwarding to {forward_to:?}");
        Ok(TemperatureSensor {
            sensor: property("sensor_id").unwrap_or_else(|| "sensor-1".to_owned()),
            seq: 0,
            count,
            forward_to,
            source,
        })
    }

    fn on_timer(&mut self, name: &str) {
        if name != TIMER || self.count.is_some_and(|count| self.seq >= count) {
            return;
        }
        self.seq += 1;
        let reading = Reading {
            sensor: &self.sensor,
            seq: self.seq,
            celsius: self.source.next(),
        };
        if let Err(e) = submit(&reading) {
            warn!("reading {}: submit to Com failed: {e}", reading.seq);
        }
        for destination in &self.forward_to {
            if let Err(e) = submit_action(destination, "reading", &reading) {
                warn!(
                    "reading {}: sending to `{destination}` failed: {e}",
                    reading.seq
                );
            }
        }
        if self.count == Some(self.seq) {
            timers::cancel(TIMER);
            info!("sent {} readings, done", self.seq);
        }
    }
}

busbar_guest::export!(TemperatureSensor);
