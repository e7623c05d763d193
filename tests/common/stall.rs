//! Stalls a test controls, to hold a phase of cdq open until the test has acted (sent a
//! signal) — never a sleep: [`Mute`], a TCP endpoint that accepts and never answers, and
//! [`Gate`], a Docker socket of the test's own in front of the daemon's that passes every
//! request through but holds the first one that matches, until the test releases it.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// A TCP endpoint that accepts connections and never answers; accepted connections are
/// held until it is dropped.
pub struct Mute {
    pub port: u16,
    pub accepted: mpsc::Receiver<()>,
}

pub fn mute() -> Mute {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut held = vec![];
        for c in l.incoming() {
            let Ok(c) = c else { break };
            held.push(c);
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    Mute { port, accepted: rx }
}

/// The daemon every test here runs against.
const DOCKER_SOCKET: &str = "/var/run/docker.sock";

#[derive(Default)]
struct GateState {
    /// The held request's first line, once one matched.
    held: Option<String>,
    released: bool,
    closed: bool,
}

/// A Unix socket (`DOCKER_HOST=unix://<path>`) proxying to the daemon. The first request
/// whose request line contains the pattern is held (not sent to the daemon) until
/// [`Gate::release`]; every other request, before and after, passes. Every request line
/// is recorded ([`Gate::requests`]). Dropping it closes the socket and drops a request
/// still held, unsent.
pub struct Gate {
    path: PathBuf,
    state: Arc<(Mutex<GateState>, Condvar)>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Gate {
    /// A gate at `<dir>/gate.sock` holding the first request whose line contains `hold`
    /// (e.g. `"/containers/create"`, `"POST /images/load"`).
    pub fn new(dir: &Path, hold: &str) -> Gate {
        let path = dir.join("gate.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("binding the gate socket");
        let state: Arc<(Mutex<GateState>, Condvar)> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (st, reqs, pattern) = (state.clone(), requests.clone(), hold.to_string());
        thread::spawn(move || {
            for client in listener.incoming() {
                if st.0.lock().unwrap().closed {
                    break;
                }
                let Ok(client) = client else { break };
                let (st, reqs, pattern) = (st.clone(), reqs.clone(), pattern.clone());
                thread::spawn(move || proxy(client, &st, &reqs, &pattern));
            }
        });
        Gate {
            path,
            state,
            requests,
        }
    }

    /// `DOCKER_HOST` for cdq.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Waits until a request matched and is held; returns its request line. Panics with
    /// the requests seen so far after `limit`.
    pub fn wait_held(&self, limit: Duration) -> String {
        let (lock, cv) = &*self.state;
        let (g, timeout) = cv
            .wait_timeout_while(lock.lock().unwrap(), limit, |s| s.held.is_none())
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "no request matched within {limit:?}; requests: {:#?}",
            self.requests()
        );
        g.held.clone().unwrap()
    }

    /// Sends the held request on to the daemon (the request it was in the middle of).
    pub fn release(&self) {
        let (lock, cv) = &*self.state;
        lock.lock().unwrap().released = true;
        cv.notify_all();
    }

    /// Every request line seen, in order (the held one included).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let (lock, cv) = &*self.state;
        lock.lock().unwrap().closed = true;
        cv.notify_all();
        // Wakes the accept loop so it sees `closed`.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One client connection: the daemon's answers flow back untouched; the client's bytes go
/// on to the daemon, except that a chunk starting a request that matches is held.
fn proxy(
    mut client: UnixStream,
    state: &(Mutex<GateState>, Condvar),
    requests: &Mutex<Vec<String>>,
    pattern: &str,
) {
    let Ok(mut daemon) = UnixStream::connect(DOCKER_SOCKET) else {
        return;
    };
    let (Ok(mut from_daemon), Ok(mut to_client)) = (daemon.try_clone(), client.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        let _ = std::io::copy(&mut from_daemon, &mut to_client);
        let _ = to_client.shutdown(std::net::Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        // Clients here never pipeline: a chunk that starts with a method starts a request.
        if let Some(line) = request_line(chunk) {
            requests.lock().unwrap().push(line.clone());
            let (lock, cv) = state;
            let mut s = lock.lock().unwrap();
            if s.held.is_none() && line.contains(pattern) {
                s.held = Some(line);
                cv.notify_all();
                s = cv.wait_while(s, |s| !s.released && !s.closed).unwrap();
                if !s.released {
                    return;
                }
            }
        }
        if daemon.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = daemon.shutdown(std::net::Shutdown::Write);
}

fn request_line(chunk: &[u8]) -> Option<String> {
    const METHODS: [&str; 5] = ["GET ", "POST ", "PUT ", "DELETE ", "HEAD "];
    let end = chunk.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&chunk[..end]).ok()?;
    METHODS
        .iter()
        .any(|m| line.starts_with(m))
        .then(|| line.to_string())
}
