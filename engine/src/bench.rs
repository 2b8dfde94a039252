//! `weir bench`: the benchmark suite (real mode). Measures keyed-sum throughput against a
//! hand-written loop, the cost of checkpointing, and checkpoint duration, size and restore
//! time as state grows; prints tables and writes JSON. It reports; it never fails on a
//! number.
//!
//! Every engine measurement is its own `weir run` process, so that its peak memory is its
//! own; figures are medians over the runs, and each configuration's output is checked
//! against the reference once.
//!
//! Given `--flink-classpath`, the throughput section also runs the same job on Apache Flink
//! (our own `ci/flink/KeyedSum.java`, on a local MiniCluster, one `java` process per run) and
//! compares. Flink's figure is from the job's net runtime, as weir's is from its job time.

use engine::checkpoint::restore;
use engine::config::{JobConfig, StateBackendKind};
use engine::jobs::keyed_sum;
use engine::seam::runtime;
use engine::seam::storage::{LocalStorage, StorageRef};
use engine::state::backend::{KeyedStateBackend, StateKind};
use engine::state::embedded::{EmbeddedKeyedBackend, EmbeddedOptions};
use engine::state::heap::HeapKeyedBackend;
use engine::state::snapshot::{FileScope, FrozenKeyedState, UploadTarget};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant; // real-only: benchmarks measure wall-clock time

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Records per throughput run.
    #[arg(long, default_value_t = 10_000_000)]
    n: u64,
    /// Runs per configuration (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// State sizes (keys) for the checkpoint cost table.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1_000u64, 100_000, 1_000_000, 10_000_000])]
    state_keys: Vec<u64>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench.json")]
    json: PathBuf,
    /// A scratch directory (default: a fresh one in the temp dir).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Also run the job on Apache Flink: a Java classpath holding Flink's jars and the
    /// compiled `KeyedSum` job (ci/flink/KeyedSum.java; `cargo x bench` prepares both).
    #[arg(long)]
    flink_classpath: Option<String>,
    /// JVM options for the Flink runs, separated by spaces.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    flink_java_opts: String,
    /// Run only these sections (`throughput`, `state`, `embedded`); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl BenchArgs {
    fn runs_section(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

/// Apache Flink's RocksDB backend on this job, p = 1, checkpoints every 1 s, as last measured by `cargo x bench`
/// (README): what the embedded rows compare with when Flink does not run in the same bench.
const FLINK_ROCKSDB_LAST_MEASURED: [(u64, f64); 2] = [(1_000, 400_000.0), (1_000_000, 160_000.0)];

/// The embedded backend's settings in the bench: incremental checkpoints, its files under the run's directory.
fn embedded_yaml(dir: &Path) -> String {
    format!("state.backend.incremental: true\nstate.backend.rocksdb.localdir: {}\n", dir.join("local").display())
}

/// The Flink configurations run at p = 1: checkpoint interval and state backend.
const FLINK_CONFIGS: [(&str, &str); 3] = [("off", "hashmap"), ("1 s", "hashmap"), ("1 s", "rocksdb")];

/// The weir configuration each Flink row is compared with, at the same checkpoint interval:
/// `filesystem`, which like Flink's `hashmap` backend with a checkpoint directory keeps state
/// on the heap and writes checkpoints to files.
const WEIR_MATCH: (u32, &str) = (1, "filesystem");

/// Peak resident memory of this process, in KiB (Linux; 0 elsewhere).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status") // real-only: a benchmark figure
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The hand-written limit: one thread, the same records, a hash map.
fn hand_written(n: u64, keys: u64) -> f64 {
    let started = Instant::now();
    let mut totals: FxHashMap<String, (u64, u64)> = FxHashMap::default();
    let mut key = String::new();
    for i in 0..n {
        key.clear();
        let _ = write!(key, "k{}", i % keys);
        match totals.get_mut(key.as_str()) {
            Some((count, sum)) => {
                *count += 1;
                *sum = sum.wrapping_add(i);
            }
            None => {
                totals.insert(key.clone(), (1, i));
            }
        }
    }
    assert_eq!(totals.len() as u64, keys.min(n), "the loop lost keys");
    n as f64 / started.elapsed().as_secs_f64()
}

/// Checks a run's `key,count,sum` lines against the reference model; `run` names the run.
fn verify_output(output: &Path, n: u64, keys: u64, run: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(output).map_err(|e| format!("{}: {e}", output.display()))?; // real-only
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    if lines != keyed_sum::reference(n, keys) {
        return Err(format!("{run} produced wrong totals"));
    }
    Ok(())
}

/// What one Flink run reports.
struct FlinkFigures {
    net_runtime_ms: u64,
    peak_rss_kib: u64,
    version: String,
}

/// Runs the Flink job once in its own JVM; with `verify`, checks its output against the reference.
#[allow(clippy::too_many_arguments)]
fn run_flink(
    classpath: &str,
    java_opts: &str,
    dir: &Path,
    n: u64,
    keys: u64,
    interval: &str,
    backend: &str,
    verify: bool,
) -> Result<FlinkFigures, String> {
    let _ = std::fs::remove_dir_all(dir); // real-only: the benchmark's scratch space
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?; // real-only
    let output = dir.join("out.txt");
    let result = Command::new("java")
        .args(java_opts.split_whitespace())
        .args(["-cp", classpath, "KeyedSum", &n.to_string(), &keys.to_string(), interval, backend])
        .args([output.display().to_string(), dir.join("checkpoints").display().to_string()])
        .output()
        .map_err(|e| format!("cannot run java: {e}"))?;
    if !result.status.success() {
        // Flink wraps the failure; its innermost cause is the telling line.
        let stderr = String::from_utf8_lossy(&result.stderr);
        let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let cause = lines.iter().rev().find(|l| l.starts_with("Caused by:")).or(lines.last()).copied();
        return Err(format!("the Flink job failed ({}): {}", result.status, cause.unwrap_or("no output")));
    }
    let stdout = String::from_utf8_lossy(&result.stdout);
    let line = stdout.lines().find(|l| l.starts_with("flink-keyed-sum ")).ok_or("the Flink job printed no result")?;
    let field = |name: &str| {
        line.split_whitespace().find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')).unwrap_or("").to_string()
    };
    let net_runtime_ms = field("net_runtime_ms").parse().map_err(|_| format!("unreadable Flink result: {line}"))?;
    if verify {
        verify_output(&output, n, keys, &format!("Flink's keyed-sum n={n} keys={keys} {backend}"))?;
    }
    Ok(FlinkFigures {
        net_runtime_ms,
        peak_rss_kib: field("peak_rss_kib").parse().unwrap_or(0),
        version: field("flink_version"),
    })
}

/// The Flink rows of the throughput section: each configuration's median over the runs, and
/// weir's throughput on the matching configuration over Flink's. A failure stops the Flink
/// runs (it is reported in the table and the JSON), not the bench.
fn flink_throughput(
    args: &BenchArgs,
    classpath: &str,
    dir: &Path,
    weir: &BTreeMap<(u64, u32, &str, &str), f64>,
) -> serde_json::Value {
    let mut rows = Vec::new();
    let mut version = String::new();
    println!(
        "\nApache Flink, the same job (local MiniCluster; weir / Flink: weir at p = {}, {} backend, same checkpoints)",
        WEIR_MATCH.0, WEIR_MATCH.1
    );
    println!(
        "{:<8} {:<4} {:<12} {:<11} {:>14} {:>12} {:>12} {:>10}",
        "keys", "p", "checkpoints", "backend", "records/s", "net ms", "weir / Flink", "peak RSS"
    );
    for keys in [1_000u64, 1_000_000] {
        for (interval, backend) in FLINK_CONFIGS {
            let mut throughput = Vec::new();
            let (mut net, mut rss) = (Vec::new(), Vec::new());
            for run in 0..args.runs {
                match run_flink(classpath, &args.flink_java_opts, dir, args.n, keys, interval, backend, run == 0) {
                    Ok(figures) => {
                        throughput.push(args.n as f64 / (figures.net_runtime_ms.max(1) as f64 / 1000.0));
                        net.push(figures.net_runtime_ms as f64);
                        rss.push(figures.peak_rss_kib as f64);
                        version = figures.version;
                    }
                    Err(error) => {
                        println!("Flink comparison stopped: {error}");
                        return serde_json::json!({"version": version, "rows": rows, "error": error});
                    }
                }
            }
            let records_per_second = median(throughput);
            let (net_ms, peak_rss_mib) = (median(net), median(rss) / 1024.0);
            let weir_rate = weir.get(&(keys, WEIR_MATCH.0, interval, WEIR_MATCH.1)).copied();
            let ratio = weir_rate.map(|w| w / records_per_second);
            println!(
                "{keys:<8} {:<4} {interval:<12} {backend:<11} {records_per_second:>14.0} {net_ms:>12.0} {:>12} {:>7.0} MiB",
                1,
                ratio.map_or("-".to_string(), |r| format!("{r:.2}")),
                peak_rss_mib
            );
            rows.push(serde_json::json!({
                "keys": keys, "parallelism": 1, "checkpoints": interval, "backend": backend,
                "records_per_second": records_per_second, "net_runtime_ms": net_ms, "peak_rss_mib": peak_rss_mib,
                "weir_parallelism": WEIR_MATCH.0, "weir_backend": WEIR_MATCH.1,
                "weir_records_per_second": weir_rate, "weir_to_flink": ratio,
            }));
        }
    }
    println!("(Apache Flink {version})");
    serde_json::json!({"version": version, "rows": rows})
}

struct RunFigures {
    job_time_ms: u64,
    peak_rss_kib: u64,
    checkpoints: Vec<(u64, u64)>,
}

#[allow(clippy::too_many_arguments)]
fn run_engine(
    dir: &Path,
    n: u64,
    keys: u64,
    parallelism: u32,
    interval: Option<&str>,
    backend: &str,
    verify: bool,
) -> Result<RunFigures, String> {
    let _ = std::fs::remove_dir_all(dir); // real-only: the benchmark's scratch space
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?; // real-only
    let mut yaml = format!("state.backend: {backend}\nweir.state.jobmanager.max-state-size: 1 gb\n");
    if backend == "rocksdb" {
        yaml.push_str(&embedded_yaml(dir));
    }
    if let Some(interval) = interval {
        let _ = write!(
            yaml,
            "execution.checkpointing.interval: {interval}\nstate.checkpoints.dir: {}\nexecution.checkpointing.externalized-checkpoint-retention: RETAIN_ON_CANCELLATION\nexecution.checkpointing.timeout: 10 min\n",
            dir.join("checkpoints").display()
        );
    }
    let config = dir.join("config.yaml");
    std::fs::write(&config, yaml).map_err(|e| e.to_string())?; // real-only
    let (output, stats) = (dir.join("out.txt"), dir.join("stats.json"));
    let status = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["run", "--job", "keyed-sum", "--output", &output.display().to_string(), "-p", &parallelism.to_string()])
        .args(["--config", &config.display().to_string(), "--stats-json", &stats.display().to_string()])
        .args(["--param", &format!("n={n}"), "--param", &format!("keys={keys}")])
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("a keyed-sum run failed ({status})"));
    }
    if verify {
        verify_output(&output, n, keys, &format!("keyed-sum n={n} keys={keys} p={parallelism}"))?;
    }
    let text = std::fs::read_to_string(&stats); // real-only
    let stats: serde_json::Value =
        serde_json::from_str(&text.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?; // real-only
    let checkpoints = stats["checkpoints"]
        .as_array()
        .map(|a| {
            a.iter().map(|c| (c["duration_ms"].as_u64().unwrap_or(0), c["size_bytes"].as_u64().unwrap_or(0))).collect()
        })
        .unwrap_or_default();
    Ok(RunFigures {
        job_time_ms: stats["job_time_ms"].as_u64().unwrap_or(0),
        peak_rss_kib: stats["peak_rss_kib"].as_u64().unwrap_or(0),
        checkpoints,
    })
}

