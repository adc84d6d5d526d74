//! Tests with real things: files, unix sockets, and the Docker engine when there is one.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;

const ID_A: &str = "33f66876b394045525a50606e938527d117d1532a9137f0e28777bfce1e0847e";
const ID_B: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A record read back from a capture file.
#[derive(Debug, Clone)]
struct Line {
    time: String,
    topic: String,
    node: String,
    container: String,
    text: String,
}

fn read_lines(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut f = l.splitn(5, ' ');
            let mut next = || f.next().unwrap_or_else(|| panic!("short record: {l:?}"));
            Line {
                time: next().to_string(),
                topic: next().to_string(),
                node: next().to_string(),
                container: next().to_string(),
                text: next().to_string(),
            }
        })
        .collect()
}

/// Wait for `check` to see what it wants, without blocking the runtime, or panic with
/// `what` after `timeout`.
async fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    bosun_testkit::eventually_async(timeout, what, || std::future::ready(check())).await
}

fn config(dir: &Path, syslog_socket: Option<PathBuf>, docker_socket: &Path) -> CaptureConfig {
    CaptureConfig {
        node: "node1".into(),
        dir: dir.join("capture"),
        file: String::new(),
        syslog_socket,
        docker_socket: docker_socket.to_path_buf(),
        stats_interval: Duration::from_secs(3600),
    }
}

