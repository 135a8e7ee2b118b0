//! Answers in flight: a cap for the whole server, a cap per caller, and a relay that lets go of
//! both as soon as the answer is produced or its reader stops taking it. Without the relay an
//! answer's slot (and the model behind it) lived as long as the client kept its connection
//! open, read or not.

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Pieces of an answer waiting for their reader at most; beyond that the answer waits.
const RELAY_BUFFER: usize = 64;

/// The answer slots of one server.
pub struct AnswerSlots {
    all: Arc<Semaphore>,
    max_all: usize,
    per_caller: usize,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// Why an answer was not started.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The server streams this many answers already.
    Server(usize),
    /// This caller streams this many answers already.
    Caller(usize),
}

/// One answer's right to stream; both caps get their place back when it is dropped.
pub struct Slot {
    _all: OwnedSemaphorePermit,
    _caller: CallerSlot,
}

struct CallerSlot {
    key: String,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

impl AnswerSlots {
    /// At most `max_all` answers at once, and `per_caller` of them for one caller (0: no cap
    /// per caller).
    pub fn new(max_all: usize, per_caller: usize) -> Self {
        let max_all = max_all.max(1);
        Self {
            all: Arc::new(Semaphore::new(max_all)),
            max_all,
            per_caller,
            held: Arc::default(),
        }
    }

    /// A slot for `caller` (an account or a client address), or why there is none.
    pub fn try_acquire(&self, caller: &str) -> Result<Slot, Refused> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mine = held.get(caller).copied().unwrap_or(0);
        if self.per_caller > 0 && mine >= self.per_caller {
            return Err(Refused::Caller(self.per_caller));
        }
        let all = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Server(self.max_all))?;
        held.insert(caller.to_string(), mine + 1);
        Ok(Slot {
            _all: all,
            _caller: CallerSlot {
                key: caller.to_string(),
                held: self.held.clone(),
            },
        })
    }
}

/// Streams `body` through a task of its own that holds `slot`: the slot goes when the answer
/// has been produced (the reader may still be taking the last pieces), when the reader leaves,
/// or when the reader has taken nothing for `stall` while pieces wait, whichever comes first.
/// An abandoned answer's stream is dropped, which stops its generator.
pub fn relay(body: Body, slot: Slot, stall: Duration) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, axum::Error>>(RELAY_BUFFER);
    tokio::spawn(async move {
        let _slot = slot;
        let mut pieces = body.into_data_stream();
        loop {
            let piece = tokio::select! {
                () = tx.closed() => return,
                piece = pieces.next() => piece,
            };
            let Some(piece) = piece else { return };
            match tokio::time::timeout(stall, tx.send(piece)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    crate::metrics::global().record_refused("chat", "reader_stalled");
                    tracing::warn!(
                        ?stall,
                        "a client stopped reading its answer; the answer was abandoned"
                    );
                    return;
                }
            }
        }
    });
    // A stream over the receiver that may be polled again after its end (body layers do so),
    // unlike `unfold`, which panics then.
    let mut rx = rx;
    Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_share_and_the_server_its_cap() {
        let slots = AnswerSlots::new(3, 2);
        let a1 = slots.try_acquire("a").unwrap();
        let _a2 = slots.try_acquire("a").unwrap();
        assert_eq!(slots.try_acquire("a").err(), Some(Refused::Caller(2)));
        let _b1 = slots.try_acquire("b").unwrap();
        assert_eq!(slots.try_acquire("c").err(), Some(Refused::Server(3)));
        drop(a1);
        assert!(
            slots.try_acquire("a").is_ok(),
            "a place comes back when an answer ends"
        );
    }

    #[tokio::test]
    async fn a_reader_that_stops_taking_pieces_loses_its_slot() {
        let slots = AnswerSlots::new(1, 0);
        let endless =
            futures::stream::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from_static(b"token ")));
        let body = relay(
            Body::from_stream(endless),
            slots.try_acquire("a").unwrap(),
            Duration::from_millis(200),
        );
        // Never read: after the buffer fills and the stall passes, the slot is free again.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while slots.try_acquire("b").is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the slot was never released"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(body);
    }

    #[tokio::test]
    async fn a_finished_answer_frees_its_slot_before_it_is_read() {
        let slots = AnswerSlots::new(1, 0);
        let body = relay(
            Body::from("a short answer"),
            slots.try_acquire("a").unwrap(),
            Duration::from_secs(60),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while slots.try_acquire("b").is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the slot was never released"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let text = axum::body::to_bytes(body, 1024).await.unwrap();
        assert_eq!(
            &text[..],
            b"a short answer",
            "the reader still gets all of it"
        );
    }

    #[tokio::test]
    async fn a_finished_relay_may_be_polled_again() {
        let slots = AnswerSlots::new(1, 0);
        let slot = slots.try_acquire("a").unwrap();
        let mut pieces = relay(Body::from("x"), slot, Duration::from_secs(60)).into_data_stream();
        while pieces.next().await.is_some() {}
        assert!(pieces.next().await.is_none(), "still ended, no panic");
    }
}
