//! A real headless browser for the console tests: Debian's `chromium` driven by its
//! `chromedriver` over WebDriver (fantoccini), both on loopback, stopped with the test.
//! Screenshots go to `{target dir}/console-screenshots/` (not committed).

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};

/// Where the browser is (`BUSBAR_CHROMIUM` overrides).
fn chromium() -> PathBuf {
    std::env::var_os("BUSBAR_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Where its driver is (`BUSBAR_CHROMEDRIVER` overrides).
fn chromedriver() -> PathBuf {
    std::env::var_os("BUSBAR_CHROMEDRIVER")
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from)
}

/// A browser session and the driver process behind it.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    shots: PathBuf,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("shots", &self.shots)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless chromium session
    /// (1280×800). Fails naming what to install when either is missing.
    pub async fn start() -> Self {
        for (path, package) in [
            (chromium(), "chromium"),
            (chromedriver(), "chromium-driver"),
        ] {
            assert!(
                path.exists(),
                "{} is missing: the console tests need a real browser \
                 (`apt-get install chromium chromium-driver`)",
                path.display(),
            );
            let _ = package;
        }
        let port = crate::mqtt::free_port().expect("a free loopback port");
        // In a process group of its own, so the browser it starts goes with it.
        let driver = Command::new(chromedriver())
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start chromedriver");
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,800",
                         "--no-first-run", "--disable-extensions",
                         "--disable-background-networking", "--disable-sync",
                         "--disable-component-update", "--disable-default-apps"],
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("an object")
        };
        let url = format!("http://127.0.0.1:{port}");
        let client = crate::until("chromedriver to take a session", || {
            let (url, caps) = (url.clone(), caps.clone());
            async move {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        let shots = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
                PathBuf::from,
            )
            .join("console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Self {
            client,
            driver,
            shots,
        }
    }

    /// Goes to `url`.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Saves a screenshot of the page as `{name}.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    /// The text of the first element matching `css`, if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// Waits until the element matching `css` has a text for which `check` holds; returns it.
    pub async fn wait_text(&self, what: &str, css: &str, check: impl Fn(&str) -> bool) -> String {
        crate::until(what, || async { self.text(css).await.filter(|t| check(t)) }).await
    }

    /// Types `text` into the field matching `css` (cleared first).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Clicks the element matching `css` (waiting for it to be there).
    pub async fn click(&self, css: &str) {
        let element = crate::until(&format!("{css} to click"), || async {
            self.client.find(Locator::Css(css)).await.ok()
        })
        .await;
        element.click().await.unwrap();
    }

    /// Ends the session, the browser and the driver.
    pub async fn stop(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    /// Kills the driver's process group: the driver and the browser it started (also when a
    /// test fails half-way).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}
