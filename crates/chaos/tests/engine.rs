//! The lease engine with the real supervisor and real processes: a fault whose lease
//! ended while its node was down is undone the moment the engine starts; one still
//! running resumes and ends on time; an event found too late is missed, not fired.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_chaos::book::{Entry, EntryState, Undo};
use bosun_chaos::plan::{PlannedEvent, Target};
use bosun_chaos::scenario::Action;
use bosun_chaos::{Engine, Faults, Plan, WorkloadError, Workloads};
use bosun_supervise::{Supervisor, WorkloadState, parse_definition};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Real(Supervisor);

#[async_trait::async_trait]
impl Workloads for Real {
    async fn signal(&self, name: &str, signal: i32) -> Result<(), WorkloadError> {
        self.0
            .signal(name, signal)
            .await
            .map_err(|e| WorkloadError(e.to_string()))
    }
    async fn stop(&self, name: &str) -> Result<(), WorkloadError> {
        self.0
            .stop(name)
            .await
            .map_err(|e| WorkloadError(e.to_string()))
    }
    async fn resume(&self, name: &str) -> Result<(), WorkloadError> {
        self.0
            .resume(name)
            .await
            .map(|_| ())
            .map_err(|e| WorkloadError(e.to_string()))
    }
}

fn now() -> u64 {
    bosun_methods::now_millis()
}

fn stop_event(id: &str, lease_ms: u64) -> PlannedEvent {
    PlannedEvent {
        id: id.into(),
        node: "n1".into(),
        offset_ms: 0,
        action: Action::WorkloadStop,
        target: Target::Workload("w".into()),
        lease_ms: Some(lease_ms),
    }
}

async fn state(s: &Supervisor) -> WorkloadState {
    s.list()[0].state
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn leases_resume_after_a_restart_and_late_events_are_missed() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (tx, _events) = tokio::sync::mpsc::unbounded_channel();
    let supervisor = Supervisor::start(
        dir.path().join("workloads"),
        "n1",
        "/var/run/docker.sock".into(),
        tx,
        shutdown.clone(),
        &tracker,
    )
    .await
    .unwrap();
    supervisor
        .add(parse_definition("name: w\ncommand: [sleep, '1000']\n").unwrap())
        .await
        .unwrap();
    // A fault applied before the node went down, whose lease ended while it was down,
    // and a pending event whose time passed meanwhile.
    supervisor.stop("w").await.unwrap();
    let t = now();
    let expired = Entry {
        experiment: "x1".into(),
        event: stop_event("e1.1.1", 1000),
        at: t - 6000,
        lease_end: Some(t - 5000),
        state: EntryState::Applied,
        fired_at: Some(t - 6000),
        applied_at: Some(t - 5990),
        undone_at: None,
        error: None,
        undo: Undo::default(),
    };
    let late = Entry {
        event: stop_event("e2.1.1", 1000),
        at: t - 3000,
        lease_end: Some(t - 2000),
        state: EntryState::Pending,
        fired_at: None,
        applied_at: None,
        ..expired.clone()
    };
    let chaos_dir = dir.path().join("chaos");
    std::fs::create_dir_all(&chaos_dir).unwrap();
    std::fs::write(
        chaos_dir.join("book.json"),
        serde_json::to_vec(&vec![expired, late]).unwrap(),
    )
    .unwrap();
    let records = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink_records = records.clone();
    let started = Instant::now();
    let engine = Engine::start(
        "n1",
        chaos_dir.clone(),
        Faults::new(
            "/var/run/docker.sock".into(),
            Some(Arc::new(Real(supervisor.clone()))),
        ),
        Arc::new(move |r| sink_records.lock().unwrap().push(r)),
        shutdown.clone(),
        &tracker,
    )
    .unwrap();
    until("the expired lease undone at once", async || {
        state(&supervisor).await == WorkloadState::Running
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    until("the book says so", async || {
        engine.list("x1").iter().all(|e| e.state.is_final())
    })
    .await;
    let list = engine.list("x1");
    assert_eq!(list[0].state, EntryState::Undone);
    assert_eq!(list[1].state, EntryState::Missed, "{:?}", list[1]);
    assert!(
        list[1].error.as_deref().unwrap().contains("late"),
        "{:?}",
        list[1]
    );

    // A new plan: stop at +300 ms for 400 ms; the node fires and undoes on its clock.
    let start = now() + 300;
    let plan = Plan {
        experiment: "x2".into(),
        scenario: "t".into(),
        seed: 0,
        duration_ms: 2000,
        start_at: Some(start),
        events: vec![stop_event("e1.1.1", 400)],
    };
    let kept = engine.schedule(&plan).await.unwrap();
    assert_eq!(kept.scheduled, 1);
    // The same plan again (a redelivery) is kept once.
    assert_eq!(engine.schedule(&plan).await.unwrap().already, 1);
    until("stopped by the fault", async || {
        state(&supervisor).await == WorkloadState::Stopped
    })
    .await;
    until("resumed at the lease end", async || {
        state(&supervisor).await == WorkloadState::Running
    })
    .await;
    // The supervisor says running as its resume returns; the engine then records the
    // undo, writes its book and the event stream.
    until("the undo recorded", async || {
        records
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.text.contains("chaos undo experiment=x2"))
    })
    .await;
    let entry = engine.list("x2").remove(0);
    assert_eq!(entry.state, EntryState::Undone);
    let fired_late = entry.fired_at.unwrap() - entry.at;
    let undone_late = entry.undone_at.unwrap() - entry.lease_end.unwrap();
    assert!(fired_late < 200, "fired {fired_late} ms late");
    assert!(
        undone_late < 1000,
        "undone {undone_late} ms after the lease end"
    );
    let texts: Vec<String> = records
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.text.clone())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("chaos apply experiment=x2")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("chaos undo experiment=x2")),
        "{texts:?}"
    );
    // The book on disk says the same.
    let on_disk: Vec<Entry> =
        serde_json::from_slice(&std::fs::read(chaos_dir.join("book.json")).unwrap()).unwrap();
    assert_eq!(on_disk.len(), 3);
    assert!(on_disk.iter().all(|e| e.state.is_final()));

    // A plan for another node is refused whole.
    let mut other = plan.clone();
    other.experiment = "x3".into();
    other.events[0].node = "n2".into();
    let e = engine.schedule(&other).await.unwrap_err().to_string();
    assert!(e.contains("for node n2"), "{e}");
    // Whoever planned it, the node checks every event: no thousand stress workers, no
    // pause of a workload.
    let mut wild = plan.clone();
    wild.experiment = "x4".into();
    wild.events[0].action = Action::Cpu { workers: 100_000 };
    wild.events[0].target = Target::Container("c".into());
    let e = engine.schedule(&wild).await.unwrap_err().to_string();
    assert!(e.contains("cpu workers must be 1 to 64"), "{e}");
    wild.events[0].action = Action::Pause;
    wild.events[0].target = Target::Workload("w".into());
    let e = engine.schedule(&wild).await.unwrap_err().to_string();
    assert!(e.contains("pause cannot act on workload w"), "{e}");
    assert!(
        engine.list("x4").is_empty(),
        "nothing of a refused plan is kept"
    );

    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}
