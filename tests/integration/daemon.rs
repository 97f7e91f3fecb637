//! The `busbar` binary: the bundled demo, signals, and errors in the files it is given.

use busbar_tests::process::Busbar;
use busbar_tests::{guests_dir, service};
use serde_json::Value;

/// A manifest with two raw wit-bindgen counters (which report `stop` to Com) and a sensor.
fn write_counters_manifest(dir: &std::path::Path) {
    let manifest = [
        service("counter-a", "raw_counter", ""),
        service("counter-b", "raw_counter", ""),
        service(
            "temperature-sensor",
            "temperature_sensor",
            r#"config = { interval_ms = 20, forward_to = "counter-a,counter-b" }
grants = { destinations = ["counter-a", "counter-b"] }"#,
        ),
    ]
    .concat();
    std::fs::write(dir.join("manifest.toml"), manifest).unwrap();
}

fn com_lines(stdout: &[String]) -> Vec<Value> {
    stdout
        .iter()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line {l:?} is not JSON: {e}"))
        })
        .collect()
}

fn stops_on(signal: &str, logged: &str) {
    let dir = tempfile::tempdir().unwrap();
    write_counters_manifest(dir.path());
    let mut node = Busbar::start(dir.path(), &["run", "--manifest", "manifest.toml"]);
    node.wait_log(3, &["service state", "\"running\""]);
    // Let a few readings flow so the counters have something to report.
    node.wait_log(1, &["node running"]);
    while com_lines(&node.stdout()).len() < 3 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    node.signal(signal);
    let status = node.wait();
    let done = node.finished(status);
    assert!(done.status.success(), "{}", done.all());
    assert!(
        done.stderr.iter().any(|l| l.contains(logged)),
        "{}",
        done.all()
    );
    let lines = com_lines(&done.stdout);
    for name in ["counter-a", "counter-b"] {
        let stop = lines
            .iter()
            .find(|l| l["payload"]["event"] == "stopped" && l["payload"]["service"] == name)
            .unwrap_or_else(|| panic!("no stop event of {name}:\n{}", done.all()));
        assert!(stop["payload"]["count"].as_u64().unwrap() >= 1, "{stop}");
    }
    let hello = done
        .stderr
        .iter()
        .filter(|l| l.contains("hello on stdout") && l.contains("\"stream\":\"stdout\""))
        .count();
    assert_eq!(
        hello,
        2,
        "guest stdout is in the log, once per counter:\n{}",
        done.all()
    );
    let stopped = done
        .stderr
        .iter()
        .filter(|l| l.contains("\"stopped\""))
        .count();
    assert_eq!(
        stopped,
        3,
        "every service reached `stopped`:\n{}",
        done.all()
    );
}

#[test]
fn sigterm_calls_stop_on_every_service_and_exits_0() {
    stops_on("TERM", "SIGTERM received");
}

#[test]
fn ctrl_c_calls_stop_on_every_service_and_exits_0() {
    stops_on("INT", "Ctrl-C received");
}

#[test]
fn busbar_run_without_arguments_runs_the_bundled_demo() {
    let dir = tempfile::tempdir().unwrap();
    let guests = guests_dir();
    busbar_tests::python_guest("py_temperature_sensor");
    busbar_tests::python_guest("py_comfort");
    let cache = busbar_tests::python_cache_home();
    let mut node = Busbar::start_env(
        dir.path(),
        &["run"],
        &[
            ("BUSBAR_DEMO_DIR", guests.as_os_str()),
            ("XDG_CACHE_HOME", cache.as_os_str()),
        ],
    );
    node.wait_log(6, &["service state", "\"running\""]);
    // The Rust and the Python sensor report, and the Python comfort report (which calls
    // the Rust aggregator) reaches Com.
    for source in ["temperature-sensor", "attic-sensor", "comfort"] {
        let end = std::time::Instant::now() + busbar_tests::guard();
        while !com_lines(&node.stdout())
            .iter()
            .any(|l| l["source"] == source)
        {
            assert!(
                std::time::Instant::now() < end,
                "nothing from {source} at Com"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    node.signal("TERM");
    let status = node.wait();
    assert!(status.success(), "{}", node.finished(status).all());
}

#[test]
fn the_demo_says_how_to_build_its_components_when_they_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("no-components");
    std::fs::create_dir(&empty).unwrap();
    let mut node = Busbar::start_env(
        dir.path(),
        &["run"],
        &[("BUSBAR_DEMO_DIR", empty.as_os_str())],
    );
    let status = node.wait();
    let done = node.finished(status);
    assert!(!done.status.success());
    let text = done.stderr.join("\n");
    assert!(
        text.contains("just build-guests") && text.contains("temperature_sensor.wasm"),
        "{text}"
    );
}

#[test]
fn a_bad_manifest_field_is_named_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "{}\n[[services]]\nname = \"second\"\ncomponent = \"x.wasm\"\nlimits = {{ deadline_ms = \"soon\" }}\n",
        service("echo", "echo", "")
    );
    std::fs::write(dir.path().join("bad.toml"), manifest).unwrap();
    for cmd in ["run", "check"] {
        let done = Busbar::run(dir.path(), &[cmd, "--manifest", "bad.toml"]);
        assert_eq!(done.status.code(), Some(1), "{}", done.all());
        let text = done.stderr.join("\n");
        assert!(
            text.contains("bad.toml") && text.contains("deadline_ms"),
            "{text}"
        );
    }

    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"services": [{"name": "Bad Name!", "component": "x.wasm"}]}"#,
    )
    .unwrap();
    let done = Busbar::run(dir.path(), &["check", "--manifest", "bad.json"]);
    assert_eq!(done.status.code(), Some(1), "{}", done.all());
    let text = done.stderr.join("\n");
    assert!(text.contains("bad.json") && text.contains("name"), "{text}");
}

