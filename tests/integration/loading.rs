//! Loading components: bad files and wrong worlds are refused with the file named, digests
//! are checked, and compiled components are cached on disk.

use busbar::cache::CompileCache;
use busbar::component::{ComponentSource, LoadError, Loader};
use busbar::engine::EngineConfig;
use busbar::service::State;
use busbar_tests::{TestNode, guest, service};
use serde_json::json;

fn loader(cache: &std::path::Path) -> Loader {
    let engine = EngineConfig::default().build().unwrap();
    let cache = CompileCache::new(&engine, Some(cache.to_path_buf())).unwrap();
    Loader::new(engine, cache).unwrap()
}

#[test]
fn malformed_component_and_wrong_world_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let loader = loader(&dir.path().join("cache"));

    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x0d\0\x01\0 definitely not a component").unwrap();
    let e = loader
        .load_blocking(&ComponentSource::file(&broken))
        .unwrap_err();
    assert!(matches!(e, LoadError::Invalid { .. }), "{e:?}");
    assert!(e.to_string().contains(&broken.display().to_string()), "{e}");

    let e = loader
        .load_blocking(&ComponentSource::file(guest("not_a_service")))
        .unwrap_err();
    assert!(matches!(e, LoadError::WrongWorld { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("not_a_service.wasm") && text.contains("not a busbar service"),
        "{text}"
    );

    let missing = dir.path().join("missing.wasm");
    let e = loader
        .load_blocking(&ComponentSource::file(&missing))
        .unwrap_err();
    assert!(e.to_string().contains("missing.wasm"), "{e}");
}

#[test]
fn a_wrong_sha256_is_refused_with_both_digests() {
    let dir = tempfile::tempdir().unwrap();
    let loader = loader(&dir.path().join("cache"));
    let wrong = "0".repeat(64);
    let source = ComponentSource {
        sha256: Some(wrong.clone()),
        ..ComponentSource::file(guest("echo"))
    };
    let e = loader.load_blocking(&source).unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, LoadError::Digest { .. })
            && text.contains(&wrong)
            && text.contains("echo.wasm"),
        "{text}"
    );
}

#[test]
fn compiled_components_are_cached_by_digest_and_engine_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let first = loader(&cache_dir)
        .load_blocking(&ComponentSource::file(guest("echo")))
        .unwrap();
    assert!(!first.from_cache());
    let files: Vec<String> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one artifact, no temporary files left: {files:?}"
    );
    assert!(
        files[0].starts_with(first.digest()) && files[0].ends_with(".cwasm"),
        "{files:?}"
    );

    // A new engine with the same settings (a node restart) reuses it.
    let second = loader(&cache_dir)
        .load_blocking(&ComponentSource::file(guest("echo")))
        .unwrap();
    assert!(second.from_cache());
    assert_eq!(second.digest(), first.digest());

    // Within one loader (one node), a second service of the same component shares the code.
    let shared = loader(&cache_dir);
    shared
        .load_blocking(&ComponentSource::file(guest("echo")))
        .unwrap();
    let again = shared
        .load_blocking(&ComponentSource::file(guest("echo")))
        .unwrap();
    assert_eq!(again.origin(), &busbar::component::Origin::Shared);
    drop((shared, again));

    // A corrupt artifact is not trusted: the component is compiled again. (Artifacts are
    // mapped into memory: they are replaced by rename, never rewritten in place.)
    drop((first, second));
    let garbage = cache_dir.join("garbage");
    std::fs::write(&garbage, b"garbage").unwrap();
    std::fs::rename(&garbage, cache_dir.join(&files[0])).unwrap();
    let third = loader(&cache_dir)
        .load_blocking(&ComponentSource::file(guest("echo")))
        .unwrap();
    assert!(!third.from_cache());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_cannot_load_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"not wasm at all").unwrap();
    let manifest = format!(
        "[[services]]\nname = \"broken\"\ncomponent = {:?}\n\n{}{}",
        broken.display().to_string(),
        service("wrong-world", "not_a_service", ""),
        service("echo", "echo", "")
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let status = node.wait_state("broken", State::Failed).await;
    assert!(status.last_fault.unwrap().contains("broken.wasm"));
    let status = node.wait_state("wrong-world", State::Failed).await;
    assert!(status.last_fault.unwrap().contains("not a busbar service"));
    assert_eq!(
        node.call_json("echo", "echo", &json!([1, 2])).await,
        json!([1, 2])
    );
    let e = node
        .call("broken", "x", &json!(null), busbar_tests::guard())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("unavailable") && e.to_string().contains("broken.wasm"),
        "{e}"
    );
    node.shutdown().await;
}
