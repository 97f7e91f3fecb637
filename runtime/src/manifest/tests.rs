use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(text, false, "m.toml", Path::new("/base"))
}

#[test]
fn names_that_could_leave_a_folder_are_refused() {
    for name in [".", "..", ".hidden", "-x"] {
        let toml = format!("[[services]]\nname = \"{name}\"\ncomponent = \"a.wasm\"\n");
        let e = parse(&toml).unwrap_err().to_string();
        assert!(
            e.contains("must start with a letter or a digit"),
            "{name}: {e}"
        );
    }
    let e = parse("[[services]]\nname = \"admin\"\ncomponent = \"a.wasm\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("reserved"), "{e}");
}

#[test]
fn minimal_service_gets_defaults_and_a_resolved_path() {
    let m = parse("[[services]]\nname = \"a\"\ncomponent = \"a.wasm\"\n").unwrap();
    let s = &m.services[0];
    assert!(s.enabled);
    assert_eq!(s.component, Path::new("/base/a.wasm"));
    assert_eq!(s.limits, Limits::default());
}

#[test]
fn config_values_become_property_text() {
    let m = parse("[[services]]\nname = \"a\"\ncomponent = \"a.wasm\"\nconfig = { t = 30.5, id = \"s1\", on = true }\n").unwrap();
    let c = &m.services[0].config;
    assert_eq!(property_text(&c["t"]), "30.5");
    assert_eq!(property_text(&c["id"]), "s1");
    assert_eq!(property_text(&c["on"]), "true");
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let e =
        parse("[[services]]\nname = \"a\"\ncomponent = \"a.wasm\"\nenabld = true\n").unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("manifest m.toml:"), "{text}");
    assert!(
        text.contains("unknown field `enabld`") && text.contains("line 4"),
        "{text}"
    );
}

#[test]
fn missing_and_mistyped_fields_are_named() {
    let e = parse("[[services]]\nname = \"a\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing field `component`"), "{e}");
    let e = parse(
        "[[services]]\nname = \"a\"\ncomponent = \"a.wasm\"\nlimits = { mailbox = \"big\" }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("mailbox") && e.contains("invalid type"), "{e}");
}

#[test]
fn invalid_values_name_the_service_and_field() {
    let dup = "[[services]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[[services]]\nname = \"a\"\ncomponent = \"b.wasm\"\n";
    let e = parse(dup).unwrap_err().to_string();
    assert!(e.contains("services[1] (`a`).name"), "{e}");
    let e = parse("[[services]]\nname = \"com\"\ncomponent = \"a.wasm\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("services[0].name") && e.contains("reserved"),
        "{e}"
    );
    let e = parse("[[services]]\nname = \"A b\"\ncomponent = \"a.wasm\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("lowercase"), "{e}");
    let e = parse("[[services]]\nname = \"a\"\ncomponent = \"a.wasm\"\nlimits = { mailbox = 0 }\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("services[0] (`a`).limits.mailbox: 0 is out of range (1 to 100000)"),
        "{e}"
    );
    let e = parse("[[services]]\nname = \"a\"\ncomponent = \"a.wasm\"\nsha256 = \"xyz\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains(".sha256: expected 64 hex digits"), "{e}");
}

#[test]
fn json_manifests_are_accepted() {
    let m = Manifest::parse(
        r#"{"services":[{"name":"a","component":"a.wasm","limits":{"on_full":"refuse"}}]}"#,
        true,
        "m.json",
        Path::new("/base"),
    )
    .unwrap();
    assert_eq!(m.services[0].limits.on_full, FullPolicy::Refuse);
    let e = Manifest::parse(
        r#"{"services":[{"name":"a"}]}"#,
        true,
        "m.json",
        Path::new("/"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing field `component`"), "{e}");
}
