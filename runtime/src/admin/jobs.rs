//! Asynchronous JSON-RPC requests (`Prefer: respond-async`): each is a job whose response is
//! kept for `GET /jobs/{id}` until newer jobs push it out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::observe::unix_ms;

/// Bytes of finished responses kept at most; past it the oldest finished jobs go first.
pub const MAX_KEPT_BYTES: usize = 64 << 20;

/// The jobs of one node.
#[derive(Debug)]
pub struct Jobs {
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<String, Job>,
    order: VecDeque<String>,
    /// JSON bytes of the responses kept.
    bytes: usize,
}

#[derive(Debug)]
struct Job {
    owner: String,
    submitted_ms: u64,
    finished_ms: Option<u64>,
    response: Option<Value>,
    bytes: usize,
}

impl Jobs {
    /// A store keeping up to `max` jobs.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            inner: Mutex::default(),
        }
    }

    /// How many jobs are kept.
    pub fn capacity(&self) -> usize {
        self.max
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        busbar_base::sync::lock(&self.inner)
    }

    /// Records a new running job of token `owner`; returns its id, or `None` when the store
    /// is full of jobs still running.
    pub fn create(&self, owner: &str) -> Option<String> {
        let id = format!("job-{}", uuid::Uuid::new_v4().simple());
        let mut inner = self.lock();
        while inner.order.len() >= self.max {
            // The oldest finished job makes room; running ones are never dropped.
            let victim = inner
                .order
                .iter()
                .position(|id| inner.jobs[id].finished_ms.is_some())?;
            if let Some(old) = inner.order.remove(victim)
                && let Some(job) = inner.jobs.remove(&old)
            {
                inner.bytes -= job.bytes;
            }
        }
        inner.jobs.insert(
            id.clone(),
            Job {
                owner: owner.to_owned(),
                submitted_ms: unix_ms(),
                finished_ms: None,
                response: None,
                bytes: 0,
            },
        );
        inner.order.push_back(id.clone());
        Some(id)
    }

    /// Stores the JSON-RPC response of job `id` (`None`: the request was only notifications).
    pub fn finish(&self, id: &str, response: Option<Value>) {
        let bytes = response
            .as_ref()
            .and_then(|r| serde_json::to_vec(r).ok())
            .map_or(0, |v| v.len());
        let mut inner = self.lock();
        let Some(job) = inner.jobs.get_mut(id) else {
            return;
        };
        job.finished_ms = Some(unix_ms());
        job.response = response;
        job.bytes = bytes;
        inner.bytes += bytes;
        // The oldest finished responses go while the kept ones are over the budget.
        while inner.bytes > MAX_KEPT_BYTES {
            let Some(victim) = inner
                .order
                .iter()
                .position(|j| inner.jobs[j].finished_ms.is_some() && j != id)
            else {
                break;
            };
            if let Some(old) = inner.order.remove(victim)
                && let Some(job) = inner.jobs.remove(&old)
            {
                inner.bytes -= job.bytes;
            }
        }
    }

    /// Job `id` as `GET /jobs/{id}` shows it, if it exists and belongs to `owner`.
    pub fn view(&self, id: &str, owner: &str) -> Option<Value> {
        let inner = self.lock();
        let job = inner.jobs.get(id).filter(|j| j.owner == owner)?;
        Some(json!({
            "job": id,
            "status": if job.finished_ms.is_some() { "done" } else { "running" },
            "submitted_ms": job.submitted_ms,
            "finished_ms": job.finished_ms,
            "response": job.response,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_private_to_their_token_and_bounded() {
        let jobs = Jobs::new(2);
        let a = jobs.create("alice").unwrap();
        assert_eq!(jobs.view(&a, "alice").unwrap()["status"], "running");
        assert!(jobs.view(&a, "bob").is_none());
        jobs.finish(&a, Some(json!({"result": 1})));
        assert_eq!(jobs.view(&a, "alice").unwrap()["status"], "done");
        let b = jobs.create("alice").unwrap();
        let c = jobs.create("alice").unwrap();
        assert!(
            jobs.view(&a, "alice").is_none(),
            "the finished job made room"
        );
        assert!(jobs.view(&b, "alice").is_some() && jobs.view(&c, "alice").is_some());
        assert!(
            jobs.create("alice").is_none(),
            "two running jobs fill a store of two"
        );
    }
}
