//! A `busbar` process started by a test: its stdout and stderr are collected line by line so
//! the test can wait for a log line, send it a signal and check how it exited.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{busbar_bin, guard};

/// Lines a stream has produced so far.
type Lines = Arc<Mutex<Vec<String>>>;

/// A running `busbar` process. Killed when dropped if it is still running.
#[derive(Debug)]
pub struct Busbar {
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

fn collect(stream: impl Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Busbar {
    /// Starts `busbar ARGS` in `dir` with JSON logs, its cache and data dir under `dir`
    /// (`cache/`, `state/`), the admin API on a free loopback port and `BUSBAR_LOG=info`.
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        Self::start_env(dir, args, &[])
    }

    /// Like [`Busbar::start`], with extra environment variables.
    pub fn start_env(dir: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Self {
        Self::spawn(Command::new(busbar_bin()), dir, args, env)
    }

    /// Starts `program ARGS`, where `program` is a `busbar` binary or a command running one
    /// (e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu busbar`).
    pub fn spawn(mut program: Command, dir: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Self {
        let mut child = program
            .arg("--log-format=json")
            .args(args)
            .current_dir(dir)
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .env("BUSBAR_DATA_DIR", dir.join("state"))
            .env("BUSBAR_ADMIN_LISTEN", "127.0.0.1:0")
            .env("BUSBAR_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn busbar");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Runs `busbar ARGS` in `dir` to completion.
    pub fn run(dir: &Path, args: &[&str]) -> Finished {
        Self::start(dir, args).wait_finished()
    }

    /// Waits for the exit and returns everything the process wrote.
    pub fn wait_finished(mut self) -> Finished {
        let status = self.wait();
        self.finished(status)
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Standard output so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Standard error (the log) so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `n` stderr lines contain every one of `parts`; fails after [`guard`].
    pub fn wait_log(&mut self, n: usize, parts: &[&str]) {
        let guard = guard();
        let until = Instant::now() + guard;
        loop {
            let hits = self
                .stderr()
                .iter()
                .filter(|l| parts.iter().all(|p| l.contains(p)))
                .count();
            if hits >= n {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "busbar exited ({status}) before logging {parts:?}; log:\n{}",
                    self.stderr().join("\n")
                );
            }
            assert!(
                Instant::now() < until,
                "no {n} log lines with {parts:?} after {guard:?}; log:\n{}",
                self.stderr().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (e.g. `TERM`, `INT`) with the system's `kill`.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Waits for the process to exit (at most [`guard`], then kills it and fails).
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_within(guard())
    }

    /// Waits for the process to exit (at most `guard`, then kills it and fails).
    pub fn wait_within(&mut self, guard: Duration) -> ExitStatus {
        let until = Instant::now() + guard;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait busbar") {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!(
                    "busbar did not exit within {guard:?}; log:\n{}",
                    self.stderr().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status and everything the process wrote.
    pub fn finished(&self, status: ExitStatus) -> Finished {
        Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Busbar {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `busbar` process that has exited.
#[derive(Debug)]
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output, by line.
    pub stdout: Vec<String>,
    /// Its log, by line.
    pub stderr: Vec<String>,
}

impl Finished {
    /// Standard output and error, for assertion messages.
    pub fn all(&self) -> String {
        format!(
            "exit: {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout.join("\n"),
            self.stderr.join("\n")
        )
    }
}
