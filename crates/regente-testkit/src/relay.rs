//! A TCP relay between agents and a server.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

struct RelayState {
    /// `host:port` of the server.
    target: Mutex<String>,
    cut: AtomicBool,
    closing: AtomicBool,
    /// Both ends of every open connection, to shut them down on a cut.
    open: Mutex<Vec<TcpStream>>,
}

/// Forwards TCP connections to a server, so that agents keep one address
/// while the server restarts on new ports, and can be cut off: a cut closes
/// every open connection and closes new ones at once until restored.
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
                let target = shared.target.lock().unwrap().clone();
                let Ok(server_side) = TcpStream::connect(&target) else {
                    let _ = agent_side.shutdown(Shutdown::Both);
                    continue;
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
                    agent_side.try_clone().unwrap(),
                    server_side.try_clone().unwrap(),
                );
                pipe(server_side, agent_side);
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

    fn close_all(&self) {
        for stream in self.state.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.closing.store(true, Ordering::SeqCst);
        self.close_all();
        // Wakes the accept loop so that it sees `closing`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies one direction of a relayed connection; at its end, both directions close.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
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
