//! The control endpoint of a running `weir run` (real mode only), and the client side of
//! `weir list`, `weir savepoint`, `weir stop` and `weir cancel`.
//!
//! Each running job listens on a loopback port and records itself in a registry directory
//! (`$WEIR_HOME/jobs`, or `<temp dir>/weir/jobs`), one JSON file per job. A request is one
//! JSON line; so is the answer. The endpoint's thread only relays requests to the job's
//! async loop, which asks the job manager.

use engine::cluster::Cluster;
use engine::cluster::messages::JobStatus;
use engine::ids::JobId;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::Duration;

/// How long a client waits for an answer: a stop waits for its savepoint and the job's end.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no running job matches `{0}` (see `weir list`)")]
    NoSuchJob(String),
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
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Response {
    ok: bool,
    message: String,
    path: Option<String>,
    status: Option<JobStatus>,
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

/// The running endpoint; dropping it removes the job from the registry.
pub struct Endpoint {
    file: PathBuf,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file); // real-only: the CLI's job registry
    }
}

fn registry_dir() -> PathBuf {
    match std::env::var_os("WEIR_HOME") {
        Some(home) => PathBuf::from(home).join("jobs"),
        None => std::env::temp_dir().join("weir").join("jobs"),
    }
}

fn registry_error(path: &std::path::Path, error: std::io::Error) -> ControlError {
    ControlError::Registry { path: path.display().to_string(), message: error.to_string() }
}

/// Starts the endpoint of job `job` and registers it.
pub fn serve(
    job: JobId,
    name: &str,
) -> Result<(Endpoint, tokio::sync::mpsc::UnboundedReceiver<PendingRequest>), ControlError> {
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
    // The endpoint's blocking accept loop, one thread per connection.
    let accept = move || {
        for stream in listener.incoming().flatten() {
            let sender = sender.clone();
            std::thread::spawn(move || relay(stream, sender)); // real-only
        }
    };
    std::thread::spawn(accept); // real-only
    Ok((Endpoint { file }, receiver))
}

/// Reads one request from a connection, hands it to the job's loop, writes the answer.
fn relay(stream: std::net::TcpStream, sender: tokio::sync::mpsc::UnboundedSender<PendingRequest>) {
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => {
            let (reply, answer) = std::sync::mpsc::channel();
            if sender.send(PendingRequest { request, reply }).is_err() {
                return;
            }
            answer
                .recv_timeout(ANSWER_TIMEOUT)
                .unwrap_or(Response { message: "no answer from the job".into(), ..Response::default() })
        }
        Err(error) => Response { message: format!("malformed request: {error}"), ..Response::default() },
    };
    let mut stream = stream;
    let _ = writeln!(stream, "{}", serde_json::to_string(&response).expect("responses serialize"));
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
        "cancel" => match cluster.cancel(job).await {
            Ok(()) => Response { ok: true, message: "canceled".into(), ..Response::default() },
            Err(error) => Response { message: error.to_string(), ..Response::default() },
        },
        other => Response { message: format!("unknown request `{other}`"), ..Response::default() },
    };
    let _ = pending.reply.send(response);
}

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
            found.push((path, entry));
        }
    }
    found.sort_by(|a, b| a.1.job.cmp(&b.1.job));
    Ok(found)
}

fn call(entry: &Entry, request: &Request) -> Result<Response, ControlError> {
    let unreachable = |message: String| ControlError::Unreachable { job: entry.job.clone(), message };
    let stream = std::net::TcpStream::connect(("127.0.0.1", entry.port)).map_err(|e| unreachable(e.to_string()))?; // real-only
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(|e| unreachable(e.to_string()))?;
    let mut writer = &stream;
    writeln!(writer, "{}", serde_json::to_string(request).expect("requests serialize"))
        .map_err(|e| unreachable(e.to_string()))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).map_err(|e| unreachable(e.to_string()))?;
    serde_json::from_str(&line).map_err(|e| unreachable(format!("malformed answer: {e}")))
}

/// `weir list`: every running job with its status; registry entries of dead jobs are removed.
pub fn list() -> Result<(), ControlError> {
    let mut any = false;
    for (path, entry) in entries()? {
        match call(&entry, &Request { op: "status".into(), dir: None }) {
            Ok(Response { status: Some(status), .. }) => {
                any = true;
                let last = status.completed_checkpoints.last().map_or("none".to_string(), u64::to_string);
                println!(
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
        println!("no running jobs");
    }
    Ok(())
}

/// `weir savepoint`, `weir stop`, `weir cancel`: one request to the job matching `prefix`.
pub fn request(prefix: &str, op: &str, dir: Option<PathBuf>) -> Result<(), ControlError> {
    let matching: Vec<Entry> = entries()?.into_iter().map(|(_, e)| e).filter(|e| e.job.starts_with(prefix)).collect();
    let entry = match matching.len() {
        0 => return Err(ControlError::NoSuchJob(prefix.to_string())),
        1 => &matching[0],
        _ => {
            return Err(ControlError::Ambiguous(
                prefix.to_string(),
                matching.iter().map(|e| e.job.as_str()).collect::<Vec<_>>().join(", "),
            ));
        }
    };
    let dir = dir.map(|d| std::path::absolute(&d).unwrap_or(d).display().to_string());
    let response = call(entry, &Request { op: op.to_string(), dir })?;
    if !response.ok {
        return Err(ControlError::Failed { job: entry.job.clone(), message: response.message });
    }
    match response.path {
        Some(path) => println!("{path}"),
        None => println!("{}", response.message),
    }
    Ok(())
}
