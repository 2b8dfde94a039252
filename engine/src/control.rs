//! The control endpoint of a running `weir run` (real mode only), and the client side of
//! `weir list`, `weir savepoint`, `weir stop` and `weir cancel`.
//!
//! Each running job listens on a loopback port and records itself in a registry directory
//! (`$WEIR_HOME/jobs`, or `<temp dir>/weir/jobs`), one JSON file per job with its port and
//! process id. A request is one JSON line naming the job it is for; so is the answer. The
//! endpoint's threads only relay requests to the job's async loop, which asks the job manager.
//!
//! Two rules keep the client honest. An answer is written before the job's process exits:
//! closing the endpoint waits (a bounded time) for every answer in flight, so `weir cancel`
//! hears "canceled" rather than the end of a connection. And a registry entry counts only
//! while its process lives and its endpoint answers for its job: a `kill -9` leaves an entry
//! behind, and another job may reuse its port.

use engine::cluster::Cluster;
use engine::cluster::messages::JobStatus;
use engine::ids::JobId;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a client waits for an answer: a stop waits for its savepoint and the job's end.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a closing endpoint waits for the answers in flight to reach their clients.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no running job matches `{0}` (see `weir list`)")]
    NoSuchJob(String),
    #[error("the job id is empty: give a running job's id or a prefix of it (see `weir list`)")]
    EmptyJobId,
    #[error("`{0}` matches several running jobs: {1}")]
    Ambiguous(String, String),
    #[error("cannot reach job {job}: {message}")]
    Unreachable { job: String, message: String },
    #[error("job {job}: {message}")]
    Failed { job: String, message: String },
    #[error("job registry `{path}`: {message}")]
    Registry { path: String, message: String },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    op: String,
    dir: Option<String>,
    /// The job the client means; an endpoint serving another job refuses the request.
    #[serde(default)]
    job: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Response {
    ok: bool,
    message: String,
    path: Option<String>,
    status: Option<JobStatus>,
    /// The job the answering endpoint serves.
    #[serde(default)]
    job: Option<String>,
}

/// A job's registry entry.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    job: String,
    name: String,
    port: u16,
    pid: u32,
}

/// A request from the endpoint's thread, with where its answer goes.
pub struct PendingRequest {
    request: Request,
    reply: std::sync::mpsc::Sender<Response>,
}

/// Connections whose answer is not written yet.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    changed: Condvar,
}

impl InFlight {
    fn begin(self: &Arc<Self>) -> InFlightGuard {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        InFlightGuard(self.clone())
    }

    /// Waits until no answer is in flight, or `timeout` passed; whether none is.
    fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        while *count > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            count = self.changed.wait_timeout(count, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        true
    }
}

/// One connection in flight; dropping it, once its answer is written, counts it done.
struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        *self.0.count.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        self.0.changed.notify_all();
    }
}

/// The running endpoint. Closing it (dropping it) removes the job from the registry, stops
/// taking requests and waits, bounded, until every answer in flight is written.
pub struct Endpoint {
    file: PathBuf,
    requests: Option<tokio::sync::mpsc::UnboundedReceiver<PendingRequest>>,
    in_flight: Arc<InFlight>,
}

impl Endpoint {
    /// The next request to answer.
    pub async fn recv(&mut self) -> PendingRequest {
        match self.requests.as_mut() {
            Some(requests) => match requests.recv().await {
                Some(request) => request,
                // The accept thread holds a sender for as long as the process lives.
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file); // real-only: the CLI's job registry
        // Requests not taken yet get their answer from the relay: the job has ended.
        self.requests = None;
        if !self.in_flight.wait_idle(CLOSE_TIMEOUT) {
            let _ = writeln!(std::io::stderr(), "warning: a control request got no answer before the job ended");
        }
    }
}

fn registry_dir() -> PathBuf {
    match std::env::var_os("WEIR_HOME") {
        Some(home) => PathBuf::from(home).join("jobs"),
        None => std::env::temp_dir().join("weir").join("jobs"),
    }
}

fn registry_error(path: &Path, error: std::io::Error) -> ControlError {
    ControlError::Registry { path: path.display().to_string(), message: error.to_string() }
}

/// Whether process `pid` is alive, where the system says (Linux's `/proc`); `None` where it
/// cannot tell.
pub fn process_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}