fn of<'a>(lines: &'a [Line], topic: &'a str) -> impl Iterator<Item = &'a Line> + 'a {
    lines.iter().filter(move |l| l.topic == topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_stream_orders_escapes_and_switches() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    // No Docker there: start must not care.
    let capture = Capture::start(
        config(dir.path(), None, &dir.path().join("no-docker.sock")),
        shutdown.clone(),
        &tracker,
    )
    .await
    .unwrap();
    let first = dir.path().join("capture").join(DEFAULT_FILE);
    assert_eq!(capture.current_file(), first);

    // Several writers at once: one record per line, each writer's order kept.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let capture = capture.clone();
            std::thread::spawn(move || {
                for r in 0..200 {
                    capture.record(
                        Topic::Log,
                        Some(&format!("c{w}")),
                        &format!("w{w} r{r}\nsecond \\ half"),
                    );
                }
            })
        })
        .collect();
    // A mark between two records of one writer lands between them.
    capture.record(Topic::Event, Some(ID_A), "before");
    capture.mark("the mark");
    capture.record(Topic::Event, Some(ID_A), "after");
    for w in writers {
        w.join().unwrap();
    }
    capture.record(Topic::Stats, None, "{}");
    let lines = eventually(Duration::from_secs(10), "all records written", || {
        let lines = read_lines(&first);
        (of(&lines, "STATS").count() == 1).then_some(lines)
    })
    .await;
    let logs: Vec<_> = of(&lines, "LOG").collect();
    assert_eq!(logs.len(), 800);
    for w in 0..4 {
        let mine: Vec<_> = logs
            .iter()
            .filter(|l| l.container == format!("c{w}"))
            .collect();
        assert_eq!(mine.len(), 200);
        for (r, l) in mine.iter().enumerate() {
            assert_eq!(l.text, format!("w{w} r{r}\\nsecond \\\\ half"));
            assert_eq!(l.node, "node1");
        }
    }
    let times: Vec<_> = lines.iter().map(|l| l.time.clone()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "times go forward");
    assert!(
        lines
            .iter()
            .all(|l| l.time.len() == 24 && l.time.ends_with('Z'))
    );
    let pos = |topic: &str, text: &str| {
        lines
            .iter()
            .position(|l| l.topic == topic && l.text == text)
            .unwrap_or_else(|| panic!("no {topic} {text}"))
    };
    assert!(pos("EVENT", "before") < pos("MARK", "the mark"));
    assert!(pos("MARK", "the mark") < pos("EVENT", "after"));
    let mark = &lines[pos("MARK", "the mark")];
    assert_eq!(mark.container, "-");
    assert_eq!(lines[pos("EVENT", "after")].container, ID_A);

    // Switching: bad names refused, the file stays.
    for bad in ["../x", "a/b", "..", "/etc/passwd"] {
        assert!(capture.switch_file(bad).is_err(), "{bad} refused");
    }
    assert_eq!(capture.current_file(), first);
    let second = capture.switch_file("run2.log").unwrap();
    assert_eq!(second, dir.path().join("capture").join("run2.log"));
    assert_eq!(capture.current_file(), second);
    capture.mark("in run2");
    eventually(Duration::from_secs(5), "mark in run2.log", || {
        of(&read_lines(&second), "MARK")
            .any(|l| l.text == "in run2")
            .then_some(())
    })
    .await;
    assert!(!of(&read_lines(&first), "MARK").any(|l| l.text == "in run2"));
    // Empty: back to default.log, appended to.
    assert_eq!(capture.switch_file("").unwrap(), first);
    capture.mark("back");
    eventually(Duration::from_secs(5), "mark back in default.log", || {
        let lines = read_lines(&first);
        (of(&lines, "LOG").count() == 800 && of(&lines, "MARK").any(|l| l.text == "back"))
            .then_some(())
    })
    .await;

    // Once the writer has stopped, a switch is refused and a mark goes nowhere.
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .expect("every capture task ends on shutdown");
    eventually(Duration::from_secs(5), "the writer stopped", || {
        matches!(capture.switch_file("late.log"), Err(SwitchError::Stopped)).then_some(())
    })
    .await;
    capture.mark("after shutdown");
    assert!(!of(&read_lines(&first), "MARK").any(|l| l.text == "after shutdown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_syslog_socket_takes_docker_messages() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("sock").join("logs.sock");
    // A stale socket from an earlier run is replaced.
    std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let capture = Capture::start(
        config(
            dir.path(),
            Some(sock.clone()),
            &dir.path().join("no-docker.sock"),
        ),
        shutdown.clone(),
        &tracker,
    )
    .await
    .unwrap();
    let dgram = datagram_socket_path(&sock);
    assert_eq!(dgram, dir.path().join("sock").join("logs.dgram.sock"));
    for p in [&sock, &dgram] {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660, "{} mode", p.display());
    }
    let stream_file = std::fs::read_dir(dir.path().join("capture"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .expect("the event stream file");
    let mode = std::fs::metadata(&stream_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "{} mode", stream_file.display());

    // Datagrams, as Docker's rfc5424micro sends them to unixgram://; garbage in between.
    let client = UnixDatagram::unbound().unwrap();
    let message = |id: &str, text: &str| {
        format!("<30>1 2026-01-01T10:00:00.123456Z host {id} 123 {id} - {text}\n")
    };
    client
        .send_to(message(ID_A, "hello world").as_bytes(), &dgram)
        .unwrap();
    client.send_to(b"hello, not syslog", &dgram).unwrap();
    client.send_to(&[0xff, 0x00, 0xfe], &dgram).unwrap();
    client
        .send_to(message(ID_B, "  two\tfields").trim_end().as_bytes(), &dgram)
        .unwrap();

    // A stream, as Docker's syslog driver dials unix://: newline-separated, cut anywhere.
    let mut conn = UnixStream::connect(&sock).unwrap();
    let both = format!(
        "{}{}",
        message(ID_A, "on a stream"),
        message(ID_B, "second")
    );
    // The first part holds the first message whole and the start of the second.
    let (one, two) = both.split_at(both.len() / 2 + 7);
    assert!(one.len() > message(ID_A, "on a stream").len() && one.len() < both.len());
    use std::io::Write as _;
    conn.write_all(one.as_bytes()).unwrap();
    conn.flush().unwrap();
    // The first message written shows the first part was read on its own, so the second
    // message arrives cut in two.
    let file = capture.current_file();
    eventually(
        Duration::from_secs(10),
        "the first message on the stream",
        || {
            of(&read_lines(&file), "LOG")
                .any(|l| l.text == "on a stream")
                .then_some(())
        },
    )
    .await;
    conn.write_all(two.as_bytes()).unwrap();
    conn.write_all(b"garbage line\n").unwrap();
    // A last message after the garbage: once it is written, the garbage has been read.
    conn.write_all(message(ID_A, "last").as_bytes()).unwrap();
    drop(conn);

    let logs = eventually(
        Duration::from_secs(10),
        "the last syslog LOG record",
        || {
            let logs: Vec<_> = of(&read_lines(&file), "LOG").cloned().collect();
            logs.iter().any(|l| l.text == "last").then_some(logs)
        },
    )
    .await;
    assert_eq!(logs.len(), 5, "garbage skipped: {logs:?}");
    let got: Vec<_> = logs
        .iter()
        .map(|l| (l.container.as_str(), l.text.as_str()))
        .collect();
    assert!(got.contains(&(ID_A, "hello world")), "{got:?}");
    assert!(got.contains(&(ID_B, "  two\tfields")), "{got:?}");
    assert!(got.contains(&(ID_A, "on a stream")), "{got:?}");
    assert!(got.contains(&(ID_B, "second")), "{got:?}");
    assert!(got.contains(&(ID_A, "last")), "{got:?}");
    let a = got.iter().position(|g| g.1 == "hello world").unwrap();
    let b = got.iter().position(|g| g.1 == "  two\tfields").unwrap();
    assert!(a < b, "datagrams in order");

    // On shutdown the socket files go.
    shutdown.cancel();
    eventually(Duration::from_secs(5), "sockets removed", || {
        (!sock.exists() && !dgram.exists()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn capture_start_refuses_a_non_socket_in_the_way() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("logs.sock");
    std::fs::write(&sock, "data").unwrap();
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let err = Capture::start(
        config(
            dir.path(),
            Some(sock.clone()),
            &dir.path().join("no-docker.sock"),
        ),
        shutdown.clone(),
        &tracker,
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "data");
}

// ---- Docker ----

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Containers removed on drop, even when the test fails.
struct Containers(Vec<String>);

impl Containers {
    fn new(names: &[String]) -> Containers {
        let c = Containers(names.to_vec());
        c.remove();
        c
    }

    fn remove(&self) {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Numbers `n` of texts `<prefix><n>` for `id`, in file order.
fn numbered(lines: &[Line], id: &str, prefix: &str) -> Vec<u32> {
    of(lines, "LOG")
        .filter(|l| l.container == id)
        .filter_map(|l| l.text.strip_prefix(prefix)?.parse().ok())
        .collect()
}

fn died(lines: &[Line], id: &str) -> Option<usize> {
    lines
        .iter()
        .position(|l| l.topic == "EVENT" && l.container == id && l.text.starts_with("die "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capture_docker_follows_labelled_and_syslog_containers() {
    // The shared local busybox image; skips, or fails with BOSUN_REQUIRE_DOCKER=1.
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let image = image.as_str();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("sock").join("logs.sock");
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut cfg = config(
        dir.path(),
        Some(sock.clone()),
        Path::new("/var/run/docker.sock"),
    );
    cfg.stats_interval = Duration::from_secs(1);
    let capture = Capture::start(cfg, shutdown.clone(), &tracker)
        .await
        .unwrap();
    let file = capture.current_file();

    let tag = std::process::id();
    let names: Vec<String> = ["follow", "syslog", "dgram"]
        .iter()
        .map(|n| format!("bosun-cap-docker-{n}-{tag}"))
        .collect();
    let _containers = Containers::new(&names);

    // A labelled container logging the default way: followed through the API.
    let followed = docker_ok(&[
        "run",
        "-d",
        "--name",
        &names[0],
        "--label",
        "org.lsdsuite.stats=true",
        image,
        "sh",
        "-c",
        // The container's own pauses spread its lines over time, so a mark can land
        // between them.
        "for i in $(seq 1 40); do echo line $i; sleep 0.2; done",
    ]);
    assert_eq!(followed.len(), 64, "full id: {followed}");
    // Containers logging to the syslog socket (labelled too: logs must not come twice).
    let syslog_opts = |address: String| {
        vec![
            "--log-driver".to_string(),
            "syslog".into(),
            "--log-opt".into(),
            format!("syslog-address={address}"),
            "--log-opt".into(),
            "syslog-format=rfc5424micro".into(),
            "--log-opt".into(),
            "tag={{.FullID}}".into(),
            "--label".into(),
            "org.bosun.capture=true".into(),
        ]
    };
    let run_syslog = |name: &str, address: String, prefix: &str| {
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.into()];
        args.extend(syslog_opts(address));
        args.extend([
            image.to_string(),
            "sh".into(),
            "-c".into(),
            // Inside the container: its logger connects before the first line, and the
            // lines come spread over time as a real workload's do.
            format!("sleep 1; for i in $(seq 1 10); do echo {prefix}$i; sleep 0.2; done"),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&args)
    };
    let via_stream = run_syslog(
        &names[1],
        format!("unix://{}", sock.display()),
        "via syslog ",
    );
    let via_dgram = run_syslog(
        &names[2],
        format!("unixgram://{}", datagram_socket_path(&sock).display()),
        "via datagram ",
    );

    // Some lines, then a mark, then more lines.
    eventually(
        Duration::from_secs(20),
        "LOG records of the labelled container",
        || (numbered(&read_lines(&file), &followed, "line ").len() >= 3).then_some(()),
    )
    .await;
    capture.mark("between lines");
    // Every container has died and its last line is in: log lines may follow the die
    // event, as the followers write what is left.
    let lines = eventually(
        Duration::from_secs(30),
        "every container's die EVENT, last line, and a STATS and HOST record",
        || {
            let lines = read_lines(&file);
            let last = |id: &str, prefix: &str| numbered(&lines, id, prefix).last().copied();
            (died(&lines, &followed).is_some()
                && died(&lines, &via_stream).is_some()
                && died(&lines, &via_dgram).is_some()
                && last(&followed, "line ") == Some(40)
                && last(&via_stream, "via syslog ") == Some(10)
                && last(&via_dgram, "via datagram ") == Some(10)
                && of(&lines, "STATS").any(|l| l.container == followed)
                && of(&lines, "HOST").next().is_some())
            .then_some(lines)
        },
    )
    .await;
    let dump = || {
        lines
            .iter()
            .map(|l| format!("{} {} {} {}", l.topic, l.node, l.container, l.text))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Each line once, in order, up to the last.
    let got = numbered(&lines, &followed, "line ");
    let first = got[0];
    assert_eq!(got, (first..=40).collect::<Vec<_>>(), "{}", dump());
    let mark = lines
        .iter()
        .position(|l| l.topic == "MARK" && l.text == "between lines")
        .expect("mark written");
    let log_positions: Vec<_> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.topic == "LOG" && l.container == followed)
        .map(|(i, _)| i)
        .collect();
    assert!(
        log_positions.iter().any(|&i| i < mark),
        "LOG before the MARK"
    );
    assert!(
        log_positions.iter().any(|&i| i > mark),
        "LOG after the MARK"
    );
    assert!(
        died(&lines, &followed).unwrap() > mark,
        "die after the mark"
    );

    // Stats, as JSON with the documented fields.
    let stats = of(&lines, "STATS")
        .find(|l| l.container == followed)
        .unwrap_or_else(|| panic!("no STATS for {followed}:\n{}", dump()));
    let json: serde_json::Value = serde_json::from_str(&stats.text).unwrap();
    for key in [
        "cpuPercent",
        "memoryBytes",
        "memoryLimitBytes",
        "networkRxBytes",
        "networkTxBytes",
        "blockReadBytes",
        "blockWriteBytes",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    assert!(json["memoryBytes"].as_u64().unwrap() > 0, "{json}");
    // Host stats too.
    let host = of(&lines, "HOST").next().expect("HOST record");
    let json: serde_json::Value = serde_json::from_str(&host.text).unwrap();
    assert!(json["memTotalBytes"].as_u64().unwrap() > 0);

    // Syslog containers: every line once, under the full id, via either socket.
    assert_eq!(
        numbered(&lines, &via_stream, "via syslog "),
        (1..=10).collect::<Vec<_>>(),
        "{}",
        dump()
    );
    assert_eq!(
        numbered(&lines, &via_dgram, "via datagram "),
        (1..=10).collect::<Vec<_>>(),
        "{}",
        dump()
    );
    let die = &lines[died(&lines, &followed).unwrap()];
    assert!(
        die.text.contains(&format!("name={}", names[0])) && die.text.contains("exitCode=0"),
        "{die:?}"
    );
    assert!(lines.iter().all(|l| l.node == "node1"));

    if std::env::var_os("CAPTURE_DUMP").is_some() {
        eprintln!("{}", std::fs::read_to_string(&file).unwrap());
    }
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_docker_connects_when_the_daemon_appears() {
    // The shared local busybox image; skips, or fails with BOSUN_REQUIRE_DOCKER=1.
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let image = image.as_str();
    let dir = tempfile::tempdir().unwrap();
    // The daemon's socket is not there yet: capture starts anyway and retries.
    let socket = dir.path().join("docker.sock");
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let capture = Capture::start(
        config(dir.path(), None, &socket),
        shutdown.clone(),
        &tracker,
    )
    .await
    .unwrap();
    capture.mark("before Docker");
    // A listener in the daemon's place that hangs up: the capture's first attempt
    // reaching it shows the capture tried before Docker was there, and must retry.
    let stand_in = tokio::net::UnixListener::bind(&socket).unwrap();
    let (first_attempt, _) = tokio::time::timeout(Duration::from_secs(10), stand_in.accept())
        .await
        .expect("the capture tries to reach Docker at once")
        .unwrap();
    drop(first_attempt);
    drop(stand_in);
    std::fs::remove_file(&socket).unwrap();
    std::os::unix::fs::symlink("/var/run/docker.sock", &socket).unwrap();

    let name = format!("bosun-cap-reconnect-{}", std::process::id());
    let _containers = Containers::new(std::slice::from_ref(&name));
    let id = docker_ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "org.bosun.capture=true",
        image,
        "sh",
        "-c",
        // Inside the container: a steady trickle of lines while capture reconnects.
        "for i in $(seq 1 60); do echo tick $i; sleep 0.2; done",
    ]);
    let file = capture.current_file();
    let lines = eventually(
        Duration::from_secs(30),
        "LOG records once Docker is there",
        || {
            let lines = read_lines(&file);
            (numbered(&lines, &id, "tick ").len() >= 3).then_some(lines)
        },
    )
    .await;
    let mark = lines
        .iter()
        .position(|l| l.topic == "MARK" && l.text == "before Docker")
        .expect("the mark works without Docker");
    let first_log = lines.iter().position(|l| l.topic == "LOG").unwrap();
    assert!(mark < first_log);
    let got = numbered(&lines, &id, "tick ");
    assert_eq!(got, (got[0]..got[0] + got.len() as u32).collect::<Vec<_>>());
    shutdown.cancel();
}