/// Restores the newest retained checkpoint under `root` into heap backends; returns
/// milliseconds (load, verify, redistribute, decode).
fn restore_time_ms(root: &Path, n: u64, keys: u64, backend: StateBackendKind) -> Result<f64, String> {
    let storage: StorageRef = Arc::new(LocalStorage);
    let newest = std::fs::read_dir(root) // real-only
        .map_err(|e| e.to_string())?
        .flatten()
        .flat_map(|job| std::fs::read_dir(job.path()).into_iter().flatten().flatten()) // real-only
        .filter(|e| e.path().join("_metadata").is_file())
        .max_by_key(|e| e.file_name().to_string_lossy().trim_start_matches("chk-").parse::<u64>().unwrap_or(0))
        .ok_or("no retained checkpoint")?
        .path();
    let params = BTreeMap::from([
        ("n".to_string(), n.to_string()),
        ("keys".to_string(), keys.to_string()),
        ("output".to_string(), "/unused".to_string()),
    ]);
    let config = JobConfig { state_backend: backend, ..JobConfig::default() };
    // Where restored embedded stores keep their files: beside the checkpoints.
    let restore_dir = root.with_file_name("restored");
    let graph =
        engine::jobs::find("keyed-sum").expect("registered").build_graph(&params, config).map_err(|e| e.to_string())?;
    runtime::run(0, async move {
        let started = Instant::now();
        let loaded = restore::load(&storage, &newest).await.map_err(|e| e.to_string())?;
        let plan = restore::plan(&storage, &loaded, &graph.layout(), false, false, &engine::faults::Faults::none())
            .await
            .map_err(|e| e.to_string())?;
        for (vertex, subtasks) in graph.vertices.iter().zip(plan) {
            for (index, snapshot) in subtasks.into_iter().enumerate() {
                let Some(operator) = snapshot.operators.get(&engine::ids::OperatorUid("sum".into())) else { continue };
                let range = engine::keygroup::KeyGroupRange::for_subtask(
                    engine::ids::SubtaskIndex(index as u32),
                    vertex.parallelism,
                    graph.max_parallelism,
                );
                if backend == StateBackendKind::Embedded {
                    let work_dir = restore_dir.join(format!("restore-{index}"));
                    let options =
                        EmbeddedOptions::with_memory_budget(engine::config::DEFAULT_EMBEDDED_MEMORY_BYTES as usize);
                    let mut embedded = EmbeddedKeyedBackend::<String>::restore(
                        storage.clone(),
                        work_dir,
                        range,
                        options,
                        &operator.stores,
                        &operator.keyed,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    embedded.register::<(u64, u64)>("count-and-sum", StateKind::Value).map_err(|e| e.to_string())?;
                    continue;
                }
                let mut heap = HeapKeyedBackend::<String>::new(range, &operator.keyed).map_err(|e| e.to_string())?;
                heap.register::<(u64, u64)>("count-and-sum", StateKind::Value).map_err(|e| e.to_string())?;
            }
        }
        Ok(started.elapsed().as_secs_f64() * 1000.0)
    })
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    let scratch =
        args.scratch.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("weir-bench-{}", std::process::id())));
    let mut report = serde_json::Map::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("weir bench: n = {} records, {} runs per configuration (median), {cores} cores\n", args.n, args.runs);
    let mut flink_rocksdb: BTreeMap<u64, f64> = FLINK_ROCKSDB_LAST_MEASURED.into_iter().collect();
    let mut flink_source = "last measured";
    if args.runs_section("throughput") {
        throughput(&args, &scratch, &mut report, &mut flink_rocksdb, &mut flink_source)?;
    }
    if args.runs_section("state") {
        state_growth(&args, &scratch, &mut report)?;
    }
    if args.runs_section("embedded") {
        embedded(&args, &scratch, &mut report, &flink_rocksdb, flink_source)?;
    }
    let _ = std::fs::remove_dir_all(&scratch); // real-only
    let json = serde_json::to_string_pretty(&serde_json::Value::Object(report)).expect("JSON values serialize");
    let written = std::fs::write(&args.json, json); // real-only
    written.map_err(|e| e.to_string())?; // real-only
    println!("\nJSON: {}", args.json.display());
    Ok(())
}

