//! End-to-end tests: real `bosun node` processes on a real `nats-server`.
//!
//! Each test starts its own broker on a free port and its own nodes in a temporary
//! folder; everything is killed on drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bosun_testkit::{NatsServer, NodeProcess, eventually, json};
use serde_json::Value;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bosun"))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The sender's state of a message, from `bosun status --json ID`.
fn state_of(node: &NodeProcess, id: &str) -> String {
    let out = node.cli(&["status", "--json", id]);
    if !out.status.success() {
        return String::new();
    }
    json(&out)["sent"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn exec_no_wait(node: &NodeProcess, to: &str, argv: &[&str]) -> String {
    let mut args = vec!["exec", "-n", to, "--no-wait", "--json", "--"];
    args.extend_from_slice(argv);
    let out = node.cli(&args);
    assert!(out.status.success(), "exec failed: {}", stderr(&out));
    json(&out)[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn three_nodes_exchange_commands() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let names = ["central", "ship1", "ship2"];
    let nodes: Vec<NodeProcess> = names
        .iter()
        .map(|n| NodeProcess::start(&bin(), n, Some(&nats.url()), &dir.path().join(n)))
        .collect();
    for from in &nodes {
        let others: Vec<&str> = names.iter().copied().filter(|n| *n != from.name).collect();
        let out = from.cli(&[
            "exec",
            "-n",
            &others.join(","),
            "--json",
            "--",
            "echo",
            "hello from bosun",
        ]);
        assert!(out.status.success(), "{}: {}", from.name, stderr(&out));
        let rows = json(&out);
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 2);
        for (row, to) in rows.iter().zip(&others) {
            assert_eq!(row["node"], *to);
            assert_eq!(row["state"], "done");
            assert_eq!(row["result"]["node"], *to, "ran on the destination");
            assert_eq!(row["result"]["stdout"], "hello from bosun\n");
            assert_eq!(row["result"]["exitCode"], 0);
        }
    }
    // Text output and the exit code for a failing node.
    let out = nodes[0].cli(&["exec", "-n", "ship1,ship2", "--", "sh", "-c", "exit 7"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed node makes exec exit 1"
    );
    assert!(
        stdout(&out).contains("── ship1 [failed, exit 7"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn broker_outage_100_ordered_messages_run_once_in_order() {
    let Some(mut nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let central = NodeProcess::start(
        &bin(),
        "central",
        Some(&nats.url()),
        &dir.path().join("central"),
    );
    let _ship = NodeProcess::start(
        &bin(),
        "ship1",
        Some(&nats.url()),
        &dir.path().join("ship1"),
    );
    let record = dir.path().join("order.txt");

    nats.stop();
    let messages: Vec<Value> = (1..=100)
        .map(|i| {
            serde_json::json!({
                "toNode": "ship1",
                "method": "REQCliCommand",
                "data": ["sh", "-c", format!("echo {i} >> {}", record.display())],
                "ACKTimeout": 2,
                "retries": 3,
                "methodTimeout": 10
            })
        })
        .collect();
    let file = dir.path().join("hundred.json");
    std::fs::write(&file, serde_json::to_string_pretty(&messages).unwrap()).unwrap();
    let out = central.cli(&["send", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "send while the broker is down: {}",
        stderr(&out)
    );
    let ids: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.split('\t').nth(2).unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 100);

    std::thread::sleep(Duration::from_secs(10));
    assert!(
        lines(&record).is_empty(),
        "nothing can run while the broker is down"
    );
    nats.resume();

    eventually(
        Duration::from_secs(90),
        "all 100 results back at central",
        || {
            ids.iter()
                .all(|id| state_of(&central, id) == "done")
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let want: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
    assert_eq!(
        lines(&record),
        want,
        "each message ran exactly once, in submit order"
    );
}

#[test]
fn kill_9_during_a_run_reports_interrupted_and_never_reruns() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let central = NodeProcess::start(
        &bin(),
        "central",
        Some(&nats.url()),
        &dir.path().join("central"),
    );
    let mut ship = NodeProcess::start(
        &bin(),
        "ship1",
        Some(&nats.url()),
        &dir.path().join("ship1"),
    );
    let marker = dir.path().join("started.txt");
    let script = format!("echo started >> {}; sleep 60", marker.display());
    let id = exec_no_wait(&central, "ship1", &["sh", "-c", &script]);
    eventually(Duration::from_secs(20), "the command started", || {
        (lines(&marker).len() == 1).then_some(())
    });
    assert_eq!(state_of(&central, &id), "running");

    ship.kill9();
    ship.restart();
    eventually(
        Duration::from_secs(30),
        "central hears `interrupted`",
        || (state_of(&central, &id) == "interrupted").then_some(()),
    );
    let report = json(&central.cli(&["status", "--json", &id]));
    assert!(
        report["sent"]["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("not run again"),
        "{report}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        lines(&marker).len(),
        1,
        "the command must not run a second time"
    );
}

#[test]
fn sender_crash_after_submit_loses_nothing_and_an_offline_node_gets_it_later() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut central = NodeProcess::start(
        &bin(),
        "central",
        Some(&nats.url()),
        &dir.path().join("central"),
    );
    // ship2 is not running yet: the message waits at central.
    let id = exec_no_wait(&central, "ship2", &["echo", "late but sure"]);
    central.kill9();
    central.restart();
    assert_eq!(
        state_of(&central, &id),
        "sent",
        "still waiting after the crash"
    );
    let _ship2 = NodeProcess::start(
        &bin(),
        "ship2",
        Some(&nats.url()),
        &dir.path().join("ship2"),
    );
    eventually(
        Duration::from_secs(30),
        "delivered once ship2 is up",
        || (state_of(&central, &id) == "done").then_some(()),
    );
    let report = json(&central.cli(&["status", "--json", &id]));
    assert_eq!(report["sent"]["outcome"]["stdout"], "late but sure\n");
}

#[test]
fn duplicate_delivery_is_acked_again_and_runs_once() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let _ship = NodeProcess::start(
        &bin(),
        "ship1",
        Some(&nats.url()),
        &dir.path().join("ship1"),
    );
    let marker = dir.path().join("ran.txt");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use bosun_bus::Transport;
        let options = bosun_bus::NatsOptions {
            urls: vec![nats.url()],
            name: "tester".into(),
            ..Default::default()
        };
        let bus = bosun_bus::NatsTransport::connect(&options).await.unwrap();
        assert!(bus.wait_connected(Duration::from_secs(5)).await);
        let msg = bosun_proto::Message {
            id: Some(bosun_proto::new_id()),
            to_node: Some("ship1".into()),
            from_node: Some("tester".into()),
            method: "cliCommand".into(),
            data: vec![
                "sh".into(),
                "-c".into(),
                format!("echo ran >> {}", marker.display()),
            ],
            ..Default::default()
        };
        let frame = bosun_proto::wire::encode(&bosun_proto::wire::Request { v: 1, msg });
        let mut acks = Vec::new();
        for _ in 0..3 {
            let answer = bus
                .request(
                    "bosun.ship1.cliCommand".into(),
                    frame.clone().into(),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            acks.push(bosun_proto::wire::decode_ack(&answer).unwrap());
        }
        assert!(acks.iter().all(|a| a.rejected.is_none()), "{acks:?}");
        assert!(!acks[0].duplicate);
        assert!(acks[1].duplicate && acks[2].duplicate, "{acks:?}");
    });
    eventually(Duration::from_secs(10), "the command ran", || {
        (!lines(&marker).is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lines(&marker), vec!["ran"], "three deliveries, one run");
}

#[test]
fn bad_frames_on_the_wire_are_refused_and_the_node_keeps_going() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("ship1")).unwrap();
    std::fs::write(
        dir.path().join("ship1/bosun.toml"),
        "max_message_bytes = 65536\n",
    )
    .unwrap();
    let ship = NodeProcess::start(
        &bin(),
        "ship1",
        Some(&nats.url()),
        &dir.path().join("ship1"),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use bosun_bus::Transport;
        let options = bosun_bus::NatsOptions {
            urls: vec![nats.url()],
            name: "tester".into(),
            ..Default::default()
        };
        let bus = bosun_bus::NatsTransport::connect(&options).await.unwrap();
        assert!(bus.wait_connected(Duration::from_secs(5)).await);
        let id = bosun_proto::new_id();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"this is not json".to_vec(), "malformed"),
            (br#"{"v":9,"msg":{}}"#.to_vec(), "version 9"),
            (
                format!(r#"{{"v":1,"msg":{{"id":"{id}","toNode":"ship1","fromNode":"t","method":"noSuchMethod"}}}}"#)
                    .into_bytes(),
                "unknown method",
            ),
            (
                format!(r#"{{"v":1,"msg":{{"id":"{}","toNode":"ship1","fromNode":"t","method":"pong"}}}}"#, bosun_proto::new_id())
                    .into_bytes(),
                "not served",
            ),
            (vec![b' '; 100_000], "exceeds"),
        ];
        for (payload, want) in cases {
            let answer = bus
                .request("bosun.ship1.x".into(), payload.into(), Duration::from_secs(5))
                .await
                .unwrap();
            let ack = bosun_proto::wire::decode_ack(&answer).unwrap();
            let reason = ack.rejected.unwrap_or_default();
            assert!(reason.contains(want), "want {want:?} in {reason:?}");
        }
    });
    let out = ship.cli(&["exec", "-n", "ship1", "--", "echo", "still here"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("still here"));
    let errors = std::fs::read_to_string(dir.path().join("ship1/error.log")).unwrap();
    assert!(
        errors.lines().count() >= 5,
        "each refusal is in the error log:\n{errors}"
    );
}

#[test]
fn standalone_node_runs_its_own_messages_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&bin(), "solo", None, &dir.path().join("solo"));
    let out = node.cli(&["exec", "-n", "solo", "--", "echo", "alone"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("alone"));
    let out = node.cli(&["exec", "-n", "elsewhere", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("standalone"), "{}", stderr(&out));
}

#[test]
fn the_socket_takes_steward_files_and_survives_garbage() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&bin(), "ship1", None, &dir.path().join("ship1"));
    let socket = dir.path().join("ship1/bosun.sock");
    let talk = |body: &str| -> Value {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        // No shutdown of the write side, as `nc -U` without -N: the node must answer
        // once it has a whole JSON value.
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap()
    };
    let steward = r#"[
      {
        "directory":"cli_command__result",
        "fileName": "some-file-name.result",
        "toNode": "ship1",
        "data": ["bash","-c","echo from steward"],
        "method":"REQCliCommand",
        "ACKTimeout":5,
        "retries":3,
        "replyACKTimeout":5,
        "replyRetries":3,
        "methodTimeout": 10
      }
    ]"#;
    let answer = talk(steward);
    assert_eq!(answer["ok"], true, "{answer}");
    let id = answer["queued"][0]["id"].as_str().unwrap().to_string();

    for garbage in [
        "{{{{",
        "[1, 2, 3]",
        r#"[{"toNode":"ship1","method":"REQNope"}]"#,
        r#"{"op":"explode"}"#,
        "a garbage line\n",
    ] {
        let answer = talk(garbage);
        assert_eq!(answer["ok"], false, "{garbage} → {answer}");
        assert!(!answer["error"].as_str().unwrap().is_empty());
    }
    eventually(Duration::from_secs(10), "the steward message ran", || {
        (state_of(&node, &id) == "done").then_some(())
    });
    let report = json(&node.cli(&["status", "--json", &id]));
    assert_eq!(report["sent"]["outcome"]["stdout"], "from steward\n");
}

#[test]
fn sigterm_stops_cleanly_and_state_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(&bin(), "ship1", None, &dir.path().join("ship1"));
    let out = node.cli(&["exec", "-n", "ship1", "--json", "--", "echo", "before"]);
    let id = json(&out)[0]["id"].as_str().unwrap().to_string();
    assert_eq!(node.terminate(), Some(0), "clean exit on SIGTERM");
    assert!(
        !dir.path().join("ship1/bosun.sock").exists(),
        "socket removed"
    );
    node.restart();
    let out = node.cli(&["status", &id]);
    let text = stdout(&out);
    for state in ["queued", "sent", "acked", "running", "done"] {
        assert!(text.contains(state), "history lost {state}:\n{text}");
    }
    assert!(text.contains("before"));
}

#[test]
fn config_show_layers_file_env_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bosun.toml");
    std::fs::write(
        &file,
        "name = \"from-file\"\nretries = 9\nsubject_prefix = \"fleet\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
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
    let shown: toml_like::Shown = toml_like::parse(&stdout(&out));
    assert_eq!(shown.get("name"), "\"from-flag\"");
    assert_eq!(shown.get("retries"), "4");
    assert_eq!(shown.get("subject_prefix"), "\"fleet\"");
    let out = std::process::Command::new(bin())
        .args(["--config", "/no/such/file.toml", "config", "show"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/no/such/file.toml"));
}

/// Just enough TOML reading for `key = value` lines.
mod toml_like {
    pub struct Shown(Vec<(String, String)>);
    impl Shown {
        pub fn get(&self, key: &str) -> &str {
            self.0
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{key} not shown"))
        }
    }
    pub fn parse(text: &str) -> Shown {
        Shown(
            text.lines()
                .filter_map(|l| l.split_once(" = "))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect(),
        )
    }
}

#[test]
fn nkey_authentication_is_wired_from_a_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let config = format!(
        "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
        user.public_key()
    );
    let Some(nats) = NatsServer::start_with_config(&config) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("ship.nk");
    std::fs::write(&seed, user.seed().unwrap()).unwrap();
    let seed_env = [("BOSUN_NKEY_SEED_FILE", seed.to_str().unwrap())];
    let central = NodeProcess::start_with_env(
        &bin(),
        "central",
        Some(&nats.url()),
        &dir.path().join("central"),
        &seed_env,
    );
    let _ship = NodeProcess::start_with_env(
        &bin(),
        "ship1",
        Some(&nats.url()),
        &dir.path().join("ship1"),
        &seed_env,
    );
    let out = central.cli(&[
        "exec",
        "-n",
        "ship1",
        "--timeout",
        "20",
        "--",
        "echo",
        "authenticated",
    ]);
    assert!(out.status.success(), "{} {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("authenticated"));

    // A node without the seed is refused by the server: its messages wait, never leak.
    let stranger = NodeProcess::start(
        &bin(),
        "stranger",
        Some(&nats.url()),
        &dir.path().join("stranger"),
    );
    let out = stranger.cli(&["exec", "-n", "ship1", "--timeout", "2", "--", "true"]);
    assert_eq!(out.status.code(), Some(3), "no result without credentials");
    let info = std::fs::read_to_string(stranger.log_path()).unwrap();
    assert!(
        info.to_lowercase().contains("authorization"),
        "the log says why:\n{info}"
    );
}

#[test]
fn the_subject_prefix_separates_fleets_on_one_broker() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let blue = [("BOSUN_SUBJECT_PREFIX", "blue")];
    let central = NodeProcess::start_with_env(
        &bin(),
        "central",
        Some(&nats.url()),
        &dir.path().join("central"),
        &blue,
    );
    let _ship = NodeProcess::start_with_env(
        &bin(),
        "ship1",
        Some(&nats.url()),
        &dir.path().join("ship1"),
        &blue,
    );
    let _other = NodeProcess::start_with_env(
        &bin(),
        "ship2",
        Some(&nats.url()),
        &dir.path().join("ship2"),
        &[("BOSUN_SUBJECT_PREFIX", "green")],
    );
    let out = central.cli(&["exec", "-n", "ship1", "--", "echo", "blue fleet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = central.cli(&["exec", "-n", "ship2", "--timeout", "2", "--", "true"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "ship2 listens under another prefix"
    );
}

/// Nodes that report to `central` every second.
fn central_env() -> [(&'static str, &'static str); 2] {
    [("BOSUN_CENTRAL", "central"), ("BOSUN_HELLO_INTERVAL", "1")]
}

fn fleet_status(central: &NodeProcess) -> Vec<(String, String)> {
    let out = central.cli(&["nodes", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn central_keeps_the_fleet_and_a_stopped_node_turns_suspect_then_down() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = central_env();
    let central = NodeProcess::start_with_env(
        &bin(),
        "central",
        Some(&nats.url()),
        &dir.path().join("central"),
        &env,
    );
    let _ship1 = NodeProcess::start_with_env(
        &bin(),
        "ship1",
        Some(&nats.url()),
        &dir.path().join("ship1"),
        &env,
    );
    let mut ship2 = NodeProcess::start_with_env(
        &bin(),
        "ship2",
        Some(&nats.url()),
        &dir.path().join("ship2"),
        &env,
    );
    eventually(Duration::from_secs(20), "three nodes alive", || {
        let fleet = fleet_status(&central);
        (fleet.len() == 3 && fleet.iter().all(|(_, s)| s == "alive")).then_some(())
    });
    let table = stdout(&central.cli(&["nodes"]));
    assert!(
        table.contains("ship1") && table.contains("alive"),
        "{table}"
    );

    // toNodes ["*"] reaches every node in the registry, each tracked on its own.
    let out = central.cli(&["send", "--wait", "--json", "-"]);
    assert!(!out.status.success(), "send - needs stdin");
    let star = dir.path().join("star.json");
    std::fs::write(
        &star,
        r#"[{"toNodes":["*"],"method":"REQCliCommand","data":["echo","everyone"]}]"#,
    )
    .unwrap();
    let out = central.cli(&["send", "--wait", "--json", star.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json(&out);
    let mut nodes: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, vec!["central", "ship1", "ship2"]);

    ship2.kill9();
    eventually(Duration::from_secs(20), "ship2 suspect", || {
        fleet_status(&central)
            .contains(&("ship2".into(), "suspect".into()))
            .then_some(())
    });
    eventually(Duration::from_secs(20), "ship2 down", || {
        fleet_status(&central)
            .contains(&("ship2".into(), "down".into()))
            .then_some(())
    });
    assert!(fleet_status(&central).contains(&("ship1".into(), "alive".into())));
}

#[test]
fn results_land_in_centrals_data_folder_and_streams_arrive_in_order() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = central_env();
    let central = NodeProcess::start_with_env(
        &bin(),
        "central",
        Some(&nats.url()),
        &dir.path().join("central"),
        &env,
    );
    let _ship1 = NodeProcess::start_with_env(
        &bin(),
        "ship1",
        Some(&nats.url()),
        &dir.path().join("ship1"),
        &env,
    );
    let msgs = r#"[
      {"directory": "cli/out", "fileName": "uname.result", "toNode": "ship1",
       "data": ["sh", "-c", "echo from ship1"], "method": "REQCliCommand", "replyMethod": "REQToFile"},
      {"directory": "stream", "fileName": "count.log", "toNode": "ship1",
       "data": ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done"],
       "method": "REQnCliCommandCont", "replyMethod": "REQToFileAppend", "methodTimeout": 20}
    ]"#;
    let file = dir.path().join("msgs.json");
    std::fs::write(&file, msgs).unwrap();
    let out = central.cli(&["send", "--wait", "--json", file.to_str().unwrap()]);
    assert!(out.status.success(), "{} {}", stdout(&out), stderr(&out));
    let rows = json(&out);
    assert_eq!(
        rows[1]["output"], "line 1\nline 2\nline 3\nline 4\nline 5\n",
        "{rows}"
    );
    assert!(
        rows[1]["result"]["chunks"].as_u64().unwrap() >= 2,
        "streamed in several chunks: {rows}"
    );

    let results = dir.path().join("central/data/ship1");
    let written = std::fs::read_to_string(results.join("cli/out/uname.result")).unwrap();
    assert_eq!(written, "from ship1\n");
    let appended = std::fs::read_to_string(results.join("stream/count.log")).unwrap();
    assert_eq!(appended, "line 1\nline 2\nline 3\nline 4\nline 5\n");
}

#[test]
fn errors_on_a_node_reach_centrals_error_log() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = central_env();
    let central = NodeProcess::start_with_env(
        &bin(),
        "central",
        Some(&nats.url()),
        &dir.path().join("central"),
        &env,
    );
    let ship1 = NodeProcess::start_with_env(
        &bin(),
        "ship1",
        Some(&nats.url()),
        &dir.path().join("ship1"),
        &env,
    );
    // ship1 gives up on a message to a node that never appears: an error on ship1.
    let out = ship1.cli(&[
        "exec",
        "-n",
        "nowhere",
        "--ttl",
        "1",
        "--timeout",
        "10",
        "--json",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let id = json(&out)[0]["id"].as_str().unwrap().to_string();
    let log = dir.path().join("central/error.log");
    let line = eventually(Duration::from_secs(20), "the error reached central", || {
        std::fs::read_to_string(&log)
            .ok()?
            .lines()
            .find(|l| l.contains(&id))
            .map(str::to_string)
    });
    let entry: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["from"], "ship1");
    assert!(
        entry["entry"]["reason"].as_str().unwrap().contains("ttl"),
        "{entry}"
    );
    drop(central);
}

/// Send raw bytes to a node's `bosun.sock` the way `nc -U` does (no shutdown of the
/// write side) and return its one-line answer.
fn nc_u(node: &NodeProcess, body: &str) -> Value {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(node.data_dir.join("bosun.sock")).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

fn queued_ids(answer: &Value) -> Vec<String> {
    assert_eq!(answer["ok"], true, "{answer}");
    answer["queued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_str().unwrap().to_string())
        .collect()
}

fn wait_state(node: &NodeProcess, id: &str, want: &str) -> Value {
    eventually(Duration::from_secs(30), &format!("{id} {want}"), || {
        let report = json(&node.cli(&["status", "--json", id]));
        (report["sent"]["state"] == want).then_some(report)
    })
}

/// A tiny HTTP server for httpGet: answers every request with `body`.
fn http_server(body: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/")
}

/// Every message example of the steward document, fed unchanged through the socket;
/// only host names and paths are adjusted (ship1, ship2, central stay as they are).
#[test]
fn steward_document_examples_work_unchanged() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The examples run `tree`; give the nodes one (an adjusted path, not a changed message).
    let shims = dir.path().join("bin");
    std::fs::create_dir_all(&shims).unwrap();
    std::fs::write(shims.join("tree"), "#!/bin/sh\necho \"tree of $(pwd)\"\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(shims.join("tree"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [
        ("BOSUN_CENTRAL", "central"),
        ("BOSUN_HELLO_INTERVAL", "1"),
        ("PATH", path.as_str()),
    ];
    let central = NodeProcess::start_with_env(
        &bin(),
        "central",
        Some(&nats.url()),
        &dir.path().join("central"),
        &env,
    );
    let _ship1 = NodeProcess::start_with_env(
        &bin(),
        "ship1",
        Some(&nats.url()),
        &dir.path().join("ship1"),
        &env,
    );
    let _ship2 = NodeProcess::start_with_env(
        &bin(),
        "ship2",
        Some(&nats.url()),
        &dir.path().join("ship2"),
        &env,
    );
    let results = dir.path().join("central/data");

    // "What is it?": REQCliCommand with replyMethod REQToFileAppend.
    let ids = queued_ids(&nc_u(
        &central,
        r#"[
{
"directory":"cli_command__result",
"fileName": "some-file-name.result",
"toNode": "ship1",
"data": ["bash","-c","sleep 5 & tree ./"],
"method":"REQCliCommand",
"replyMethod":"REQToFileAppend",
"ACKTimeout":5,
"retries":3,
"replyACKTimeout":5,
"replyRetries":3,
"methodTimeout": 10
}
]"#,
    ));
    let report = wait_state(&central, &ids[0], "done");
    assert!(
        report["sent"]["outcome"]["stdout"]
            .as_str()
            .unwrap()
            .starts_with("tree of")
    );
    let appended =
        std::fs::read_to_string(results.join("ship1/cli_command__result/some-file-name.result"))
            .unwrap();
    assert!(appended.starts_with("tree of"), "{appended}");

    // "Example JSON for appending a message of type command into the socket file".
    let ids = queued_ids(&nc_u(
        &central,
        r#"[
{
"directory":"/var/steward/cli-command/executed-result",
"fileName": "some.log",
"toNode": "ship1",
"data": ["bash","-c","sleep 3 & tree ./"],
"method":"REQCliCommand",
"ACKTimeout":10,
"retries":3,
"methodTimeout": 4
}
]"#,
    ));
    wait_state(&central, &ids[0], "done");
    let written = std::fs::read_to_string(
        results.join("ship1/var/steward/cli-command/executed-result/some.log"),
    )
    .unwrap();
    assert!(
        written.starts_with("tree of"),
        "absolute directories stay inside the data folder"
    );

    // "Specify more messages at once".
    let ids = queued_ids(&nc_u(
        &central,
        r#"[
{
"directory":"cli-command-executed-result",
"fileName": "some.log",
"toNode": "ship1",
"data": ["bash","-c","sleep 3 & tree ./"],
"method":"REQCliCommand",
"ACKTimeout":10,
"retries":3,
"methodTimeout": 4
},
{
"directory":"cli-command-executed-result",
"fileName": "some.log",
"toNode": "ship2",
"data": ["bash","-c","sleep 3 & tree ./"],
"method":"REQCliCommand",
"ACKTimeout":10,
"retries":3,
"methodTimeout": 4
}
]"#,
    ));
    assert_eq!(ids.len(), 2);
    for id in &ids {
        wait_state(&central, id, "done");
    }
    for ship in ["ship1", "ship2"] {
        assert!(
            results
                .join(ship)
                .join("cli-command-executed-result/some.log")
                .exists()
        );
    }

    // "Send an Op Command message for process listing with custom timeout and amount of retries".
    let ids = queued_ids(&nc_u(
        &central,
        r#"[
{
"directory":"opcommand_logs",
"fileName": "some.log",
"toNode": "ship2",
"data": [],
"method":"REQOpCommand",
"operation":{
"opCmd":"ps"
},
"ACKTimeout":3,
"retries":3,
"replyACKTimeout":3,
"replyRetries":3,
"methodTimeout": 7
}
]"#,
    ));
    let report = wait_state(&central, &ids[0], "done");
    assert!(
        report["sent"]["outcome"]["stdout"]
            .as_str()
            .unwrap()
            .contains("httpGet\t*")
    );

    // "Send and Op Command to start a subscriber on a node": httpGet only for central, node1.
    let ids = queued_ids(&nc_u(
        &central,
        r#"[
{
"directory":"opcommand_logs",
"fileName": "some.log",
"toNode": "ship2",
"data": [],
"method":"REQOpCommand",
"operation":{
"opCmd":"startProc",
"opArg": {
"method": "REQHttpGet",
"allowedNodes": ["central","node1"]
}
},
"ACKTimeout":3,
"retries":3,
"replyACKTimeout":3,
"replyRetries":3,
"methodTimeout": 7
}
]"#,
    ));
    wait_state(&central, &ids[0], "done");
    let ps = std::fs::read_to_string(results.join("ship2/opcommand_logs/some.log")).unwrap();
    assert!(ps.contains("serving httpGet for central, node1"), "{ps}");

    // "Send the same message to several hosts by using the toHosts field" (URL adjusted).
    let url = http_server("<html>finn</html>");
    let msg = r#"[
{
"directory": "httpget",
"fileName": "finn.no.html",
"toNode": "",
"toNodes": ["central","ship2"],
"data": ["URL"],
"method":"REQHttpGet",
"replyMethod":"REQToFile",
"ACKTimeout":5,
"retries":3,
"methodTimeout": 5
}
]"#
    .replace("URL", &url);
    let ids = queued_ids(&nc_u(&central, &msg));
    assert_eq!(ids.len(), 2);
    for id in &ids {
        wait_state(&central, id, "done");
    }
    for node in ["central", "ship2"] {
        let page =
            std::fs::read_to_string(results.join(node).join("httpget/finn.no.html")).unwrap();
        assert_eq!(page, "<html>finn</html>");
    }

    // "Send and Op Command to stop a subscriber on a node": then httpGet is refused.
    let ids = queued_ids(&nc_u(
        &central,
        r#"[
{
"directory":"opcommand_logs",
"fileName": "some.log",
"toNode": "ship2",
"data": [],
"method":"REQOpCommand",
"operation":{
"opCmd":"stopProc",
"opArg": {
"method": "REQHttpGet",
"kind": "subscriber",
"receivingNode": "ship2"
}
},
"ACKTimeout":3,
"retries":3,
"replyACKTimeout":3,
"replyRetries":3,
"methodTimeout": 7
}
]"#,
    ));
    wait_state(&central, &ids[0], "done");
    let ids = queued_ids(&nc_u(
        &central,
        &format!(
            r#"[{{"toNode":"ship2","data":["{url}"],"method":"REQHttpGet","methodTimeout":5}}]"#
        ),
    ));
    let report = wait_state(&central, &ids[0], "rejected");
    assert!(
        report["sent"]["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("not served")
    );

    // "and another example": startProc for REQnCliCommandCont, with "MethodTimeout".
    let ids = queued_ids(&nc_u(
        &central,
        r#"[
{
"directory":"opcommand_logs",
"fileName": "some.log",
"toNode": "ship2",
"data": [],
"method":"REQOpCommand",
"operation":{
"opCmd":"startProc",
"opArg": {
"method": "REQnCliCommandCont",
"allowedNodes": ["central"]
}
},
"replyMethod":"REQToFileAppend",
"ACKTimeout":3,
"retries":3,
"replyACKTimeout":3,
"replyRetries":3,
"MethodTimeout": 7
}
]"#,
    ));
    wait_state(&central, &ids[0], "done");

    // "Tail a log file on a node, and save the result of the tail centrally" (path adjusted).
    let log = dir.path().join("test.log");
    std::fs::write(&log, "old line\n").unwrap();
    let msg = r#"[
{
"directory": "./my/log/files/",
"fileName": "some.log",
"toNode": "ship2",
"data": ["LOG"],
"method":"REQTailFile",
"ACKTimeout":5,
"retries":3,
"methodTimeout": 200
}
]"#
    .replace("LOG", log.to_str().unwrap());
    let ids = queued_ids(&nc_u(&central, &msg));
    wait_state(&central, &ids[0], "running");
    std::thread::sleep(Duration::from_millis(500));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        writeln!(f, "new line 1\nnew line 2").unwrap();
    }
    eventually(
        Duration::from_secs(20),
        "tailed lines reach central",
        || {
            let report = json(&central.cli(&["status", "--json", &ids[0]]));
            (report["output"] == "new line 1\nnew line 2\n").then_some(())
        },
    );
}

