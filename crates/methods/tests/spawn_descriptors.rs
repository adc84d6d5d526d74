//! Many children started at once leave no descriptor of theirs open in the node. In a
//! test binary of its own: the count is the whole process's, which other tests running
//! beside it would change.

use bosun_methods::process::{Io, Launch, Spawner};
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_children_at_once_leave_no_descriptor_behind() {
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let spawner = std::sync::Arc::new(Spawner::default());
    let echo = |i: usize| {
        let mut l = Launch::new("sh");
        l.arg("-c")
            .arg(format!("echo {i}"))
            .stdin(Io::Null)
            .stdout(Io::Piped)
            .stderr(Io::Piped)
            .kill_on_drop(true);
        l
    };
    async fn run(spawner: &Spawner, launch: Launch) -> String {
        let mut child = spawner.spawn(launch).await.unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert!(child.wait().await.unwrap().success());
        out
    }
    // The spawner's thread and the runtime's descriptors exist before the count.
    run(&spawner, echo(0)).await;
    let before = fds();
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..200 {
        let spawner = spawner.clone();
        let launch = echo(i);
        runs.spawn(async move {
            assert_eq!(run(&spawner, launch).await.trim(), i.to_string());
        });
    }
    while let Some(r) = runs.join_next().await {
        r.unwrap();
    }
    assert_eq!(fds(), before);
}
