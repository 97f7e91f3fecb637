//! The fleet console in a real headless browser (chromium over WebDriver) against a real hub
//! process and a real `busbar run` node: log in (a wrong token refused), see the node and its
//! service version, publish a new version from a signed bundle through the page and watch the
//! version change, turn debug on and see a forwarded log line, publish the first version
//! again from the entries the hub keeps, see a rolled-back version flagged in the rollout
//! view. Screenshots of each page are saved (not committed).

use busbar_tests::browser::Browser;
use busbar_tests::fleet::{Hub, new_version, start_node};
use busbar_tests::guest;

use crate::fleet::{runs, sha256};

#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_the_fleet_publishes_and_flags_a_rollback() {
    let hub = Hub::start();
    let token = hub.add_node("gw1");
    let v1 = guest("seq_receiver");
    let v1_sha = sha256(&v1);
    hub.publish("seq-receiver", &v1, "gw1", &[]);
    let work = tempfile::tempdir().unwrap();
    let node = start_node(work.path(), "gw1", &hub.url, &token, &hub.public_key_file());
    runs(&node, "seq-receiver", &v1_sha).await;

    let browser = Browser::start().await;
    let console = format!("{}/console/", hub.url);
    browser.open(&console).await;

    // A wrong token is refused with the hub's words, and nothing is shown.
    browser.fill("#token", "not-the-admin-token").await;
    browser.click("#login").await;
    browser
        .wait_text("the refusal of a wrong token", "#login-error", |t| {
            t.contains("unknown admin token")
        })
        .await;
    browser.screenshot("login-refused").await;

    // The right one: the fleet, with gw1 running v1.
    browser.fill("#token", &hub.admin_token).await;
    browser.click("#login").await;
    let gw1_version = r#"tr[data-node="gw1"] span.svc[data-service="seq-receiver"] .sha"#;
    browser
        .wait_text("gw1 running v1 in the fleet table", gw1_version, |t| {
            t == &v1_sha[..7]
        })
        .await;
    browser
        .wait_text("one node online", "#count-online", |t| t == "1")
        .await;
    browser.screenshot("fleet").await;

    // Debug on from the node page.
    browser.open(&format!("{console}#/node/gw1")).await;
    browser
        .wait_text("the debug toggle", "#debug-toggle", |t| {
            t == "Turn debug on"
        })
        .await;
    browser.click("#debug-toggle").await;
    browser
        .wait_text("debug on", "#debug-toggle", |t| t == "Turn debug off")
        .await;

    // v2 signed on the publisher's machine, published from the page with its component.
    let v2 = new_version(&v1, work.path(), "console-v2");
    let v2_sha = sha256(&v2);
    let bundle = hub.dir.path().join("v2.json");
    let signed = hub.cli(&[
        "sign",
        "--key",
        "signing.key",
        "--service",
        "seq-receiver",
        "--component",
        v2.to_str().unwrap(),
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert!(signed.status.success(), "sign: {}", signed.all());
    browser.open(&format!("{console}#/publish")).await;
    let file = |css: &'static str, path: std::path::PathBuf| {
        let browser = &browser;
        async move {
            let input = browser
                .client
                .find(fantoccini::Locator::Css(css))
                .await
                .unwrap();
            input.send_keys(path.to_str().unwrap()).await.unwrap();
        }
    };
    file("#bundle-file", bundle).await;
    file("#component-file", v2.clone()).await;
    browser.fill("#publish-nodes", "gw1").await;
    browser.click("#publish").await;
    browser
        .wait_text("the publish's answer", "#publish-result.ok", |t| {
            t.contains("node:gw1")
        })
        .await;
    browser.screenshot("publish").await;
    runs(&node, "seq-receiver", &v2_sha).await;

    // The node page shows v2 and, debug being on, the node's log line about the swap.
    browser.open(&format!("{console}#/node/gw1")).await;
    browser
        .wait_text(
            "v2 on the node page",
            r#"#services tr[data-service="seq-receiver"] td.sha"#,
            |t| t == &v2_sha[..12],
        )
        .await;
    browser
        .wait_text("a forwarded log line", "#logs", |t| {
            t.contains("new version swapped in")
        })
        .await;
    browser.screenshot("node").await;

    // Back to v1, an entry the hub kept from its first publish, from the page.
    browser.open(&format!("{console}#/publish")).await;
    let v1_option = format!(r#"#entry-version option[data-sha256="{v1_sha}"]"#);
    browser.click(&v1_option).await;
    browser.fill("#entry-nodes", "gw1").await;
    browser.click("#publish-entry").await;
    browser
        .wait_text(
            "the answer to publishing v1 again",
            "#entry-result.ok",
            |t| t.contains("node:gw1"),
        )
        .await;
    runs(&node, "seq-receiver", &v1_sha).await;

    // A version that traps in start is rolled back by the node: flagged in the rollout view.
    let bad = guest("bad_start");
    let bad_sha = sha256(&bad);
    hub.publish("seq-receiver", &bad, "gw1", &[]);
    browser.open(&format!("{console}#/rollout")).await;
    let flagged = r#"section.rollout[data-service="seq-receiver"] tr.flagged[data-node="gw1"][data-kind="rolled-back"]"#;
    let row = browser
        .wait_text("gw1 flagged as rolled back", flagged, |t| {
            t.contains(&bad_sha[..12])
        })
        .await;
    assert!(row.contains("trapped"), "{row}");
    browser.screenshot("rollout").await;
    browser.open(&console).await;
    browser
        .wait_text("the trouble count", "#count-trouble", |t| t == "1")
        .await;
    browser.stop().await;
}