/// 1 and 2: throughput against the hand-written loop (and against Flink, when given).
fn throughput(
    args: &BenchArgs,
    scratch: &Path,
    report: &mut serde_json::Map<String, serde_json::Value>,
    flink_rocksdb: &mut BTreeMap<u64, f64>,
    flink_source: &mut &'static str,
) -> Result<(), String> {
    // 1 and 2: throughput against the hand-written loop (and against Flink, when given).
    let mut rows = Vec::new();
    let mut weir_rates = BTreeMap::new();
    println!(
        "{:<8} {:<4} {:<12} {:<11} {:>14} {:>12} {:>12} {:>10}",
        "keys", "p", "checkpoints", "backend", "records/s", "vs loop", "vs ckpt off", "peak RSS"
    );
    for keys in [1_000u64, 1_000_000] {
        let limit = median((0..args.runs).map(|_| hand_written(args.n, keys)).collect());
        println!(
            "{keys:<8} {:<4} {:<12} {:<11} {:>14.0} {:>12} {:>12} {:>10}",
            "-", "-", "hand loop", limit, "1.00", "-", "-"
        );
        rows.push(serde_json::json!({"keys": keys, "kind": "hand-written loop", "records_per_second": limit}));
        for parallelism in [1u32, 2] {
            for backend in ["jobmanager", "filesystem"] {
                let mut off = None;
                for interval in [None, Some("1 s"), Some("100 ms")] {
                    let mut throughput = Vec::new();
                    let mut rss = Vec::new();
                    for run in 0..args.runs {
                        let dir = scratch.join("throughput");
                        let figures = run_engine(&dir, args.n, keys, parallelism, interval, backend, run == 0)?;
                        throughput.push(args.n as f64 / (figures.job_time_ms.max(1) as f64 / 1000.0));
                        rss.push(figures.peak_rss_kib as f64);
                    }
                    let records_per_second = median(throughput);
                    let peak_rss_mib = median(rss) / 1024.0;
                    let off_rate = *off.get_or_insert(records_per_second);
                    let label = interval.unwrap_or("off");
                    weir_rates.insert((keys, parallelism, label, backend), records_per_second);
                    println!(
                        "{keys:<8} {parallelism:<4} {label:<12} {backend:<11} {records_per_second:>14.0} {:>12.2} {:>12.2} {:>7.0} MiB",
                        records_per_second / limit,
                        records_per_second / off_rate,
                        peak_rss_mib
                    );
                    rows.push(serde_json::json!({
                        "keys": keys, "parallelism": parallelism, "checkpoints": label, "backend": backend,
                        "records_per_second": records_per_second, "ratio_to_loop": records_per_second / limit,
                        "ratio_to_checkpoints_off": records_per_second / off_rate, "peak_rss_mib": peak_rss_mib,
                    }));
                }
            }
        }
    }
    report.insert("throughput".into(), serde_json::Value::Array(rows));
    if let Some(classpath) = &args.flink_classpath {
        let flink = flink_throughput(args, classpath, &scratch.join("flink"), &weir_rates);
        for row in flink["rows"].as_array().into_iter().flatten() {
            if row["backend"] == "rocksdb"
                && let (Some(keys), Some(rate)) = (row["keys"].as_u64(), row["records_per_second"].as_f64())
            {
                flink_rocksdb.insert(keys, rate);
                *flink_source = "same run";
            }
        }
        report.insert("flink".into(), flink);
    }
    Ok(())
}

