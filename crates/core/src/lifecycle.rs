//! The message lifecycle: queued → sent → acked → running → done | failed | timeout |
//! interrupted | rejected.
//!
//! ```text
//!   queued ──send──▶ sent ──ack──▶ acked ──start──▶ running ──finish──▶ done/failed/timeout/interrupted
//!     │               │ ▲            │                                   ▲
//!     │               └─┘ resend     └───────── finish (result before start note) ┘
//!     └──── give up (ttl, retries) ──▶ failed          refuse ──▶ rejected
//!                     │
//!                     └─ give up after a send that may have arrived ──▶ unconfirmed
//!                          ──▶ cancelled (the destination confirms it never ran)
//!                          ──▶ running / the real outcome (it had arrived)
//! ```
//!
//! Receiver-side records use `received → running → …` with the same terminal states.
//! Events can arrive out of order (a result may overtake the best-effort "running"
//! note), so the rule is: never move backwards, never leave a terminal state.

use bosun_proto::{State, Status};

/// Something that happened to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Published (first send or a resend).
    Sent,
    /// The destination acknowledged it.
    Acked,
    /// The destination recorded it (receiver side).
    Received,
    /// The method started.
    Started,
    /// The method ended, or the message was refused or given up, with this status.
    Finished(Status),
    /// The sender stopped sending after a send that may have arrived, and asked the
    /// destination to cancel it.
    Unconfirmed,
}

/// How far along the lifecycle a state is: a message never moves to a lower rank.
pub fn rank(state: State) -> u8 {
    match state {
        State::Queued => 0,
        State::Sent => 1,
        State::Acked | State::Received | State::Unconfirmed => 2,
        State::Running => 3,
        _ => 4,
    }
}

/// The state after `event`, or `None` when the event does not move the message (a
/// resend, a late note, anything after a terminal state).
pub fn next_state(current: State, event: Event) -> Option<State> {
    if current.is_terminal() {
        return None;
    }
    let target = match event {
        Event::Sent => State::Sent,
        Event::Acked => State::Acked,
        Event::Received => State::Received,
        Event::Started => State::Running,
        Event::Finished(status) => State::from_status(status),
        Event::Unconfirmed => State::Unconfirmed,
    };
    (rank(target) > rank(current)).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path_moves_forward() {
        let mut s = State::Queued;
        for (e, want) in [
            (Event::Sent, State::Sent),
            (Event::Acked, State::Acked),
            (Event::Started, State::Running),
            (Event::Finished(Status::Done), State::Done),
        ] {
            s = next_state(s, e).unwrap();
            assert_eq!(s, want);
        }
    }

    #[test]
    fn resends_and_late_notes_do_not_move_backwards() {
        assert_eq!(next_state(State::Sent, Event::Sent), None);
        assert_eq!(next_state(State::Running, Event::Acked), None);
        assert_eq!(next_state(State::Running, Event::Sent), None);
    }

    #[test]
    fn terminal_states_are_final() {
        for t in [
            State::Done,
            State::Failed,
            State::Timeout,
            State::Interrupted,
            State::Rejected,
        ] {
            for e in [
                Event::Sent,
                Event::Acked,
                Event::Started,
                Event::Finished(Status::Done),
                Event::Finished(Status::Failed),
            ] {
                assert_eq!(next_state(t, e), None, "{t:?} {e:?}");
            }
        }
    }

    #[test]
    fn a_result_may_overtake_the_running_note() {
        assert_eq!(
            next_state(State::Acked, Event::Finished(Status::Timeout)),
            Some(State::Timeout)
        );
        assert_eq!(
            next_state(State::Sent, Event::Finished(Status::Done)),
            Some(State::Done)
        );
    }

    #[test]
    fn give_up_from_queued_fails() {
        assert_eq!(
            next_state(State::Queued, Event::Finished(Status::Failed)),
            Some(State::Failed)
        );
    }
}