#[test]
fn check_loads_every_component_and_reports_each() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = [
        service("echo", "echo", ""),
        service("wrong", "not_a_service", ""),
    ]
    .concat();
    std::fs::write(dir.path().join("m.toml"), manifest).unwrap();
    let done = Busbar::run(dir.path(), &["check", "--manifest", "m.toml"]);
    assert_eq!(done.status.code(), Some(1), "{}", done.all());
    let out = done.stdout.join("\n");
    assert!(out.contains("ok") && out.contains("echo"), "{out}");
    assert!(
        out.contains("FAILED") && out.contains("not a busbar service"),
        "{out}"
    );
}

#[test]
fn an_unknown_destination_is_logged_with_the_sender_and_the_node_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = service(
        "temperature-sensor",
        "temperature_sensor",
        r#"config = { interval_ms = 20, count = 2, forward_to = "nowhere" }
grants = { destinations = ["nowhere"] }"#,
    );
    std::fs::write(dir.path().join("m.toml"), manifest).unwrap();
    let mut node = Busbar::start(dir.path(), &["run", "--manifest", "m.toml"]);
    node.wait_log(
        2,
        &[
            "unknown-destination",
            "nowhere",
            r#""service":"temperature-sensor""#,
        ],
    );
    node.wait_log(1, &["sent 2 readings, done"]);
    node.signal("TERM");
    let status = node.wait();
    let done = node.finished(status);
    assert!(done.status.success(), "{}", done.all());
    let readings = com_lines(&done.stdout);
    assert_eq!(
        readings.len(),
        2,
        "both readings still reached Com:\n{}",
        done.all()
    );
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping_and_the_pid_file_comes_and_goes() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    write_counters_manifest(dir.path());
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(busbar_tests::guard()))
        .unwrap();
    let pid_file = dir.path().join("run/busbar.pid");
    let mut node = Busbar::start_env(
        dir.path(),
        &[
            "run",
            "--manifest",
            "manifest.toml",
            "--pid-file",
            "run/busbar.pid",
        ],
        &[
            ("NOTIFY_SOCKET", socket_path.as_os_str()),
            ("WATCHDOG_USEC", std::ffi::OsStr::new("200000")),
        ],
    );
    let mut heard: Vec<String> = Vec::new();
    let mut buf = [0u8; 256];
    let mut next = |heard: &mut Vec<String>| {
        let n = socket.recv(&mut buf).expect("a notification");
        heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    };
    while !heard.iter().any(|m| m.contains("WATCHDOG=1")) {
        next(&mut heard);
    }
    assert!(heard[0].contains("READY=1"), "{heard:?}");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        node.id().to_string()
    );
    // A second node on the same PID file is refused.
    let second = Busbar::run(
        dir.path(),
        &[
            "run",
            "--manifest",
            "manifest.toml",
            "--pid-file",
            "run/busbar.pid",
        ],
    );
    assert!(!second.status.success());
    assert!(
        second.stderr.iter().any(|l| l.contains("already running")),
        "{}",
        second.all()
    );
    node.signal("TERM");
    while !heard.iter().any(|m| m.contains("STOPPING=1")) {
        next(&mut heard);
    }
    assert!(node.wait().success());
    assert!(!pid_file.exists(), "the PID file is removed at exit");
}

#[test]
fn the_log_can_go_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    write_counters_manifest(dir.path());
    let mut node = Busbar::start(
        dir.path(),
        &[
            "run",
            "--manifest",
            "manifest.toml",
            "--log-file",
            "logs/busbar.log",
            "--log-rotation",
            "never",
        ],
    );
    let log = dir.path().join("logs/busbar.log");
    let until = std::time::Instant::now() + busbar_tests::guard();
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("node running")) {
        assert!(
            std::time::Instant::now() < until,
            "no `node running` in {}",
            log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    node.signal("TERM");
    let status = node.wait();
    let done = node.finished(status);
    assert!(done.status.success(), "{}", done.all());
    assert!(
        done.stderr.is_empty(),
        "the log went to the file: {}",
        done.all()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["fields"]["message"], "node stopped", "flushed at exit");
}
