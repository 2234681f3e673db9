//! A TCP relay between agents and a server.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

struct RelayState {
    /// `host:port` of the server.
    target: Mutex<String>,
    cut: AtomicBool,
    /// A partition: bytes are held, not delivered, and nothing is closed.
    partitioned: Mutex<bool>,
    /// New connections wait (open ones flow): an agent's WebSocket works, its
    /// package downloads hang.
    holding_new: Mutex<bool>,
    healed: Condvar,
    /// When bytes last went through toward the server (epoch milliseconds).
    last_to_server: AtomicI64,
    closing: AtomicBool,
    /// Both ends of every open connection, to shut them down on a cut.
    open: Mutex<Vec<TcpStream>>,
}

/// Forwards TCP connections to a server, so that agents keep one address
/// while the server restarts on new ports, and can be cut off: a cut closes
/// every open connection and closes new ones at once until restored; a
/// partition lets nothing through and closes nothing until healed.
pub struct Relay {
    port: u16,
    state: Arc<RelayState>,
}

impl Relay {
    /// A relay to `base` (`http://host:port`).
    pub fn start(base: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a relay port");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(RelayState {
            target: Mutex::new(host_port(base)),
            cut: AtomicBool::new(false),
            partitioned: Mutex::new(false),
            holding_new: Mutex::new(false),
            healed: Condvar::new(),
            last_to_server: AtomicI64::new(0),
            closing: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if shared.closing.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(agent_side) = incoming else { continue };
                if shared.cut.load(Ordering::SeqCst) {
                    let _ = agent_side.shutdown(Shutdown::Both);
                    continue;
                }
                let shared = shared.clone();
                // Connected on a thread of its own: during a partition the
                // connection waits (as a SYN would be retried) until healed.
                std::thread::spawn(move || {
                    shared.wait_healed();
                    shared.wait_new_released();
                    let target = shared.target.lock().unwrap().clone();
                    let Ok(server_side) = TcpStream::connect(&target) else {
                        let _ = agent_side.shutdown(Shutdown::Both);
                        return;
                    };
                    let _ = agent_side.set_nodelay(true);
                    let _ = server_side.set_nodelay(true);
                    {
                        let mut open = shared.open.lock().unwrap();
                        open.retain(|s| s.peer_addr().is_ok());
                        open.push(agent_side.try_clone().unwrap());
                        open.push(server_side.try_clone().unwrap());
                    }
                    pipe(
                        &shared,
                        agent_side.try_clone().unwrap(),
                        server_side.try_clone().unwrap(),
                        true,
                    );
                    pipe(&shared, server_side, agent_side, false);
                });
            }
        });
        Relay { port, state }
    }

    /// The address agents dial.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends new connections to `base` from now on.
    pub fn point_to(&self, base: &str) {
        *self.state.target.lock().unwrap() = host_port(base);
    }

    /// Cuts every open connection and refuses new ones until [`Relay::restore`].
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.close_all();
    }

    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// A network partition: from now on nothing gets through either way, and
    /// nothing is closed either (no FIN, no reset); new connections hang. What
    /// was sent meanwhile arrives after [`Relay::heal`], as TCP would deliver
    /// it once the network is back.
    pub fn partition(&self) {
        *self.state.partitioned.lock().unwrap() = true;
    }

    /// When the server last got bytes through the relay (epoch milliseconds;
    /// 0 before any): during a partition, the last word it heard.
    pub fn last_to_server_millis(&self) -> i64 {
        self.state.last_to_server.load(Ordering::SeqCst)
    }

    pub fn heal(&self) {
        *self.state.partitioned.lock().unwrap() = false;
        self.state.healed.notify_all();
    }

    /// New connections wait until [`Relay::release_new`]; open ones go on.
    pub fn hold_new(&self) {
        *self.state.holding_new.lock().unwrap() = true;
    }

    pub fn release_new(&self) {
        *self.state.holding_new.lock().unwrap() = false;
        self.state.healed.notify_all();
    }

    fn close_all(&self) {
        for stream in self.state.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl RelayState {
    fn wait_new_released(&self) {
        let mut holding = self.holding_new.lock().unwrap();
        while *holding && !self.closing.load(Ordering::SeqCst) {
            holding = self.healed.wait(holding).unwrap();
        }
    }

    fn wait_healed(&self) {
        let mut partitioned = self.partitioned.lock().unwrap();
        while *partitioned && !self.closing.load(Ordering::SeqCst) {
            partitioned = self.healed.wait(partitioned).unwrap();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.closing.store(true, Ordering::SeqCst);
        self.heal();
        self.release_new();
        self.close_all();
        // Wakes the accept loop so that it sees `closing`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies one direction of a relayed connection, holding what it read (and its
/// end) while partitioned; at its end, both directions close.
fn pipe(state: &Arc<RelayState>, mut from: TcpStream, mut to: TcpStream, toward_server: bool) {
    let state = state.clone();
    std::thread::spawn(move || {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let n = match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            state.wait_healed();
            if to.write_all(&buffer[..n]).is_err() {
                break;
            }
            if toward_server {
                state
                    .last_to_server
                    .store(crate::now_millis(), Ordering::SeqCst);
            }
        }
        // A close does not cross a partition either.
        state.wait_healed();
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

fn host_port(base: &str) -> String {
    base.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// An address where nothing listens.
pub fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