/// 3: checkpoint duration and size, and restore time, as state grows.
fn state_growth(
    args: &BenchArgs,
    scratch: &Path,
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    println!(
        "\n{:<10} {:<11} {:>18} {:>16} {:>16}",
        "state keys", "backend", "checkpoint ms", "size MiB", "restore ms"
    );
    let mut rows = Vec::new();
    for &keys in &args.state_keys {
        for (backend, kind) in
            [("jobmanager", StateBackendKind::JobManager), ("filesystem", StateBackendKind::FileSystem)]
        {
            let (mut durations, mut sizes, mut restores) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..args.runs {
                let dir = scratch.join("state");
                // Every key once; a long interval, so the one checkpoint is the final one, holding all of it.
                let figures = run_engine(&dir, keys, keys, 1, Some("1 h"), backend, false)?;
                let (duration, size) = figures.checkpoints.last().copied().ok_or("no checkpoint completed")?;
                durations.push(duration as f64);
                sizes.push(size as f64);
                restores.push(restore_time_ms(&dir.join("checkpoints"), keys, keys, kind)?);
            }
            let (duration, size, restore) = (median(durations), median(sizes), median(restores));
            println!("{keys:<10} {backend:<11} {duration:>18.0} {:>16.1} {restore:>16.0}", size / (1 << 20) as f64);
            rows.push(serde_json::json!({"keys": keys, "backend": backend, "checkpoint_ms": duration, "size_bytes": size, "restore_ms": restore}));
        }
    }
    report.insert("state".into(), serde_json::Value::Array(rows));
    Ok(())
}

