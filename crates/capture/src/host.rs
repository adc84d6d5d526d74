//! Host stats from `/proc`: a HOST record every stats interval.

use std::time::Duration;

use bosun_methods::host;
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

/// A sample from the text of `/proc/loadavg`, `/proc/meminfo` and `/proc/stat`; `None`
/// without a load average or a memory total.
pub(super) fn parse(loadavg: &str, meminfo: &str, stat: &str) -> Option<HostSample> {
    let memory = host::parse_meminfo(meminfo)?;
    Some(HostSample {
        load1: host::parse_loadavg(loadavg)?.one,
        mem_available_bytes: memory.available_bytes,
        mem_total_bytes: memory.total_bytes,
        cpus: host::parse_stat_cpus(stat),
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
