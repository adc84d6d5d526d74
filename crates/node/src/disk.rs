//! The node's side of a full or failing disk: the free-space reserve for arrivals, and
//! the store's health turned into error reports, metrics and, when the database cannot
//! be reopened, the node's exit.

use std::time::Duration;

use bosun_proto::{Method, Role};
use bosun_store::{Health, Store};
use tokio_util::sync::CancellationToken;

use crate::errorlog::ErrorEntry;
use crate::handles::ErrorReporter;
use crate::metrics::Metrics;
use crate::node::now_millis;

/// Below the free-space reserve a new request from another node is neither recorded nor
/// ACKed: its sender resends it later. Replies, hellos and error reports still go in, so
/// work already accepted can finish. The method is read from the subject's last token
/// (`<prefix>.<node>.<method>`), without decoding the payload.
pub(crate) fn holds_arrival(store: &Store, subject: &str) -> bool {
    subject
        .rsplit('.')
        .next()
        .is_some_and(|method| holds_method(store, method))
}

/// Whether a new request for `method` (as spelled on the wire) is held back now; see
/// [`holds_arrival`].
pub(crate) fn holds_method(store: &Store, method: &str) -> bool {
    let runs = Method::parse(method)
        .is_some_and(|p| matches!(p.method.role(), Role::Handler(_) | Role::Node));
    if !runs {
        return false;
    }
    match store.below_reserve() {
        Some(low) => {
            tracing::debug!(
                free_bytes = low.free_bytes,
                reserve_bytes = low.reserve_bytes,
                "disk below the reserve; a new request is not taken (its sender resends it)"
            );
            true
        }
        None => false,
    }
}

/// Follow the store's health: set the metrics, report faults and recoveries to the error
/// log and central, report crossings of the free-space reserve, and cancel `fatal` when
/// the database cannot be reopened.
pub(crate) async fn watch_store(
    store: Store,
    reporter: ErrorReporter,
    metrics: Metrics,
    node: String,
    fatal: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut health = store.watch_health();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut down_since: Option<(u64, String)> = None;
    let mut below_reserve = false;
    let report = |kind: &str, reason: &str| {
        reporter.report(&ErrorEntry {
            at: now_millis(),
            node: &node,
            kind,
            message_id: None,
            to_node: None,
            method: None,
            reason,
        });
    };
    loop {
        tokio::select! {
            changed = health.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = health.borrow_and_update().clone();
        metrics.set_store(now == Health::Ok, store.free_bytes());
        match &now {
            Health::Ok => {
                if let Some((since, what)) = down_since.take() {
                    let secs = now_millis().saturating_sub(since) / 1000;
                    report(
                        "store",
                        &format!(
                            "the store refused writes for {secs} s ({what}); writes go through again"
                        ),
                    );
                }
            }
            Health::Faulted(fault) => {
                if down_since.is_none() {
                    let what = fault.error().to_string();
                    report("store", &what);
                    down_since = Some((now_millis(), what));
                }
            }
            Health::Failed { .. } => {
                report("store", &now.to_string());
                fatal.cancel();
                return;
            }
        }
        let low = store.below_reserve();
        if low.is_some() != below_reserve {
            below_reserve = low.is_some();
            if let Some(low) = low {
                report(
                    "disk",
                    &format!(
                        "disk nearly full at {}: {} bytes free, below the reserve of {} bytes (disk_reserve_mb); new submits and requests are refused",
                        low.path, low.free_bytes, low.reserve_bytes
                    ),
                );
            }
        }
    }
}

/// Run a store write again each time the store comes back, for as long as it fails
/// with a storage fault (a full disk, an I/O error): an outcome of work already
/// acknowledged must not be dropped because the disk was full when it finished. Other
/// errors, and shutdown, end the attempts.
pub(crate) async fn until_written<T, F, Fut>(
    store: &Store,
    shutdown: &CancellationToken,
    mut write: F,
) -> Result<T, bosun_store::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, bosun_store::StoreError>>,
{
    let mut health = store.watch_health();
    loop {
        match write().await {
            Err(
                e @ (bosun_store::StoreError::DiskFull { .. } | bosun_store::StoreError::Io { .. }),
            ) => {
                tracing::warn!(error = %e, "cannot record now; trying again once the store is back");
                tokio::select! {
                    ok = health.wait_for(|h| *h == Health::Ok) => if ok.is_err() { return Err(e) },
                    _ = shutdown.cancelled() => return Err(e),
                }
            }
            other => return other,
        }
    }
}