/// 4: the embedded backend (weir's own store in RocksDB's role): throughput beside Flink's RocksDB, state larger
/// than memory, incremental checkpoint size, and checkpoint and restore time as state grows.
fn embedded(
    args: &BenchArgs,
    scratch: &Path,
    report: &mut serde_json::Map<String, serde_json::Value>,
    flink_rocksdb: &BTreeMap<u64, f64>,
    flink_source: &str,
) -> Result<(), String> {
    let mut section = serde_json::Map::new();
    println!("\nEmbedded backend (state.backend: rocksdb, incremental), p = 1, checkpoints every 1 s");
    println!("{:<10} {:>12} {:>14} {:>14} {:>10}", "keys", "records", "records/s", "vs Flink RocksDB", "peak RSS");
    let mut rows = Vec::new();
    // Beside the two throughput rows, state larger than memory: as many keys as the largest state size, each once.
    let largest = args.state_keys.iter().copied().max().unwrap_or(10_000_000);
    for (keys, n) in [(1_000u64, args.n), (1_000_000, args.n), (largest, largest)] {
        let (mut throughput, mut rss) = (Vec::new(), Vec::new());
        for run in 0..args.runs {
            let figures = run_engine(&scratch.join("embedded"), n, keys, 1, Some("1 s"), "rocksdb", run == 0)?;
            throughput.push(n as f64 / (figures.job_time_ms.max(1) as f64 / 1000.0));
            rss.push(figures.peak_rss_kib as f64);
        }
        let (records_per_second, peak_rss_mib) = (median(throughput), median(rss) / 1024.0);
        let flink = flink_rocksdb.get(&keys).copied();
        let ratio = flink.map(|f| records_per_second / f);
        println!(
            "{keys:<10} {n:>12} {records_per_second:>14.0} {:>14} {peak_rss_mib:>7.0} MiB",
            ratio.map_or("-".to_string(), |r| format!("{r:.1}x ({flink_source})"))
        );
        rows.push(serde_json::json!({
            "keys": keys, "records": n, "records_per_second": records_per_second, "peak_rss_mib": peak_rss_mib,
            "flink_rocksdb_records_per_second": flink, "flink_source": flink_source, "weir_to_flink": ratio,
        }));
    }
    section.insert("throughput".into(), serde_json::Value::Array(rows));

    let changed_keys = largest.min(1_000_000);
    let (full, incremental) = incremental_size(&scratch.join("incremental"), changed_keys, 100)?;
    println!(
        "\nincremental checkpoint, 1% of {changed_keys} keys changed: {:.2} MiB uploaded of a full {:.2} MiB ({:.1}%)",
        incremental as f64 / (1 << 20) as f64,
        full as f64 / (1 << 20) as f64,
        100.0 * incremental as f64 / full as f64
    );
    section.insert(
        "incremental".into(),
        serde_json::json!({"keys": changed_keys, "changed_percent": 1, "full_bytes": full, "incremental_bytes": incremental}),
    );

    println!("\n{:<10} {:>16} {:>12} {:>14}", "state keys", "checkpoint ms", "size MiB", "restore ms");
    let mut rows = Vec::new();
    for keys in args.state_keys.iter().copied().filter(|&keys| keys >= 100_000) {
        let (mut durations, mut sizes, mut restores) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let dir = scratch.join("embedded-state");
            let figures = run_engine(&dir, keys, keys, 1, Some("1 h"), "rocksdb", false)?;
            let (duration, size) = figures.checkpoints.last().copied().ok_or("no checkpoint completed")?;
            durations.push(duration as f64);
            sizes.push(size as f64);
            restores.push(restore_time_ms(&dir.join("checkpoints"), keys, keys, StateBackendKind::Embedded)?);
        }
        let (duration, size, restore) = (median(durations), median(sizes), median(restores));
        println!("{keys:<10} {duration:>16.0} {:>12.1} {restore:>14.0}", size / (1 << 20) as f64);
        rows.push(
            serde_json::json!({"keys": keys, "checkpoint_ms": duration, "size_bytes": size, "restore_ms": restore}),
        );
    }
    section.insert("state".into(), serde_json::Value::Array(rows));
    report.insert("embedded".into(), serde_json::Value::Object(section));
    Ok(())
}