/// Starts the endpoint of job `job` and registers it.
pub fn serve(job: JobId, name: &str) -> Result<Endpoint, ControlError> {
    let dir = registry_dir();
    std::fs::create_dir_all(&dir).map_err(|e| registry_error(&dir, e))?; // real-only
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| registry_error(&dir, e))?; // real-only
    let port = listener.local_addr().map_err(|e| registry_error(&dir, e))?.port();
    let entry = Entry { job: job.to_string(), name: name.to_string(), port, pid: std::process::id() };
    let file = dir.join(format!("{job}.json"));
    let temporary = dir.join(format!(".{job}.json.tmp"));
    let bytes = serde_json::to_vec(&entry).expect("entries serialize");
    let written = std::fs::write(&temporary, bytes); // real-only
    written.map_err(|e| registry_error(&temporary, e))?;
    let renamed = std::fs::rename(&temporary, &file); // real-only
    renamed.map_err(|e| registry_error(&file, e))?;
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let in_flight = Arc::new(InFlight::default());
    let accepting = in_flight.clone();
    let served = job.to_string();
    // The endpoint's blocking accept loop, one thread per connection.
    let accept = move || {
        for stream in listener.incoming().flatten() {
            // Counted from the accept on: a request read later must still be answered.
            let guard = accepting.begin();
            let (sender, served) = (sender.clone(), served.clone());
            std::thread::spawn(move || relay(stream, sender, &served, guard)); // real-only
        }
    };
    std::thread::spawn(accept); // real-only
    Ok(Endpoint { file, requests: Some(receiver), in_flight })
}

/// Reads one request from a connection, hands it to the job's loop, writes the answer.
fn relay(
    stream: std::net::TcpStream,
    sender: tokio::sync::mpsc::UnboundedSender<PendingRequest>,
    served: &str,
    _in_flight: InFlightGuard,
) {
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    let refused = |message: String| Response { message, job: Some(served.to_string()), ..Response::default() };
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) if request.job.as_deref().is_some_and(|job| job != served) => {
            refused(format!("this endpoint serves job {served}, not {}", request.job.unwrap_or_default()))
        }
        Ok(request) => {
            let (reply, answer) = std::sync::mpsc::channel();
            match sender.send(PendingRequest { request, reply }) {
                Ok(()) => answer
                    .recv_timeout(ANSWER_TIMEOUT)
                    .unwrap_or_else(|_| refused("the job ended before answering".into())),
                Err(_) => refused("the job has ended".into()),
            }
        }
        Err(error) => refused(format!("malformed request: {error}")),
    };
    let mut stream = stream;
    let answer = serde_json::to_string(&response).expect("responses serialize");
    if writeln!(stream, "{answer}").is_ok() {
        let _ = stream.flush();
        // The client reads to the end of the line; shutting the write side tells it nothing
        // more is coming, before the process (and the socket) goes away.
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}

/// Answers one request by asking the job manager.
pub async fn answer(cluster: &Cluster, job: JobId, pending: PendingRequest) {
    let dir = pending.request.dir.clone().map(PathBuf::from);
    let response = match pending.request.op.as_str() {
        "status" => match cluster.status(job).await {
            Ok(status) => Response { ok: true, status: Some(status), ..Response::default() },
            Err(error) => Response { message: error.to_string(), ..Response::default() },
        },
        op @ ("savepoint" | "stop") => match cluster.trigger_savepoint(job, dir, op == "stop").await {
            Ok(path) => Response { ok: true, path: Some(path.display().to_string()), ..Response::default() },
            Err(error) => Response { message: error.to_string(), ..Response::default() },
        },
        "cancel" => {
            tracing::info!(%job, "canceling the job at the user's request (`weir cancel`)");
            match cluster.cancel(job).await {
                Ok(()) => Response { ok: true, message: "canceled".into(), ..Response::default() },
                Err(error) => Response { message: error.to_string(), ..Response::default() },
            }
        }
        other => Response { message: format!("unknown request `{other}`"), ..Response::default() },
    };
    let _ = pending.reply.send(Response { job: Some(job.to_string()), ..response });
}

/// The registry entries of live processes, by job id; entries of dead processes are removed.
fn entries() -> Result<Vec<(PathBuf, Entry)>, ControlError> {
    let dir = registry_dir();
    let mut found = Vec::new();
    let Ok(listing) = std::fs::read_dir(&dir) else { return Ok(found) }; // real-only
    for item in listing.flatten() {
        let path = item.path();
        if path.extension().is_some_and(|e| e == "json")
            && let Ok(bytes) = std::fs::read(&path) // real-only
            && let Ok(entry) = serde_json::from_slice::<Entry>(&bytes)
        {
            if process_alive(entry.pid) == Some(false) {
                let _ = std::fs::remove_file(&path); // real-only: a dead run's entry
                continue;
            }
            found.push((path, entry));
        }
    }
    found.sort_by(|a, b| a.1.job.cmp(&b.1.job));
    Ok(found)
}

