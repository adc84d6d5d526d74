//! Deployments move over unchanged: a node started with steward's own flags and
//! environment spellings (and a Mesos agent's `MESOS_ATTRIBUTES`, and quartermaster's
//! `TOKEN`) joins a real fleet, serves its metrics on steward's `:PORT` form under the
//! HTTP API's rules, and writes results where steward wrote them.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bosun_testkit::{eventually, json, trust::issuer};

use crate::support::{bin, fleet, http, stderr};

const TOKEN: &str = "qm-token-0123456789";

/// `bosun node` with steward's spellings, logging to `<dir>.log`.
fn steward_node(dir: &std::path::Path, flags: &[String], env: &[(&str, String)]) -> Child {
    let log = std::fs::File::create(dir.with_extension("log")).unwrap();
    let mut command = Command::new(bin());
    command
        .arg("node")
        .args(flags)
        .env_remove("BOSUN_CONFIG")
        .env("BOSUN_TRUSTED_ISSUERS", issuer().public_key())
        .env("BOSUN_POLICY", "*")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_node_started_with_stewards_spellings_joins_and_serves_as_steward_did() {
    let Some(fleet) = fleet().central("central").nodes(&["central"]).start() else {
        return;
    };
    let dir = fleet.dir().join("ship9");
    let etc = fleet.dir().join("etc");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    issuer().issue_into(&dir, "ship9", &["*".to_string()]);
    let broker = fleet.nats().url().trim_start_matches("nats://").to_string();
    let metrics_port = bosun_testkit::free_port();
    // The steward document's command line for a node, with this fleet's addresses.
    let flags: Vec<String> = [
        "--nodeName=ship9".to_string(),
        "-startPubREQHello=1".to_string(),
        "--centralNodeName=central".to_string(),
        format!("-promHostAndPort=:{metrics_port}"),
        format!("-brokerAddress={broker}"),
        "-startSubREQErrorLog=*".to_string(),
    ]
    .to_vec();
    let env = vec![
        ("DATABASE_FOLDER", dir.display().to_string()),
        (
            "SUBSCRIBERS_DATA_FOLDER",
            dir.join("var").display().to_string(),
        ),
        ("MESOS_ATTRIBUTES", "rack:r3;zone:eu-1".to_string()),
        ("TOKEN", TOKEN.to_string()),
    ];

    // Metrics on every interface follow the HTTP API's rules: refused without them.
    let mut refused = steward_node(&dir, &flags, &env);
    let status = eventually(Duration::from_secs(20), "the node refuses to start", || {
        refused.try_wait().ok().flatten()
    });
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.with_extension("log")).unwrap();
    assert!(log.contains("http_allow_remote"), "{log}");

    // steward's CONFIG_FOLDER holds bosun's file that allows it.
    std::fs::write(etc.join("bosun.toml"), "http_allow_remote = true\n").unwrap();
    let mut env = env;
    env.push(("CONFIG_FOLDER", etc.display().to_string()));
    let _node = Kill(steward_node(&dir, &flags, &env));
    let central = fleet.node("central");
    let row = eventually(Duration::from_secs(30), "central lists ship9 alive", || {
        let rows = json(&central.cli(&["nodes", "--json"]));
        rows.as_array()?
            .iter()
            .find(|r| r["name"] == "ship9" && r["status"] == "alive")
            .cloned()
    });
    assert_eq!(row["inventory"]["labels"]["rack"], "r3", "{row}");
    assert_eq!(row["inventory"]["labels"]["zone"], "eu-1", "{row}");

    // It runs what central sends, and its own results land in steward's layout under
    // its SUBSCRIBERS_DATA_FOLDER.
    let out = central.cli(&["exec", "-n", "ship9", "--", "echo", "from ship9"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let message = dir.join("msg.json");
    std::fs::write(
        &message,
        r#"[{"toNode":"central","method":"REQCliCommand","data":["echo","to file"],"directory":"cli-command-executed-result","fileName":"some.log"}]"#,
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["--data-dir", dir.to_str().unwrap(), "send", "--wait"])
        .arg(&message)
        .env_remove("BOSUN_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let file = dir.join("var/cli-command-executed-result/central/some.log");
    let written = eventually(Duration::from_secs(10), "the result file", || {
        std::fs::read_to_string(&file).ok()
    });
    assert_eq!(written, "to file\n");

    // /metrics on :PORT: every interface, and the token (quartermaster's TOKEN) asked.
    let address = format!("127.0.0.1:{metrics_port}");
    let (code, _) = http("GET", &address, "/metrics", None, "");
    assert_eq!(code, 401);
    let (code, page) = http("GET", &address, "/metrics", Some(TOKEN), "");
    assert_eq!(code, 200);
    assert!(page.contains("bosun_"), "{page}");
    let (code, _) = http("GET", &address, "/healthz", None, "");
    assert_eq!(code, 200);
    let log = std::fs::read_to_string(dir.with_extension("log")).unwrap();
    assert!(log.contains(&format!("0.0.0.0:{metrics_port}")), "{log}");
    assert!(
        log.contains("startSubREQErrorLog"),
        "the ignored flag is named: {log}"
    );
}
