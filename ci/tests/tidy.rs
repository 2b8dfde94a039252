//! Source rules that keep simulated runs a function of their seed, checked over the tree.
//!
//! A simulation is reproducible only if nothing outside the seed reaches scheduling, time or
//! output. These rules catch the ways that has been broken before, or would be easily:
//!
//! - an unbiased `select!`: tokio picks its first branch from a thread-local generator that
//!   outlives a simulation, so a seed's schedule depended on what the thread ran before it;
//! - `tokio::sync::watch`, which shards its waiters by the same generator;
//! - std's `HashMap`/`HashSet`, whose iteration order is seeded per process and thread;
//! - in the engine library outside the runtime and storage seams, and in the example crates
//!   under `sim/examples/`, the system clock, threads, files and unseeded randomness (a line
//!   marked `// real-only` is real mode only, by construction, and says so).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The code of a line, without a trailing `//` comment (a crude cut: good enough for the
/// tokens checked here, which never sit inside string literals in this tree).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// Source directories whose code can run under simulation.
fn simulated_dirs() -> Vec<PathBuf> {
    ["engine/src", "sim/src", "sim/tests", "sim/examples"]
        .iter()
        .map(|d| root().join(d))
        .filter(|d| d.exists())
        .collect()
}

#[test]
fn every_select_is_biased() {
    let mut unbiased = Vec::new();
    for file in simulated_dirs().iter().flat_map(|d| rust_files(d)) {
        let text = std::fs::read_to_string(&file).expect("a source file");
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            if !code(line).contains("select! {") {
                continue;
            }
            let next = lines[index + 1..].iter().map(|l| code(l).trim()).find(|l| !l.is_empty());
            if next != Some("biased;") {
                unbiased.push(format!("{}:{}", file.display(), index + 1));
            }
        }
    }
    assert!(
        unbiased.is_empty(),
        "`select!` without `biased;` (its branch order would come from a generator that survives simulations):\n  {}",
        unbiased.join("\n  ")
    );
}

#[test]
fn no_std_hash_collections_or_watch_channels_where_code_is_simulated() {
    let mut found = Vec::new();
    for file in simulated_dirs().iter().flat_map(|d| rust_files(d)) {
        let text = std::fs::read_to_string(&file).expect("a source file");
        for (index, line) in text.lines().enumerate() {
            let code = code(line);
            // Naming std's maps needs an import or a full path; `FxHashMap` and friends
            // hash with a fixed function, so their order follows from the seed's history.
            let imports = code.contains("std::collections") || code.contains("hash_map::");
            let std_hash = imports && (code.contains("HashMap") || code.contains("HashSet"));
            if std_hash || code.contains("sync::watch") {
                found.push(format!("{}:{}: {}", file.display(), index + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "seeded-per-process collections or watch channels:\n  {}", found.join("\n  "));
}

/// What code run under simulation must reach only through the engine's seams.
const PAST_THE_SEAMS: &[&str] = &[
    "std::time::Instant",
    "std::time::SystemTime",
    "Instant::now",
    "SystemTime::now",
    "std::thread",
    "std::fs",
    "rand::random",
    "rand::rng",
    "thread_rng",
];

/// Lines of the `.rs` files under `dir` (but those `skip` names) that use one of [`PAST_THE_SEAMS`] without a
/// `// real-only` mark.
fn past_the_seams(dir: &Path, skip: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for file in rust_files(dir) {
        if skip(file.strip_prefix(dir).expect("under its directory")) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a source file");
        for (index, line) in text.lines().enumerate() {
            if line.contains("// real-only") {
                continue;
            }
            if let Some(token) = PAST_THE_SEAMS.iter().find(|token| code(line).contains(*token)) {
                found.push(format!("{}:{}: `{token}`", file.display(), index + 1));
            }
        }
    }
    found
}

#[test]
fn the_engine_library_reaches_clocks_threads_files_and_randomness_only_through_its_seams() {
    // The `weir` binary's own modules run only for real; the seams are where the two worlds meet.
    let binary_only = ["main.rs", "control.rs", "bench.rs"];
    let found = past_the_seams(&root().join("engine/src"), |relative| {
        relative.starts_with("seam") || binary_only.iter().any(|b| relative == Path::new(b))
    });
    assert!(found.is_empty(), "engine code past the runtime and storage seams:\n  {}", found.join("\n  "));
}

#[test]
fn example_crates_reach_clocks_threads_files_and_randomness_only_through_the_engines_seams() {
    // A user's job, sink and workload run under simulation as the engine does.
    let examples = root().join("sim/examples");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&examples).unwrap_or_else(|e| panic!("{}: {e}", examples.display())) {
        let src = entry.expect("a directory entry").path().join("src");
        if src.is_dir() {
            found.extend(past_the_seams(&src, |_| false));
        }
    }
    assert!(found.is_empty(), "example code past the engine's seams:\n  {}", found.join("\n  "));
}

/// The engine's modules by layer, lowest first: a module imports only from its own layer or below, so the
/// arrows point down and lower layers take plain data (restore takes a `JobLayout`, not the job graph).
const LAYERS: &[&[&str]] = &[
    &["ids", "element", "keygroup", "seam", "config", "faults", "logging"],
    &["state"],
    &["error"],
    &["checkpoint"],
    &["operators"],
    &["task"],
    &["api"],
    &["connectors", "cluster"],
    &["jobs"],
    &["local", "inspect"],
    &["lib", "main", "control", "bench"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn engine_modules_import_only_from_their_layer_or_below() {
    let engine = root().join("engine/src");
    let mut upward = Vec::new();
    for file in rust_files(&engine) {
        let relative = file.strip_prefix(&engine).expect("under engine/src");
        let first = relative.components().next().expect("a path").as_os_str().to_string_lossy().into_owned();
        let module = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        let own = layer_of(&module).unwrap_or_else(|| panic!("engine/src/{first} is in no layer: add it to LAYERS"));
        let text = std::fs::read_to_string(&file).expect("a source file");
        for (index, line) in text.lines().enumerate() {
            let code = code(line);
            let mut rest = code;
            while let Some(at) = rest.find("crate::") {
                let name: String =
                    rest[at + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[at + 7..];
                if let Some(layer) = layer_of(&name)
                    && layer > own
                {
                    upward.push(format!("{}:{}: `{module}` imports `{name}`", file.display(), index + 1));
                }
            }
        }
    }
    assert!(upward.is_empty(), "imports that point up the layers:\n  {}", upward.join("\n  "));
}
