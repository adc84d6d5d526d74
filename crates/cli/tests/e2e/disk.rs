//! A full disk: the free-space reserve, the store's fault and its recovery without a
//! restart, on a real tmpfs of a few megabytes.

use std::time::Duration;

use bosun_testkit::{NodeProcess, Tmpfs, eventually, json};

use crate::support::{bin, report, stderr, wait_state};

/// A command that waits (boundedly) for `flag` to exist, then prints `bytes` bytes.
fn big_output_after(flag: &std::path::Path, bytes: usize) -> String {
    format!(
        "i=0; while [ ! -e {} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; head -c {bytes} /dev/zero | tr '\\0' x",
        flag.display()
    )
}

#[test]
fn a_full_disk_is_survived_without_a_restart_and_loses_nothing() {
    let fs = Tmpfs::mount(8);
    let node = NodeProcess::start_with_env(
        &bin(),
        "ship1",
        None,
        fs.path(),
        &[
            ("BOSUN_DISK_RESERVE_MB", "2"),
            ("BOSUN_HELLO_INTERVAL", "0"),
        ],
    );
    let db = node.data_dir.join("bosun.redb");
    // Work acknowledged before the disk fills.
    let mut before = Vec::new();
    for i in 0..3 {
        let out = node.cli(&[
            "exec",
            "-n",
            "ship1",
            "--json",
            "--",
            "echo",
            &format!("before-{i}"),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        before.push(json(&out)[0]["id"].as_str().unwrap().to_string());
    }
    let go = fs.outside().join("GO");
    let bytes = 450_000;
    let script = big_output_after(&go, bytes);
    let waiting: Vec<String> = (0..2)
        .map(|_| {
            let out = node.cli(&[
                "exec",
                "-n",
                "ship1",
                "--unordered",
                "--no-wait",
                "--json",
                "--",
                "sh",
                "-c",
                &script,
            ]);
            assert!(out.status.success(), "{}", stderr(&out));
            json(&out)[0]["id"].as_str().unwrap().to_string()
        })
        .collect();
    for id in &waiting {
        eventually(Duration::from_secs(30), "the command runs", || {
            (report(&node, id)["received"]["state"] == "running").then_some(())
        });
    }

    // Below the reserve new submits are refused, with the numbers.
    let filler = fs.fill("filler", 1_500_000);
    let refusal = eventually(
        Duration::from_secs(10),
        "a submit refused below the reserve",
        || {
            let out = node.cli(&["exec", "-n", "ship1", "--no-wait", "--", "true"]);
            (!out.status.success()).then(|| stderr(&out))
        },
    );
    assert!(
        refusal.contains(&format!("disk nearly full at {}", db.display()))
            && refusal.contains("bytes free, below the reserve of 2097152 bytes (disk_reserve_mb)"),
        "{refusal}"
    );

    // Fill it to the last byte, then let the accepted work finish: its results do not
    // fit, and the node says so (not "corrupted").
    fs.fill("filler", 0);
    std::fs::write(&go, "").unwrap();
    let full = eventually(
        Duration::from_secs(30),
        "submits refused with a full disk",
        || {
            let out = node.cli(&["exec", "-n", "ship1", "--no-wait", "--", "true"]);
            let text = stderr(&out);
            text.contains("disk full at").then_some(text)
        },
    );
    assert!(
        full.contains(&format!("disk full at {}", db.display())) && full.contains("bytes free"),
        "{full}"
    );
    assert!(!full.to_lowercase().contains("corrupt"), "{full}");
    // The node still answers reads.
    assert_eq!(report(&node, &before[0])["sent"]["state"], "done");

    // Space comes back: the node takes submits again by itself, no restart.
    std::fs::remove_file(&filler).unwrap();
    let after = eventually(
        Duration::from_secs(30),
        "a submit accepted after space is freed",
        || {
            let out = node.cli(&["exec", "-n", "ship1", "--json", "--", "echo", "after"]);
            out.status
                .success()
                .then(|| json(&out)[0]["id"].as_str().unwrap().to_string())
        },
    );
    assert_eq!(wait_state(&node, &after, "done")["sent"]["state"], "done");
    // Everything acknowledged before is intact, and the work that finished while the
    // disk was full has its whole result.
    for (i, id) in before.iter().enumerate() {
        let r = wait_state(&node, id, "done");
        assert!(
            r.to_string().contains(&format!("before-{i}")),
            "output of {id} kept: {r}"
        );
    }
    for id in &waiting {
        let r = wait_state(&node, id, "done");
        let stdout = r["sent"]["outcome"]["stdout"].as_str().unwrap_or("");
        assert_eq!(stdout.len(), bytes, "whole result of {id}");
    }
    let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
    assert!(
        log.contains("store reopened"),
        "the store reopened in place:\n{log}"
    );
}
