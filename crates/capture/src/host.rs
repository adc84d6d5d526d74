//! Host stats from `/proc`: a HOST record every stats interval.

use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Capture, Topic};

/// One host sample, written as the HOST record's JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HostSample {
    pub load1: f64,
    pub mem_available_bytes: u64,
    pub mem_total_bytes: u64,
    pub cpus: u32,
}

/// Sample every `interval` until shutdown.
pub(super) async fn run(capture: Capture, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        match sample().await {
            Ok(s) => {
                failing = false;
                match serde_json::to_string(&s) {
                    Ok(json) => capture.record(Topic::Host, None, &json),
                    Err(e) => tracing::debug!(error = %e, "host sample not serialised"),
                }
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot read host stats from /proc; HOST records stop until it works");
            }
            Err(_) => {}
        }
    }
}

async fn sample() -> std::io::Result<HostSample> {
    let loadavg = tokio::fs::read_to_string("/proc/loadavg").await?;
    let meminfo = tokio::fs::read_to_string("/proc/meminfo").await?;
    let stat = tokio::fs::read_to_string("/proc/stat").await?;
    parse(&loadavg, &meminfo, &stat).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected /proc format")
    })
}

/// A sample from the text of `/proc/loadavg`, `/proc/meminfo` and `/proc/stat`.
pub(super) fn parse(loadavg: &str, meminfo: &str, stat: &str) -> Option<HostSample> {
    let load1 = loadavg.split_whitespace().next()?.parse().ok()?;
    let kib = |key: &str| -> Option<u64> {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let cpus = stat
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .and_then(|r| r.split(' ').next())
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    Some(HostSample {
        load1,
        mem_available_bytes: kib("MemAvailable")?.saturating_mul(1024),
        mem_total_bytes: kib("MemTotal")?.saturating_mul(1024),
        cpus: u32::try_from(cpus).unwrap_or(u32::MAX).max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_text() {
        let s = parse(
            "0.52 0.40 0.30 1/234 5678\n",
            "MemTotal:       16314192 kB\nMemFree:  100 kB\nMemAvailable:    8157096 kB\n",
            "cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\nintr 5\nctxt 6\n",
        )
        .unwrap();
        assert_eq!(
            s,
            HostSample {
                load1: 0.52,
                mem_available_bytes: 8_157_096 * 1024,
                mem_total_bytes: 16_314_192 * 1024,
                cpus: 2
            }
        );
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"load1":0.52,"memAvailableBytes":8352866304,"memTotalBytes":16705732608,"cpus":2}"#
        );
    }

    #[tokio::test]
    async fn reads_this_host() {
        let s = sample().await.unwrap();
        assert!(s.mem_total_bytes > 0 && s.cpus >= 1);
    }
}
