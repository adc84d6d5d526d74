//! Internal events: each writes its log line and moves its metric in one call, so that
//! logs and metrics cannot drift apart (the pattern of vector's `internal_events`).
//!
//! Build the event where it happens and call `emit`:
//! `Resent { id, method, reason: "no ACK" }.emit(&metrics)`.

use crate::metrics::Metrics;

/// A message reached a state (debug log; counts `bosun_messages_total`).
#[derive(Debug, Clone, Copy)]
pub struct MessageState<'a> {
    /// The message id.
    pub id: &'a str,
    /// Its method.
    pub method: &'a str,
    /// The state reached, as [`bosun_proto::State::name`] spells it.
    pub state: &'a str,
}

impl MessageState<'_> {
    /// Log it and count it.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::debug!(
            id = self.id,
            method = self.method,
            state = self.state,
            "message state"
        );
        metrics.message_state(self.method, self.state);
    }
}

/// A message was sent again (info log; counts `bosun_retries_total`).
#[derive(Debug, Clone, Copy)]
pub struct Resent<'a> {
    /// The message id.
    pub id: &'a str,
    /// Its method.
    pub method: &'a str,
    /// Why, e.g. `no ACK in 5 s`.
    pub reason: &'a str,
}

impl Resent<'_> {
    /// Log it and count it.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::info!(
            id = self.id,
            method = self.method,
            reason = self.reason,
            "message resent"
        );
        metrics.retry(self.method);
    }
}

/// A send got no ACK in time (info log; counts `bosun_ack_timeouts_total`).
#[derive(Debug, Clone, Copy)]
pub struct AckTimedOut<'a> {
    /// The message id.
    pub id: &'a str,
    /// Its method.
    pub method: &'a str,
}

impl AckTimedOut<'_> {
    /// Log it and count it.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::info!(id = self.id, method = self.method, "no ACK in time");
        metrics.ack_timeout(self.method);
    }
}

/// The result of a sent message came back (debug log; observes
/// `bosun_delivery_latency_seconds`).
#[derive(Debug, Clone, Copy)]
pub struct ResultArrived<'a> {
    /// The id of the message answered.
    pub id: &'a str,
    /// Its method.
    pub method: &'a str,
    /// Seconds from submit to the result's arrival.
    pub latency_seconds: f64,
}

impl ResultArrived<'_> {
    /// Log it and observe its latency.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::debug!(
            id = self.id,
            method = self.method,
            latency_seconds = self.latency_seconds,
            "result arrived"
        );
        metrics.observe_latency(self.latency_seconds);
    }
}

/// Delivery was given up (warn log; counts `bosun_messages_total{state="failed"}`).
#[derive(Debug, Clone, Copy)]
pub struct Undelivered<'a> {
    /// The message id.
    pub id: &'a str,
    /// Its method.
    pub method: &'a str,
    /// Why, e.g. `no ACK after 5 retries`.
    pub reason: &'a str,
}

impl Undelivered<'_> {
    /// Log it and count it as failed.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::warn!(
            id = self.id,
            method = self.method,
            reason = self.reason,
            "message undelivered"
        );
        metrics.message_state(self.method, "failed");
    }
}

/// An arrival was refused before anything of it ran or was recorded as a result (warn
/// log; counts `bosun_refused_total{reason}`).
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    /// The subject it arrived on.
    pub subject: &'a str,
    /// The sender it claims or proved, when known.
    pub from: Option<&'a str>,
    /// A short label for the metric.
    pub kind: &'static str,
    /// The whole reason, as answered.
    pub reason: &'a str,
}

impl Refused<'_> {
    /// Log it and count it.
    pub fn emit(&self, metrics: &Metrics) {
        tracing::warn!(
            subject = self.subject,
            from = self.from,
            kind = self.kind,
            reason = self.reason,
            "refused an arrival"
        );
        metrics.refused(self.kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::sample;

    #[test]
    fn each_event_moves_its_metric() {
        let metrics = Metrics::new();
        let id = "01J0000000000000000000000A";
        let value = |series: &str| sample(&metrics.encode(), series);

        MessageState {
            id,
            method: "ping",
            state: "acked",
        }
        .emit(&metrics);
        assert_eq!(
            value(r#"bosun_messages_total{method="ping",state="acked"}"#),
            Some(1.0)
        );

        for _ in 0..2 {
            Resent {
                id,
                method: "cliCommand",
                reason: "no ACK in 5 s",
            }
            .emit(&metrics);
        }
        assert_eq!(
            value(r#"bosun_retries_total{method="cliCommand"}"#),
            Some(2.0)
        );

        AckTimedOut {
            id,
            method: "cliCommand",
        }
        .emit(&metrics);
        assert_eq!(
            value(r#"bosun_ack_timeouts_total{method="cliCommand"}"#),
            Some(1.0)
        );

        ResultArrived {
            id,
            method: "ping",
            latency_seconds: 0.25,
        }
        .emit(&metrics);
        assert_eq!(value("bosun_delivery_latency_seconds_count"), Some(1.0));
        assert_eq!(value("bosun_delivery_latency_seconds_sum"), Some(0.25));

        Undelivered {
            id,
            method: "ping",
            reason: "no ACK after 5 retries",
        }
        .emit(&metrics);
        assert_eq!(
            value(r#"bosun_messages_total{method="ping",state="failed"}"#),
            Some(1.0)
        );
        // The other series were left alone.
        assert_eq!(
            value(r#"bosun_messages_total{method="ping",state="acked"}"#),
            Some(1.0)
        );
        assert_eq!(value(r#"bosun_retries_total{method="ping"}"#), None);
    }
}
