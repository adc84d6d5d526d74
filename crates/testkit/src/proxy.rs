//! A userspace TCP proxy for link faults this kernel cannot make: `tc netem` is absent
//! here, so added latency, stalls and resets between a node and its NATS server come
//! from a proxy in between.
//!
//! Each direction of each connection has a reader thread, which stamps every chunk it
//! reads with the time it may leave (read time + the delay in force), and a writer
//! thread, which holds the chunk until then, and holds everything while the link is
//! stalled. A reset closes every connection at once, as a broken link would.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Shared {
    delay_ms: AtomicU64,
    stalled: AtomicBool,
    stopped: AtomicBool,
    connections: Mutex<Vec<TcpStream>>,
}

/// A running proxy; stops (closing every connection) on drop.
pub struct LinkProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
}

impl LinkProxy {
    /// Proxy a local port to `target`.
    pub fn start(target: SocketAddr) -> LinkProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let address = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        std::thread::Builder::new()
            .name("link-proxy".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if accepting.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(target) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    {
                        let mut open = accepting.connections.lock().unwrap();
                        open.retain(|s| s.peer_addr().is_ok());
                        open.extend(client.try_clone().ok());
                        open.extend(server.try_clone().ok());
                    }
                    pipe(&client, &server, accepting.clone());
                    pipe(&server, &client, accepting.clone());
                }
            })
            .expect("start the proxy");
        LinkProxy { address, shared }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.address)
    }

    /// Hold every byte this long in each direction (0: none).
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Stop moving bytes, keeping the connections open (a stalled link).
    pub fn stall(&self) {
        self.shared.stalled.store(true, Ordering::SeqCst);
    }

    /// Move bytes again; what was held goes out in order.
    pub fn resume(&self) {
        self.shared.stalled.store(false, Ordering::SeqCst);
    }

    /// Close every open connection now (a broken link); new ones are taken.
    pub fn reset(&self) {
        for stream in self.shared.connections.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.stalled.store(false, Ordering::SeqCst);
        self.reset();
        // Wake the accept loop so it sees the stop.
        let _ = TcpStream::connect(self.address);
    }
}

/// Chunks read with the time each may leave, whether the reader has ended, and the
/// writer's wake-up.
type Queue = (Mutex<(VecDeque<(Instant, Vec<u8>)>, bool)>, Condvar);

/// Move bytes from `from` to `to` through the delay and stall in force.
fn pipe(from: &TcpStream, to: &TcpStream, shared: Arc<Shared>) {
    let (Ok(mut reader), Ok(mut writer)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let queue: Arc<Queue> = Arc::new((Mutex::new((VecDeque::new(), false)), Condvar::new()));
    let (filled, reading) = (queue.clone(), shared.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let due =
                Instant::now() + Duration::from_millis(reading.delay_ms.load(Ordering::SeqCst));
            let (lock, ready) = &*filled;
            lock.lock().unwrap().0.push_back((due, buf[..n].to_vec()));
            ready.notify_one();
        }
        let (lock, ready) = &*filled;
        lock.lock().unwrap().1 = true;
        ready.notify_one();
    });
    std::thread::spawn(move || {
        let (lock, ready) = &*queue;
        loop {
            let next = {
                let mut state = lock.lock().unwrap();
                loop {
                    if shared.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let stalled = shared.stalled.load(Ordering::SeqCst);
                    match state.0.front() {
                        Some((due, _)) if !stalled && *due <= Instant::now() => {
                            break state.0.pop_front();
                        }
                        None if state.1 => break None,
                        // Wait for a chunk, its time, or the stall to end (checked every
                        // 10 ms: a stall is a switch, not an event).
                        front => {
                            let wait = match front {
                                Some((due, _)) if !stalled => {
                                    due.saturating_duration_since(Instant::now())
                                }
                                _ => Duration::from_millis(10),
                            };
                            state = ready
                                .wait_timeout(state, wait.min(Duration::from_millis(10)))
                                .unwrap()
                                .0;
                        }
                    }
                }
            };
            match next {
                Some((_, bytes)) => {
                    if writer.write_all(&bytes).is_err() {
                        break;
                    }
                }
                None => break,
            }
        }
        let _ = writer.shutdown(Shutdown::Write);
    });
}