/// Puts `keys` keys into an embedded store, takes an incremental checkpoint, changes one key in `every`, and takes
/// the next: the bytes of the second checkpoint as a whole (a full one) and of the files it uploaded.
fn incremental_size(dir: &Path, keys: u64, every: u64) -> Result<(u64, u64), String> {
    let _ = std::fs::remove_dir_all(dir); // real-only: the benchmark's scratch space
    std::fs::create_dir_all(dir.join("chk-1")).map_err(|e| e.to_string())?; // real-only
    std::fs::create_dir_all(dir.join("chk-2")).map_err(|e| e.to_string())?; // real-only
    let storage: StorageRef = Arc::new(LocalStorage);
    let dir = dir.to_path_buf();
    runtime::run(0, async move {
        let range = engine::keygroup::KeyGroupRange { start: 0, end: 128 };
        let options = EmbeddedOptions::with_memory_budget(engine::config::DEFAULT_EMBEDDED_MEMORY_BYTES as usize);
        let mut backend = EmbeddedKeyedBackend::<String>::open(storage.clone(), dir.join("local"), range, options, &[])
            .map_err(|e| e.to_string())?;
        let state = backend.register::<(u64, u64)>("count-and-sum", StateKind::Value).map_err(|e| e.to_string())?;
        let put = |backend: &mut EmbeddedKeyedBackend<String>, i: u64, value: u64| {
            let key = format!("k{i}");
            let group = engine::keygroup::key_group_for_key(&key, 128);
            backend.put(state, group, &key, (1u64, value)).map_err(|e| e.to_string())
        };
        for i in 0..keys {
            put(&mut backend, i, i)?;
            if i % 1024 == 0 && backend.needs_maintenance() {
                backend.maintain().await.map_err(|e| e.to_string())?;
            }
        }
        backend.settle().await.map_err(|e| e.to_string())?;
        let checkpoint = async |backend: &mut EmbeddedKeyedBackend<String>, id: u64| {
            let FrozenKeyedState::Store(frozen) = backend.freeze().map_err(|e| e.to_string())? else {
                return Err("the embedded backend freezes its store".to_string());
            };
            let checkpoint = engine::ids::CheckpointId(id);
            let target = UploadTarget {
                storage: storage.clone(),
                dir: dir.join(format!("chk-{id}")),
                checkpoint,
                incremental: true,
            };
            let snapshot = frozen.upload(&target).await.map_err(|e| e.to_string())?;
            backend.notify_checkpoint_complete(checkpoint);
            // As an operator does after its next batch: the store adopts the snapshot's flush.
            backend.settle().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(snapshot)
        };
        checkpoint(&mut backend, 1).await?;
        for i in (0..keys).step_by(every as usize) {
            put(&mut backend, i, i + 1)?;
        }
        let second = checkpoint(&mut backend, 2).await?;
        let full: u64 = second.files.iter().map(|f| f.size_bytes).sum();
        let uploaded: u64 = second
            .files
            .iter()
            .filter(|f| f.uploaded_by == engine::ids::CheckpointId(2) && f.scope == FileScope::Shared)
            .map(|f| f.size_bytes)
            .sum();
        Ok((full, uploaded))
    })
}
