//! Configuration: layering of file, environment and flags, and `--save-config`.

use std::process::{Command, Stdio};
use std::time::Duration;

use bosun_testkit::eventually;

use crate::support::{bin, stderr, stdout};

#[test]
fn config_show_layers_file_env_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bosun.toml");
    std::fs::write(
        &file,
        "name = \"from-file\"\nretries = 9\nsubject_prefix = \"fleet\"\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "config",
            "show",
            "--name",
            "from-flag",
        ])
        .env("BOSUN_RETRIES", "4")
        .env_remove("BOSUN_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: toml::Table = toml::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("config show prints TOML: {e}\n{}", stdout(&out)));
    assert_eq!(shown["name"].as_str(), Some("from-flag"));
    assert_eq!(shown["retries"].as_integer(), Some(4));
    assert_eq!(shown["subject_prefix"].as_str(), Some("fleet"));
    let out = Command::new(bin())
        .args(["--config", "/no/such/file.toml", "config", "show"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/no/such/file.toml"));
}

#[test]
fn save_config_makes_flags_the_next_starts_defaults_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let run = |extra: &[&str]| {
        let mut child = Command::new(bin())
            .args([
                "node",
                "--name",
                "saver",
                "--data-dir",
                data.to_str().unwrap(),
            ])
            .args(extra)
            .env_remove("BOSUN_CONFIG")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        eventually(Duration::from_secs(20), "node up", || {
            data.join("bosun.sock").exists().then_some(())
        });
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(data.join("bosun.sock"));
    };
    run(&["--retries", "7"]);
    assert!(
        !data.join("bosun.toml").exists(),
        "flags are not saved unless asked"
    );
    run(&["--retries", "7", "--save-config"]);
    let saved = std::fs::read_to_string(data.join("bosun.toml")).unwrap();
    let saved_table: toml::Table =
        toml::from_str(&saved).unwrap_or_else(|e| panic!("saved config is TOML: {e}\n{saved}"));
    assert_eq!(saved_table["retries"].as_integer(), Some(7), "{saved}");
    assert_eq!(saved_table["name"].as_str(), Some("saver"), "{saved}");
    let out = Command::new(bin())
        .args(["--data-dir", data.to_str().unwrap(), "config", "show"])
        .env_remove("BOSUN_CONFIG")
        .output()
        .unwrap();
    let shown: toml::Table = toml::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        shown["retries"].as_integer(),
        Some(7),
        "the next start's default"
    );
}