fn http_get_text(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_move_and_the_audit_log_can_recreate_messages() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = bosun_testkit::free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let mut env = central_env().to_vec();
    env.push(("BOSUN_METRICS_LISTEN", addr.as_str()));
    let central = NodeProcess::start_with_env(
        &bin(),
        "central",
        Some(&nats.url()),
        &dir.path().join("central"),
        &env,
    );
    let _ship1 = NodeProcess::start_with_env(
        &bin(),
        "ship1",
        Some(&nats.url()),
        &dir.path().join("ship1"),
        &central_env(),
    );
    assert!(http_get_text(&addr, "/healthz").ends_with("ok"));
    let before = http_get_text(&addr, "/metrics");
    let done = r#"bosun_messages_total{method="cliCommand",state="done"}"#;
    let out = central.cli(&["exec", "-n", "ship1", "--", "true"]);
    assert!(out.status.success());
    let out = central.cli(&["exec", "-n", "ship1", "--", "false"]);
    assert_eq!(out.status.code(), Some(1));
    let after = eventually(Duration::from_secs(15), "metrics show the runs", || {
        let text = http_get_text(&addr, "/metrics");
        (metric(&text, done) >= metric(&before, done) + 1.0
            && metric(&text, r#"bosun_fleet_nodes{status="alive"}"#) >= 2.0)
            .then_some(text)
    });
    assert!(
        metric(
            &after,
            r#"bosun_messages_total{method="cliCommand",state="failed"}"#
        ) >= 1.0
    );
    assert!(
        metric(&after, "bosun_delivery_latency_seconds_count") >= 2.0,
        "{after}"
    );
    assert!(after.contains(r#"bosun_node_last_seen_seconds{node="ship1"}"#));

    let audit = std::fs::read_to_string(dir.path().join("central/audit.log")).unwrap();
    let submitted: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == "submitted" && l["message"]["method"] == "cliCommand")
        .collect();
    assert_eq!(submitted.len(), 2);
    let again: bosun_proto::Message =
        serde_json::from_value(submitted[1]["message"].clone()).unwrap();
    assert_eq!(
        again.data,
        vec!["false"],
        "the audit line holds the whole message"
    );
}

#[test]
fn copy_a_file_between_nodes_in_hashed_chunks() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let central = NodeProcess::start(
        &bin(),
        "central",
        Some(&nats.url()),
        &dir.path().join("central"),
    );
    let _ship1 = NodeProcess::start(
        &bin(),
        "ship1",
        Some(&nats.url()),
        &dir.path().join("ship1"),
    );
    let mut ship2 = NodeProcess::start(
        &bin(),
        "ship2",
        Some(&nats.url()),
        &dir.path().join("ship2"),
    );
    let src = dir.path().join("src.bin");
    let content: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &content).unwrap();
    let dst = dir.path().join("copied/dst.bin");
    // ship2 is down when the copy starts: the chunks wait in ship1's outbox.
    ship2.kill9();
    let msg = serde_json::json!([{
        "toNode": "ship1", "method": "copySrc",
        "data": [src.to_str().unwrap(), "ship2", dst.to_str().unwrap(), "65536"]
    }]);
    let file = dir.path().join("copy.json");
    std::fs::write(&file, msg.to_string()).unwrap();
    let out = central.cli(&["send", "--wait", "--json", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        json(&out)[0]["result"]["stdout"]
            .as_str()
            .unwrap()
            .contains("in 11 chunks")
    );
    assert!(!dst.exists());
    ship2.restart();
    eventually(Duration::from_secs(30), "the copy completes", || {
        (std::fs::read(&dst).ok()? == content).then_some(())
    });
    assert!(!dir.path().join("copied/dst.bin.bosun-part").exists());
}

// === containers (a real Docker engine and a locally built test image) ===

/// Removes containers by name or id, and every container a set of nodes created, on drop.
struct DockerCleanup {
    names: Vec<String>,
    nodes: Vec<String>,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let mut ids = self.names.clone();
        for node in &self.nodes {
            let out = std::process::Command::new("docker")
                .args([
                    "ps",
                    "-aq",
                    "--filter",
                    &format!("label=org.bosun.node={node}"),
                ])
                .output();
            if let Ok(out) = out {
                ids.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .split_whitespace()
                        .map(str::to_string),
                );
            }
        }
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
    }
}

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &bosun_proto::new_id()[16..]).to_lowercase()
}