/// Sends `request` to the endpoint of `entry`, checking that it answers for that job.
fn call(entry: &Entry, request: Request) -> Result<Response, ControlError> {
    let unreachable = |message: String| ControlError::Unreachable { job: entry.job.clone(), message };
    let request = Request { job: Some(entry.job.clone()), ..request };
    let stream = std::net::TcpStream::connect(("127.0.0.1", entry.port)).map_err(|e| unreachable(e.to_string()))?; // real-only
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(|e| unreachable(e.to_string()))?;
    let mut writer = &stream;
    writeln!(writer, "{}", serde_json::to_string(&request).expect("requests serialize"))
        .map_err(|e| unreachable(e.to_string()))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).map_err(|e| unreachable(e.to_string()))?;
    if line.is_empty() {
        return Err(unreachable("the connection closed without an answer".into()));
    }
    let response: Response = serde_json::from_str(&line).map_err(|e| unreachable(format!("malformed answer: {e}")))?;
    // A port reused by another job's endpoint (the entry's own run is gone) is no answer.
    if response.job.as_deref() != Some(entry.job.as_str()) {
        return Err(unreachable(format!(
            "port {} is served by another job ({}): this registry entry is stale",
            entry.port,
            response.job.as_deref().unwrap_or("unknown")
        )));
    }
    Ok(response)
}

/// `weir list`: every running job with its status; registry entries of dead jobs are removed.
pub fn list() -> Result<(), ControlError> {
    let mut any = false;
    for (path, entry) in entries()? {
        match call(&entry, Request { op: "status".into(), dir: None, job: None }) {
            Ok(Response { status: Some(status), .. }) => {
                any = true;
                let last = status.completed_checkpoints.last().map_or("none".to_string(), u64::to_string);
                out!(
                    "{}  {:<10} {:<10} attempt {}  checkpoints completed: {} (last {last})",
                    status.job,
                    status.name,
                    status.state,
                    status.attempt,
                    status.completed_checkpoints.len()
                );
            }
            _ => {
                let _ = std::fs::remove_file(path); // real-only: a stale registry entry
            }
        }
    }
    if !any {
        out!("no running jobs");
    }
    Ok(())
}

/// `weir savepoint`, `weir stop`, `weir cancel`: one request to the job matching `prefix`.
pub fn request(prefix: &str, op: &str, dir: Option<PathBuf>) -> Result<(), ControlError> {
    // Every id starts with the empty prefix: it would pick the only running job.
    if prefix.is_empty() {
        return Err(ControlError::EmptyJobId);
    }
    let matching: Vec<(PathBuf, Entry)> = entries()?.into_iter().filter(|(_, e)| e.job.starts_with(prefix)).collect();
    let (path, entry) = match matching.len() {
        0 => return Err(ControlError::NoSuchJob(prefix.to_string())),
        1 => &matching[0],
        _ => {
            return Err(ControlError::Ambiguous(
                prefix.to_string(),
                matching.iter().map(|(_, e)| e.job.as_str()).collect::<Vec<_>>().join(", "),
            ));
        }
    };
    let dir = dir.map(|d| std::path::absolute(&d).unwrap_or(d).display().to_string());
    let response = match call(entry, Request { op: op.to_string(), dir, job: None }) {
        Ok(response) => response,
        // The entry's run is gone (its port refuses, or another job answers on it).
        Err(ControlError::Unreachable { .. }) if !reachable(entry) => {
            let _ = std::fs::remove_file(path); // real-only: a stale registry entry
            return Err(ControlError::NoSuchJob(prefix.to_string()));
        }
        Err(error) => return Err(error),
    };
    if !response.ok {
        return Err(ControlError::Failed { job: entry.job.clone(), message: response.message });
    }
    match response.path {
        Some(path) => out!("{path}"),
        None => out!("{}", response.message),
    }
    Ok(())
}

/// Whether `entry`'s endpoint still answers for its job (a status request).
fn reachable(entry: &Entry) -> bool {
    call(entry, Request { op: "status".into(), dir: None, job: None }).is_ok()
}
