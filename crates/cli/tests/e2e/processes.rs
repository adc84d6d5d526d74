//! Nothing outlives its node: a command dies with the node that runs it (parent-death
//! signal), and what it forked is killed when the node starts again, before the run is
//! reported `interrupted`.

use std::time::Duration;

use bosun_testkit::{NodeProcess, eventually, holds_for};

use crate::support::{exec_no_wait, fleet, lines, report, stderr, stdout};

/// What bosun reads of `/proc/PID/stat`: (state, process group).
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(2)?.parse().ok()?,
    ))
}

/// Every process on the host that has not ended (zombies wait for a reaper, they run
/// nothing).
fn running() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X')))
        .collect()
}

/// The running processes of process group `pgid`.
fn in_group(pgid: i32) -> Vec<i32> {
    running()
        .into_iter()
        .filter(|pid| stat(*pid).is_some_and(|(_, group)| group == pgid))
        .collect()
}

/// The running processes whose argv is exactly `argv`.
fn with_argv(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    running()
        .into_iter()
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// The process group ship1 recorded for the run of `id`, once it is recorded.
fn recorded_group(ship: &NodeProcess, id: &str) -> i32 {
    eventually(
        Duration::from_secs(20),
        "ship1 records the run's process group",
        || {
            // Unknown (an error) until the message has arrived.
            let out = ship.cli(&["status", "--json", id]);
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            report["received"]["process"]["pgid"].as_i64()
        },
    ) as i32
}

/// Kills what is left of the processes `left` names when a test ends, so that a
/// failing test leaves nothing running on the host.
struct Leftovers<F: Fn() -> Vec<i32>>(F);

impl<F: Fn() -> Vec<i32>> Drop for Leftovers<F> {
    fn drop(&mut self) {
        for pid in (self.0)() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn the_error(central: &NodeProcess, id: &str) -> String {
    eventually(
        Duration::from_secs(30),
        "central hears `interrupted`",
        || {
            let report = report(central, id);
            (report["sent"]["state"] == "interrupted").then(|| {
                report["sent"]["outcome"]["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
        },
    )
}

#[test]
fn what_a_command_forked_is_killed_at_restart_before_the_run_is_reported() {
    let Some(mut fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    let go = fleet.dir().join("go");
    let ran = fleet.dir().join("ran");
    // The shell leads the group and dies with the node; its background subshell stays
    // in the group and would write `ran` once `go` exists.
    let script = format!(
        "(while [ ! -e {go} ]; do sleep 0.1; done; echo ran > {ran}) & wait",
        go = go.display(),
        ran = ran.display()
    );
    let id = exec_no_wait(fleet.node("central"), "ship1", &["sh", "-c", &script]);
    let pgid = recorded_group(fleet.node("ship1"), &id);
    let _leftovers = Leftovers(move || in_group(pgid));
    eventually(Duration::from_secs(20), "the subshell runs", || {
        (in_group(pgid).len() >= 2).then_some(())
    });

    fleet.node_mut("ship1").kill9();
    // The shell got its parent-death signal; what it forked did not.
    eventually(
        Duration::from_secs(10),
        "the shell dies with its node",
        || (!in_group(pgid).contains(&pgid)).then_some(()),
    );
    assert!(
        !in_group(pgid).is_empty(),
        "the subshell outlives the crash until the node starts again"
    );

    fleet.node_mut("ship1").restart();
    // Killed before the restarted node takes any message, so before its socket answers.
    assert_eq!(
        in_group(pgid),
        Vec::<i32>::new(),
        "process group {pgid} left"
    );
    let error = the_error(fleet.node("central"), &id);
    assert!(
        error.contains(&format!(
            "killed at restart: process group {pgid} was still running"
        )),
        "{error}"
    );
    assert!(error.contains("not run again"), "{error}");
    // Were anything of the group still running, `go` would make it write `ran`.
    std::fs::write(&go, "").unwrap();
    holds_for(
        Duration::from_secs(2),
        "nothing of the killed group writes its marker",
        || !ran.exists() && in_group(pgid).is_empty(),
    );
}

#[test]
fn a_command_dies_with_its_node_and_the_restart_says_it_had_ended() {
    let Some(mut fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    // A duration no other process on the host has in its argv.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let seconds = format!("600.{nanos:09}");
    let argv = ["sleep", seconds.as_str()];
    let id = exec_no_wait(fleet.node("central"), "ship1", &argv);
    let pgid = recorded_group(fleet.node("ship1"), &id);
    let _leftovers = Leftovers(|| with_argv(&argv));
    assert_eq!(with_argv(&argv), vec![pgid], "the command leads its group");

    fleet.node_mut("ship1").kill9();
    eventually(
        Duration::from_secs(10),
        "the command dies with its node",
        || with_argv(&argv).is_empty().then_some(()),
    );

    fleet.node_mut("ship1").restart();
    let error = the_error(fleet.node("central"), &id);
    assert!(
        error
            .contains("its process had already ended while the node was down; its output was lost"),
        "{error}"
    );
    assert!(error.contains("not run again"), "{error}");
    assert!(with_argv(&argv).is_empty(), "not started again");
}

#[test]
fn with_rerun_on_restart_the_old_run_is_killed_before_the_new_one_starts() {
    let Some(mut fleet) = fleet().nodes(&["central", "ship1"]).start() else {
        return;
    };
    let runs = fleet.dir().join("runs.txt");
    let go = fleet.dir().join("go");
    // The first run leaves a subshell that would append `old` once `go` exists; the
    // second run (after the restart) appends `second` and ends.
    let script = format!(
        "if [ -f {runs} ]; then echo second >> {runs}; else echo first >> {runs}; \
         (while [ ! -e {go} ]; do sleep 0.1; done; echo old >> {runs}) & wait; fi",
        runs = runs.display(),
        go = go.display()
    );
    let message = serde_json::json!([{
        "toNode": "ship1",
        "method": "cliCommand",
        "data": ["sh", "-c", script],
        "rerunOnRestart": true,
        "methodTimeout": 60
    }]);
    let file = fleet.dir().join("rerun.json");
    std::fs::write(&file, message.to_string()).unwrap();
    let out = fleet.node("central").cli(&["send", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out)
        .lines()
        .next()
        .and_then(|l| l.split('\t').nth(2))
        .unwrap()
        .to_string();
    let pgid = recorded_group(fleet.node("ship1"), &id);
    let _leftovers = Leftovers(move || in_group(pgid));
    eventually(Duration::from_secs(20), "the first run forked", || {
        (in_group(pgid).len() >= 2).then_some(())
    });

    let ship = fleet.node_mut("ship1");
    ship.kill9();
    ship.restart();
    assert_eq!(
        in_group(pgid),
        Vec::<i32>::new(),
        "process group {pgid} left"
    );
    let central = fleet.node("central");
    eventually(Duration::from_secs(30), "the second run's result", || {
        (report(central, &id)["sent"]["state"] == "done").then_some(())
    });
    assert_eq!(lines(&runs), vec!["first", "second"]);
    std::fs::write(&go, "").unwrap();
    holds_for(
        Duration::from_secs(2),
        "nothing of the first run is left to append",
        || lines(&runs).len() == 2,
    );
}