/// One HTTP/1.1 request; returns the status code and the body.
fn http(addr: &str, method: &str, path: &str, bearer: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Chunked bodies: keep the JSON between the first '{' or '[' and the last '}' or ']'.
    let start = body.find(['{', '[']).unwrap_or(0);
    let end = body.rfind(['}', ']']).map(|e| e + 1).unwrap_or(body.len());
    (code, body[start..end].to_string())
}

fn tcp_line(addr: &str, request: &str) -> Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    serde_json::from_str(answer.trim()).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

#[test]
fn lsdsuite_port_answers_status_and_kills_a_real_container() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", bosun_testkit::free_port());
    let _node = NodeProcess::start_with_env(
        &bin(),
        "lsd",
        None,
        &dir.path().join("lsd"),
        &[("BOSUN_LSDSUITE_LISTEN", addr.as_str())],
    );
    let victim = unique("bosun-e2e-lsd-kill-");
    let paused = unique("bosun-e2e-lsd-pause-");
    let _cleanup = DockerCleanup {
        names: vec![victim.clone(), paused.clone()],
        nodes: vec![],
    };
    docker(&["run", "-d", "--name", &victim, &image, "sleep", "300"]);
    docker(&["run", "-d", "--name", &paused, &image, "sleep", "300"]);

    let status = tcp_line(&addr, r#"{"command": "status"}"#);
    let host = std::process::Command::new("hostname").output().unwrap();
    assert_eq!(
        status,
        serde_json::json!({"status": "ok", "msg": stdout(&host).trim()})
    );

    let killed = tcp_line(
        &addr,
        &format!(r#"{{"command": "kill", "params": {{"id": "{victim}", "signal": "SIGKILL"}}}}"#),
    );
    assert_eq!(killed["status"], "ok", "{killed}");
    eventually(
        Duration::from_secs(10),
        "the container died of SIGKILL",
        || {
            (docker(&[
                "inspect",
                "-f",
                "{{.State.Status}} {{.State.ExitCode}}",
                &victim,
            ]) == "exited 137")
                .then_some(())
        },
    );

    assert_eq!(
        tcp_line(
            &addr,
            &format!(r#"{{"command": "pause", "params": {{"id": "{paused}"}}}}"#)
        )["status"],
        "ok"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &paused]),
        "paused"
    );
    assert_eq!(
        tcp_line(
            &addr,
            &format!(r#"{{"command": "unpause", "params": {{"id": "{paused}"}}}}"#)
        )["status"],
        "ok"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &paused]),
        "running"
    );

    let marked = tcp_line(
        &addr,
        r#"{"command": "mark", "params": {"msg": "fault injected here"}}"#,
    );
    assert_eq!(marked["status"], "ok", "{marked}");
    let stream = std::fs::read_to_string(dir.path().join("lsd/capture/default.log")).unwrap();
    assert!(
        stream
            .lines()
            .any(|l| l.contains(" MARK ") && l.ends_with("fault injected here")),
        "{stream}"
    );

    let switched = tcp_line(
        &addr,
        r#"{"command": "log", "params": {"file": "run2.log"}}"#,
    );
    assert_eq!(switched["status"], "ok");
    tcp_line(
        &addr,
        r#"{"command": "mark", "params": {"msg": "in run2"}}"#,
    );
    let run2 = std::fs::read_to_string(dir.path().join("lsd/capture/run2.log")).unwrap();
    assert!(run2.contains("in run2"));

    let missing = tcp_line(
        &addr,
        r#"{"command": "kill", "params": {"id": "no-such-container-xyz"}}"#,
    );
    assert_eq!(missing["status"], "err");
    assert!(
        missing["msg"]
            .as_str()
            .unwrap()
            .contains("no such container"),
        "{missing}"
    );
    let unknown = tcp_line(&addr, r#"{"command": "explode"}"#);
    assert_eq!(unknown["status"], "err");
    assert!(tcp_line(&addr, "garbage\n")["status"] == "err");
    assert_eq!(
        tcp_line(&addr, r#"{"command": "status"}"#)["status"],
        "ok",
        "still serving"
    );
}

#[test]
fn quartermaster_runs_on_a_worker_reports_status_and_stops_behind_its_token() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (central_name, worker, manager) = (unique("qmc"), unique("qmw"), unique("qmm"));
    let _cleanup = DockerCleanup {
        names: vec![],
        nodes: vec![central_name.clone(), worker.clone(), manager.clone()],
    };
    let addr = format!("127.0.0.1:{}", bosun_testkit::free_port());
    let token = "4jrs8-534js-345ds-3lrd0";
    let common = |extra: &[(&'static str, &str)]| {
        let mut env: Vec<(&str, String)> = vec![
            ("BOSUN_CENTRAL", central_name.clone()),
            ("BOSUN_HELLO_INTERVAL", "1".into()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        env
    };
    let start = |name: &str, env: Vec<(&str, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        NodeProcess::start_with_env(
            &bin(),
            name,
            Some(&nats.url()),
            &dir.path().join(name),
            &env,
        )
    };
    let central = start(
        &central_name,
        common(&[("BOSUN_HTTP_LISTEN", &addr), ("BOSUN_HTTP_TOKEN", token)]),
    );
    let _w = start(&worker, common(&[("BOSUN_LABELS", "role=worker")]));
    let _m = start(&manager, common(&[("BOSUN_LABELS", "role=manager")]));
    eventually(Duration::from_secs(20), "fleet alive", || {
        (fleet_status(&central).len() == 3).then_some(())
    });

    let body = serde_json::json!({
        "token": token, "command": "sleep 300", "image": image, "name": unique("bosun-e2e-qm-"),
        "labels": {"name": "value"}, "memory": 64
    })
    .to_string();
    let (code, answer) = http(&addr, "POST", "/run", None, &body);
    assert_eq!(code, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["success"], true);
    let id = answer["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"org.bosun.node\"}}",
            &id
        ]),
        worker,
        "placed on the worker"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.HostConfig.Memory}}", &id]),
        (64 * 1024 * 1024).to_string()
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{json .Config.Cmd}}", &id]),
        r#"["sleep","300"]"#
    );

    let (code, status) = http(
        &addr,
        "GET",
        &format!("/status/{id}?token={token}"),
        None,
        "",
    );
    assert_eq!(code, 200, "{status}");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        (status["success"].clone(), status["status"].clone()),
        (Value::Bool(true), "started".into())
    );

    for (path, body) in [
        ("/run", r#"{"token":"wrong","image":"x"}"#),
        ("/stop", r#"{"id":"x"}"#),
    ] {
        let (code, answer) = http(&addr, "POST", path, None, body);
        assert_eq!(code, 401, "{path}: {answer}");
        assert_eq!(
            serde_json::from_str::<Value>(&answer).unwrap()["success"],
            false
        );
    }
    assert_eq!(
        http(&addr, "GET", &format!("/status/{id}?token=nope"), None, "").0,
        401
    );
    assert_eq!(http(&addr, "GET", "/v1/nodes", None, "").0, 401);
    assert_eq!(http(&addr, "GET", "/v1/nodes", Some(token), "").0, 200);

    let (code, answer) = http(
        &addr,
        "POST",
        "/stop",
        None,
        &format!(r#"{{"token":"{token}","id":"{id}"}}"#),
    );
    assert_eq!(code, 200, "{answer}");
    let gone = std::process::Command::new("docker")
        .args(["inspect", &id])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "stopped and removed");
}

#[test]
fn dockermod_spreads_four_instances_and_lists_them_cluster_wide() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let names = [unique("dma"), unique("dmb"), unique("dmc")];
    let _cleanup = DockerCleanup {
        names: vec![],
        nodes: names.to_vec(),
    };
    let addr = format!("127.0.0.1:{}", bosun_testkit::free_port());
    let token = "0123456789abcdef0123";
    let mut nodes = Vec::new();
    for name in &names {
        // DockerMod's templates: the Docker create-container JSON, one file per template.
        let templates = dir.path().join(name).join("templates");
        std::fs::create_dir_all(&templates).unwrap();
        let template = serde_json::json!({"Image": image, "Cmd": ["sleep", "300"], "Labels": {"from": "template"}});
        std::fs::write(templates.join("sleeper.json"), template.to_string()).unwrap();
    }
    for (i, name) in names.iter().enumerate() {
        let mut env = vec![
            ("BOSUN_CENTRAL", names[0].as_str()),
            ("BOSUN_HELLO_INTERVAL", "1"),
        ];
        if i == 0 {
            env.push(("BOSUN_HTTP_LISTEN", addr.as_str()));
            env.push(("BOSUN_HTTP_TOKEN", token));
        }
        nodes.push(NodeProcess::start_with_env(
            &bin(),
            name,
            Some(&nats.url()),
            &dir.path().join(name),
            &env,
        ));
    }
    eventually(Duration::from_secs(20), "fleet alive", || {
        (fleet_status(&nodes[0]).len() == 3).then_some(())
    });

    let body =
        serde_json::json!({"action": "create-container", "template": "sleeper", "instances": 4})
            .to_string();
    let (code, answer) = http(&addr, "POST", "/", Some(token), &body);
    assert_eq!(code, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    let created = answer["containers"].as_array().unwrap();
    assert_eq!(created.len(), 4, "{answer}");
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for c in created {
        assert_eq!(c["statusCode"], 201, "{c}");
        let id = c["Response"]["Body"]["Id"].as_str().unwrap();
        let on = docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"org.bosun.node\"}}",
            id,
        ]);
        assert_eq!(on, c["dockerInstance"].as_str().unwrap());
        let from = docker(&["inspect", "-f", "{{index .Config.Labels \"from\"}}", id]);
        assert_eq!(from, "template");
        *per_node.entry(on).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_node.values().copied().collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![1, 1, 2],
        "spread evenly over the three live nodes: {per_node:?}"
    );

    // Without the token DockerMod's requests are refused (unless dockermod_open is set).
    let (code, _) = http(&addr, "POST", "/", None, r#"{"action": "list-containers"}"#);
    assert_eq!(code, 401);
    let (code, list) = http(
        &addr,
        "POST",
        "/",
        Some(token),
        r#"{"action": "list-containers", "all": true}"#,
    );
    assert_eq!(code, 200, "{list}");
    let list: Value = serde_json::from_str(&list).unwrap();
    for c in created {
        let id = c["Response"]["Body"]["Id"].as_str().unwrap();
        let row = list["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id);
        assert_eq!(
            row.unwrap()["node"],
            c["dockerInstance"],
            "listed with its node"
        );
    }
    assert!(list["unanswered"].as_array().unwrap().is_empty());

    let first = created[0]["Response"]["Body"]["Id"].as_str().unwrap();
    let (code, started) = http(
        &addr,
        "POST",
        "/",
        Some(token),
        &format!(
            r#"{{"action": "start-container", "id": "{}"}}"#,
            &first[..12]
        ),
    );
    assert_eq!(code, 200, "{started}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", first]),
        "running"
    );
    let (code, _) = http(
        &addr,
        "POST",
        "/",
        Some(token),
        &format!(r#"{{"action": "stop-container", "id": "{first}"}}"#),
    );
    assert_eq!(code, 200);
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", first]),
        "exited"
    );

    // The CLI sees the same cluster-wide list.
    let out = nodes[0].cli(&["container", "ls", "--all", "--stopped", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(json(&out).as_array().unwrap().len() >= 4);
}

#[test]
fn labelled_container_logs_and_stats_reach_the_event_stream_with_a_mark_between() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cap");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("bosun.toml"), "stats_interval_secs = 1\n").unwrap();
    let node = NodeProcess::start(&bin(), "cap", None, &data);
    let (labelled, syslogged) = (unique("bosun-e2e-cap-lbl-"), unique("bosun-e2e-cap-sys-"));
    let _cleanup = DockerCleanup {
        names: vec![labelled.clone(), syslogged.clone()],
        nodes: vec![],
    };
    let id = docker(&[
        "run",
        "-d",
        "--name",
        &labelled,
        "--label",
        "org.lsdsuite.stats=true",
        &image,
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.2; done",
    ]);
    let socket = data.join("sock/logs.sock");
    let sys_id = docker(&[
        "run",
        "-d",
        "--name",
        &syslogged,
        "--log-driver",
        "syslog",
        "--log-opt",
        &format!("syslog-address=unix://{}", socket.display()),
        "--log-opt",
        "syslog-format=rfc5424micro",
        "--log-opt",
        "tag={{.FullID}}",
        &image,
        "sh",
        "-c",
        "while true; do echo via-syslog; sleep 0.2; done",
    ]);
    let stream_path = data.join("capture/default.log");
    let read = || std::fs::read_to_string(&stream_path).unwrap_or_default();
    eventually(
        Duration::from_secs(30),
        "LOG and STATS of the labelled container",
        || {
            let s = read();
            (s.lines()
                .any(|l| l.contains(" LOG ") && l.contains(&id) && l.ends_with("tick"))
                && s.lines().any(|l| l.contains(" STATS ") && l.contains(&id)))
            .then_some(())
        },
    );
    let out = node.cli(&["send", "--wait", "-"]);
    assert!(!out.status.success());
    let mark = data.join("mark.json");
    std::fs::write(
        &mark,
        r#"[{"toNode": "cap", "method": "mark", "data": ["between the ticks"]}]"#,
    )
    .unwrap();
    let out = node.cli(&["send", "--wait", mark.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(
        Duration::from_secs(20),
        "ticks after the mark, and syslog lines",
        || {
            let s = read();
            let lines: Vec<&str> = s.lines().collect();
            let at = lines
                .iter()
                .position(|l| l.contains(" MARK ") && l.ends_with("between the ticks"))?;
            let tick_after = lines[at..]
                .iter()
                .any(|l| l.contains(" LOG ") && l.contains(&id));
            let syslog = lines
                .iter()
                .any(|l| l.contains(" LOG ") && l.contains(&sys_id) && l.ends_with("via-syslog"));
            (tick_after && syslog).then_some(())
        },
    );
    assert!(
        read().lines().any(|l| l.contains(" HOST ")),
        "host stats are sampled too"
    );
}

#[test]
fn the_event_stream_ships_to_central() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ship_dir = dir.path().join("ship1");
    std::fs::create_dir_all(&ship_dir).unwrap();
    std::fs::write(ship_dir.join("bosun.toml"), "capture_ship = true\n").unwrap();
    let central = NodeProcess::start_with_env(
        &bin(),
        "central",
        Some(&nats.url()),
        &dir.path().join("central"),
        &central_env(),
    );
    let ship = NodeProcess::start_with_env(
        &bin(),
        "ship1",
        Some(&nats.url()),
        &ship_dir,
        &central_env(),
    );
    let mark = dir.path().join("mark.json");
    std::fs::write(
        &mark,
        r#"[{"toNode": "ship1", "method": "mark", "data": ["shipped mark"]}]"#,
    )
    .unwrap();
    let out = ship.cli(&["send", "--wait", mark.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shipped = dir.path().join("central/data/ship1/capture/default.log");
    eventually(Duration::from_secs(30), "the mark reached central", || {
        std::fs::read_to_string(&shipped)
            .ok()?
            .lines()
            .any(|l| l.contains(" MARK ship1 ") && l.ends_with("shipped mark"))
            .then_some(())
    });
    drop(central);
}

#[test]
fn save_config_makes_flags_the_next_starts_defaults_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let run = |extra: &[&str]| {
        let mut child = std::process::Command::new(bin())
            .args([
                "node",
                "--name",
                "saver",
                "--data-dir",
                data.to_str().unwrap(),
            ])
            .args(extra)
            .env_remove("BOSUN_CONFIG")
            .stderr(std::process::Stdio::null())
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
    assert!(
        saved.contains("retries = 7") && saved.contains("name = \"saver\""),
        "{saved}"
    );
    let out = std::process::Command::new(bin())
        .args(["--data-dir", data.to_str().unwrap(), "config", "show"])
        .env_remove("BOSUN_CONFIG")
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("retries = 7"),
        "the next start's default"
    );
}
