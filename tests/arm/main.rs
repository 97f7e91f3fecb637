//! The ARM builds under qemu-user: the demo produces readings on aarch64 (Cranelift) and
//! armv7 (Pulley); artifacts precompiled on this machine are loaded by the ARM binaries, and
//! a mismatched one falls back to compiling with a log line.
//!
//! These need the cross builds and qemu, so they are ignored by `cargo test`; `just
//! test-arm` builds what they need and runs them (`BUSBAR_AARCH64_BIN`, `BUSBAR_ARMV7_BIN`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use busbar_tests::process::Busbar;
use busbar_tests::{guest, guests_dir};
use serde_json::Value;

/// One emulated target.
struct Target {
    triple: &'static str,
    qemu: &'static str,
    sysroot: &'static str,
    bin_var: &'static str,
}

const AARCH64: Target = Target {
    triple: "aarch64-unknown-linux-gnu",
    qemu: "qemu-aarch64",
    sysroot: "/usr/aarch64-linux-gnu",
    bin_var: "BUSBAR_AARCH64_BIN",
};

const ARMV7: Target = Target {
    triple: "armv7-unknown-linux-gnueabihf",
    qemu: "qemu-arm",
    sysroot: "/usr/arm-linux-gnueabihf",
    bin_var: "BUSBAR_ARMV7_BIN",
};

impl Target {
    fn bin(&self) -> PathBuf {
        let path = std::env::var_os(self.bin_var)
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{} is not set: run `just test-arm`", self.bin_var));
        assert!(path.exists(), "{} is missing", path.display());
        path
    }

    fn command(&self) -> Command {
        let mut c = Command::new(self.qemu);
        c.arg("-L").arg(self.sysroot).arg(self.bin());
        c
    }

    fn start(&self, dir: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Busbar {
        Busbar::spawn(self.command(), dir, args, env)
    }
}

fn readings(stdout: &[String]) -> usize {
    stdout
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["source"] == "temperature-sensor")
        .count()
}

fn demo_produces_readings(t: &Target) {
    let dir = tempfile::tempdir().unwrap();
    let guests = guests_dir();
    let mut node = t.start(
        dir.path(),
        &["run"],
        &[("BUSBAR_DEMO_DIR", guests.as_os_str())],
    );
    node.wait_log(4, &["service state", "\"running\""]);
    let until = std::time::Instant::now() + busbar_tests::guard();
    while readings(&node.stdout()) < 2 {
        assert!(
            std::time::Instant::now() < until,
            "no readings:\n{}",
            node.stderr().join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    node.signal("TERM");
    let done = node.wait_finished();
    assert!(done.status.success(), "{}", done.all());
    assert!(readings(&done.stdout) >= 2, "{}", done.all());
}

/// Precompiles `echo` on this machine for `t` (with the default engine, or with `config`).
fn precompile(t: &Target, dir: &Path, out: &str, config: Option<&str>) {
    let echo = guest("echo").display().to_string();
    let mut args = vec!["compile", "--target", t.triple, &echo, "-o", out];
    if let Some(c) = config {
        args.extend(["--config", c]);
    }
    let done = Busbar::run(dir, &args);
    assert!(done.status.success(), "{}", done.all());
}

fn precompiled_artifacts_are_loaded_or_fall_back(t: &Target) {
    let dir = tempfile::tempdir().unwrap();
    precompile(t, dir.path(), "echo.cwasm", None);
    std::fs::write(
        dir.path().join("big.toml"),
        "[engine]\nmax_memory_mib = 64\n",
    )
    .unwrap();
    precompile(t, dir.path(), "echo.big.cwasm", Some("big.toml"));
    let echo = guest("echo").display().to_string();
    let manifest = |artifact: &str| {
        format!(
            "[[services]]\nname = \"echo\"\ncomponent = {echo:?}\nprecompiled = [{artifact:?}]\n"
        )
    };

    std::fs::write(dir.path().join("m.toml"), manifest("echo.cwasm")).unwrap();
    let done = t
        .start(dir.path(), &["check", "--manifest", "m.toml"], &[])
        .wait_finished();
    assert!(done.status.success(), "{}", done.all());
    assert!(
        done.stdout.join("\n").contains("(precompiled "),
        "{}",
        done.all()
    );

    std::fs::write(dir.path().join("m.toml"), manifest("echo.big.cwasm")).unwrap();
    let done = t
        .start(dir.path(), &["check", "--manifest", "m.toml"], &[])
        .wait_finished();
    assert!(done.status.success(), "{}", done.all());
    assert!(
        done.stdout.join("\n").contains("(compiled)"),
        "{}",
        done.all()
    );
    assert!(
        done.stderr
            .join("\n")
            .contains("precompiled artifact not used"),
        "{}",
        done.all()
    );
}

#[test]
#[ignore = "needs the aarch64 build and qemu: run `just test-arm`"]
fn aarch64_runs_the_demo() {
    demo_produces_readings(&AARCH64);
}

#[test]
#[ignore = "needs the armv7 build and qemu: run `just test-arm`"]
fn armv7_runs_the_demo_on_pulley() {
    demo_produces_readings(&ARMV7);
}

#[test]
#[ignore = "needs the aarch64 build and qemu: run `just test-arm`"]
fn aarch64_loads_artifacts_precompiled_on_this_machine() {
    precompiled_artifacts_are_loaded_or_fall_back(&AARCH64);
}

#[test]
#[ignore = "needs the armv7 build and qemu: run `just test-arm`"]
fn armv7_loads_artifacts_precompiled_on_this_machine() {
    precompiled_artifacts_are_loaded_or_fall_back(&ARMV7);
}
