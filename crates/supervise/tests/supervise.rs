//! The supervisor against real processes and real containers.

use std::path::Path;
use std::time::{Duration, Instant};

use bosun_supervise::{
    Supervisor, SupervisorEvent, WorkloadState, WorkloadStatus, parse_definition,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Running {
    supervisor: Supervisor,
    events: mpsc::UnboundedReceiver<SupervisorEvent>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

async fn start(dir: &Path, owner: &str) -> Running {
    let (tx, events) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let supervisor = Supervisor::start(
        dir.to_path_buf(),
        owner,
        "/var/run/docker.sock".into(),
        tx,
        shutdown.clone(),
        &tracker,
    )
    .await
    .unwrap();
    Running {
        supervisor,
        events,
        shutdown,
        tracker,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(20), self.tracker.wait())
            .await
            .expect("the supervisor stops");
    }

    fn status(&self, name: &str) -> WorkloadStatus {
        self.supervisor
            .list()
            .into_iter()
            .find(|w| w.name == name)
            .unwrap()
    }

    /// Wait for the first event that `want` picks, with a deadline.
    async fn event<T>(
        &mut self,
        what: &str,
        mut want: impl FnMut(&SupervisorEvent) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = tokio::time::timeout(left, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within 30 s"))
                .expect("events flow");
            if let Some(t) = want(&event) {
                return t;
            }
        }
    }

    async fn until(&self, what: &str, mut check: impl FnMut(&Supervisor) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check(&self.supervisor) {
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_crashing_workload_backs_off_until_fatal_then_escalates() {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let cleaned = dir.path().join("cleaned");
    let mut s = start(&dir.path().join("w"), "n1").await;
    s.supervisor
        .add(parse_definition("name: buddy\ncommand: [sleep, '1000']\n").unwrap())
        .await
        .unwrap();
    let crashy = format!(
        "name: crashy\ncommand: [sh, -c, 'date +%s%N >> {}; exit 3']\nbackoff: {{initialMs: 100, maxMs: 2000, factor: 2}}\nlimit: {{restarts: 3, withinSecs: 60}}\nescalation:\n  stop: [buddy]\n  cleanup: [sh, -c, 'echo done > {}']\n",
        starts.display(),
        cleaned.display()
    );
    s.supervisor
        .add(parse_definition(&crashy).unwrap())
        .await
        .unwrap();
    let reason = s
        .event("FATAL", |e| match e {
            SupervisorEvent::Fatal { name, reason } if name == "crashy" => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(
        reason.contains("exited with code 3") && reason.contains("more than 3 restarts"),
        "{reason}"
    );
    let (stopped, cleanup) = s
        .event("the escalation", |e| match e {
            SupervisorEvent::Escalated {
                stopped, cleanup, ..
            } => Some((stopped.clone(), cleanup.clone())),
            _ => None,
        })
        .await;
    assert_eq!(stopped, ["buddy"]);
    assert!(cleanup.unwrap().contains("exit status: 0"));
    assert_eq!(std::fs::read_to_string(&cleaned).unwrap(), "done\n");
    assert_eq!(s.status("buddy").state, WorkloadState::Stopped);
    let crashy = s.status("crashy");
    assert_eq!(crashy.state, WorkloadState::Fatal);
    assert_eq!((crashy.restarts, crashy.last_exit), (3, Some(3)));

    // Four starts, each gap at least its backoff, and growing.
    let times: Vec<u128> = std::fs::read_to_string(&starts)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(times.len(), 4, "the first start and three restarts");
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000)
        .collect();
    for (gap, backoff) in gaps.iter().zip([100u128, 200, 400]) {
        assert!(
            *gap >= backoff,
            "gap {gap} ms under its backoff {backoff}: {gaps:?}"
        );
    }
    assert!(gaps[2] > gaps[0], "{gaps:?}");

    // An operator's restart clears FATAL.
    let after = s.supervisor.restart("crashy").await.unwrap();
    assert_ne!(after.state, WorkloadState::Fatal);
    s.stop().await;
}

#[tokio::test]
async fn a_failing_health_check_restarts_the_workload_and_recovery_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ready");
    let mut s = start(&dir.path().join("w"), "n1").await;
    let def = format!(
        "name: web\ncommand: [sleep, '1000']\nrestart: always\nbackoff: {{initialMs: 50}}\nlimit: {{restarts: 100, withinSecs: 60}}\nhealth: {{command: [test, -f, '{}'], intervalSecs: 0.1, timeoutSecs: 1, retries: 2}}\n",
        flag.display()
    );
    s.supervisor
        .add(parse_definition(&def).unwrap())
        .await
        .unwrap();
    let first_pid = s.status("web").pid;
    let detail = s
        .event("unhealthy", |e| match e {
            SupervisorEvent::Health {
                healthy: false,
                detail,
                ..
            } => Some(detail.clone()),
            _ => None,
        })
        .await;
    assert!(detail.contains("test -f"), "{detail}");
    s.until("a restart for the failed checks", |sup| {
        let w = sup.list().remove(0);
        w.restarts >= 1 && w.state == WorkloadState::Running && w.pid != first_pid
    })
    .await;
    std::fs::write(&flag, "").unwrap();
    s.event("healthy again", |e| match e {
        SupervisorEvent::Health { healthy: true, .. } => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(s.status("web").healthy, Some(true));
    let restarts = s.status("web").restarts;
    // Healthy now: no more restarts for a while (ten intervals).
    let quiet = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet {
        assert_eq!(s.status("web").restarts, restarts);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

fn running_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(marker))
        .count()
}

#[tokio::test]
async fn definitions_and_stops_outlast_the_supervisor_and_one_copy_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("bosun-test-{}", bosun_proto_id());
    let w = dir.path().join("w");
    let s = start(&w, "n1").await;
    let def = format!("name: one\ncommand: [sh, -c, 'sleep 1000; : {marker}']\n");
    s.supervisor
        .add(parse_definition(&def).unwrap())
        .await
        .unwrap();
    s.supervisor
        .add(parse_definition("name: held\ncommand: [sleep, '1000']\n").unwrap())
        .await
        .unwrap();
    s.supervisor.stop("held").await.unwrap();
    assert_eq!(running_with(&marker), 1);
    // The same definition again changes nothing.
    let pid = s.status("one").pid;
    s.supervisor
        .add(parse_definition(&def).unwrap())
        .await
        .unwrap();
    assert_eq!(s.status("one").pid, pid);
    s.stop().await;
    assert_eq!(running_with(&marker), 0, "commands end with the supervisor");

    let s = start(&w, "n1").await;
    s.until("one running again", |sup| {
        sup.list()
            .iter()
            .any(|w| w.name == "one" && w.state == WorkloadState::Running)
    })
    .await;
    assert_eq!(running_with(&marker), 1, "exactly one copy");
    assert_eq!(
        s.status("held").state,
        WorkloadState::Stopped,
        "a stop holds"
    );
    let e = s.supervisor.restart("nope").await.unwrap_err().to_string();
    assert!(
        e.contains("no workload nope") && e.contains("held, one"),
        "{e}"
    );
    s.supervisor.remove("one").await.unwrap();
    assert_eq!(running_with(&marker), 0);
    assert!(!w.join("one.json").exists());
    s.stop().await;
}

fn bosun_proto_id() -> String {
    format!("{}", std::process::id()) + &format!("{:?}", Instant::now()).replace(['.', ' '], "")
}

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn a_container_workload_is_adopted_not_duplicated_and_restarted_when_killed() {
    let Some(image) = bosun_testkit::docker_test_image() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let owner = format!("sv{}", std::process::id());
    let w = dir.path().join("w");
    let s = start(&w, &owner).await;
    let def = format!(
        "name: box\ncontainer: {{image: '{image}', cmd: [sleep, '1000']}}\nrestart: always\nbackoff: {{initialMs: 100}}\n"
    );
    let status = s
        .supervisor
        .add(parse_definition(&def).unwrap())
        .await
        .unwrap();
    assert_eq!(status.state, WorkloadState::Running);
    let id = status.container.unwrap();
    s.stop().await;
    let label = format!("label=org.bosun.node={owner}");
    assert_eq!(
        docker(&["ps", "-q", "--filter", &label]).lines().count(),
        1,
        "left running"
    );

    let mut s = start(&w, &owner).await;
    s.until("adopted", |sup| {
        sup.list()[0].state == WorkloadState::Running
    })
    .await;
    assert!(id.starts_with(s.status("box").container.unwrap().as_str()));
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &label]).lines().count(),
        1,
        "no second copy"
    );
    docker(&["kill", &id]);
    s.event("the restart", |e| match e {
        SupervisorEvent::State {
            to: WorkloadState::Backoff,
            ..
        } => Some(()),
        _ => None,
    })
    .await;
    s.until("running again", |sup| {
        let w = &sup.list()[0];
        w.state == WorkloadState::Running && w.restarts == 1
    })
    .await;
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &id]),
        "true"
    );
    s.supervisor.remove("box").await.unwrap();
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &label]),
        "",
        "removed with its workload"
    );
    s.stop().await;
}

#[tokio::test]
async fn tcp_and_http_checks_tell_a_listener_from_a_closed_port() {
    use bosun_supervise::def::Health;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let answer = if request.starts_with("GET /ok ") {
                "200 OK"
            } else {
                "503 Busy"
            };
            let _ = stream
                .write_all(format!("HTTP/1.0 {answer}\r\n\r\n").as_bytes())
                .await;
        }
    });
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let health = |text: String| -> Health { serde_json::from_str(&text).unwrap() };
    let check = |h: Health| async move { bosun_supervise::instance::check(&h).await };
    assert!(
        check(health(format!(r#"{{"tcp": "{address}"}}"#)))
            .await
            .is_ok()
    );
    assert!(
        check(health(format!(r#"{{"http": "http://{address}/ok"}}"#)))
            .await
            .is_ok()
    );
    let busy = check(health(format!(r#"{{"http": "http://{address}/busy"}}"#))).await;
    assert!(busy.unwrap_err().0.contains("status 503"));
    let refused = check(health(format!(r#"{{"tcp": "{closed}"}}"#))).await;
    assert!(refused.unwrap_err().0.contains("tcp"));
}
