//! The timeline of a real failing seed: `weir-sim replay --timeline` writes it; its drawing is well-formed, marks
//! every fault the run injected, highlights the violation and the first divergence; and, where Debian's chromium
//! is installed, a headless browser loads it without a script error. Compiled only under simulation, where a
//! seed is a run.

#![cfg(madsim)]

use sim::divergence::{DivergenceKind, FirstDivergence};
use sim::runner::{self, RunOptions};
use sim::workload::Registry;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CANARY: &str = "../scenarios/negative/eager-commit-canary.toml";
const SEED: u64 = 1;
const CHROMIUM: &str = "/usr/bin/chromium";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-sim-timeline-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The canary's seed and its timeline, with what `replay`, run from the crate's directory, says of it.
fn canary_page() -> (sim::runner::RunReport, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CANARY);
    let scenario = sim::scenario::load_with(&path, &Registry::standard()).unwrap();
    let fault_free = sim::suite::fault_free_output(&scenario).unwrap();
    let report = runner::run(&scenario, SEED, RunOptions { faults: true, trace: true }, Some(&fault_free));
    let replay = format!("cargo x sim replay {CANARY} --seed {SEED}");
    let canary = Some("exactly_once_output".to_string());
    let about = sim::timeline::About { scenario_path: CANARY, passed: true, canary, replay };
    let page = sim::timeline::html(&report, &about);
    (report, page)
}

fn svg_of(page: &str) -> &str {
    let start = page.find("<svg xmlns").expect("an inline SVG");
    &page[start..page[start..].find("</svg>").expect("a closed SVG") + start + "</svg>".len()]
}

#[test]
fn the_timeline_of_a_failing_seed_shows_its_faults_the_checkpoint_they_hit_and_the_violation() {
    let (report, page) = canary_page();
    assert!(!report.violations.is_empty(), "the canary's seed {SEED} must fail");
    let document = roxmltree::Document::parse(svg_of(&page)).expect("well-formed SVG");
    let class_of = |n: &roxmltree::Node| n.attribute("class").unwrap_or("").to_string();
    let marked: Vec<usize> = document
        .descendants()
        .filter(|n| class_of(n) == "mark k-fault")
        .map(|n| n.attribute("data-i").unwrap().parse().unwrap())
        .collect();
    let faults: Vec<usize> =
        report.events.iter().enumerate().filter(|(_, e)| e.message.starts_with("fault: ")).map(|(i, _)| i).collect();
    assert!(faults.len() >= 2, "the canary slows storage and crashes it: {faults:?}");
    assert_eq!(marked, faults, "every fault has its marker");
    // The storage crash fires while checkpoint 3's metadata is written: that checkpoint is drawn aborted.
    let aborted: Vec<String> = document
        .descendants()
        .filter(|n| class_of(n) == "span checkpoint aborted")
        .map(|n| n.attribute("data-i").unwrap().to_string())
        .collect();
    let trigger_of_3 = report
        .events
        .iter()
        .position(|e| e.message == "checkpoint triggered" && e.field("checkpoint") == Some("3"))
        .unwrap();
    assert!(aborted.contains(&trigger_of_3.to_string()), "checkpoint 3 is not drawn aborted: {aborted:?}");
    let texts: Vec<&str> = document.descendants().filter_map(|n| n.text()).collect();
    assert!(texts.iter().any(|t| t.starts_with("✗ exactly_once_output violated")), "{texts:?}");
    let Some(FirstDivergence::Found(divergence)) = &report.first_divergence else {
        panic!("the canary's duplicates have a first divergence: {:?}", report.first_divergence)
    };
    assert_eq!(divergence.kind, DivergenceKind::Duplicate);
    let ring = document.descendants().find(|n| class_of(n) == "ring divergence").expect("the divergence's ring");
    assert_eq!(ring.attribute("data-i"), Some(divergence.event.to_string().as_str()));
}

#[test]
fn replay_writes_the_timeline_page() {
    let dir = scratch("replay");
    let page = dir.join("run.html");
    let out = Command::new(env!("CARGO_BIN_EXE_weir-sim"))
        .args(["replay", CANARY, "--seed", &SEED.to_string(), "--timeline", page.to_str().unwrap()])
        .args(["--trace", dir.join("trace").to_str().unwrap()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("first divergence: duplicate: at "), "{stdout}");
    assert!(stdout.contains(&format!("timeline: {}", page.display())), "{stdout}");
    let written = std::fs::read_to_string(&page).unwrap();
    assert!(written == canary_page().1, "the page is not a function of the seed and the scenario");
}

/// Runs `command` for at most `limit`, its output going to files in `dir` (a pipe would fill and stall it): its
/// exit status and standard output, or `None` if it did not finish.
fn run_for(mut command: Command, dir: &Path, limit: Duration) -> Option<(std::process::ExitStatus, String)> {
    let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
    command.stdout(std::fs::File::create(&stdout).ok()?).stderr(std::fs::File::create(&stderr).ok()?);
    let mut child = command.spawn().ok()?;
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().ok()? {
            return Some((status, std::fs::read_to_string(&stdout).ok()?));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_headless_browser_loads_the_timeline_without_a_script_error() {
    if !Path::new(CHROMIUM).exists() {
        println!("skipped: no {CHROMIUM} (Debian's `chromium` package) to load the page in");
        return;
    }
    let dir = scratch("browser");
    let page = dir.join("run.html");
    std::fs::write(&page, canary_page().1).unwrap();
    let mut command = Command::new(CHROMIUM);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        &format!("--user-data-dir={}", dir.join("profile").display()),
        "--virtual-time-budget=5000",
        "--dump-dom",
        &format!("file://{}", page.display()),
    ]);
    let (status, dom) = run_for(command, &dir, Duration::from_secs(120)).expect("chromium finishes within two minutes");
    assert!(status.success(), "chromium failed: {}", std::fs::read_to_string(dir.join("stderr")).unwrap_or_default());
    // The script names the attribute it sets on an error; the attribute itself, with its value, must be absent.
    let error = dom.find("data-script-error=\"").map(|at| &dom[at..dom.len().min(at + 300)]);
    assert!(error.is_none(), "the page's script failed: {error:?}");
    assert!(
        dom.contains("data-timeline=\"ready\""),
        "the page's script did not finish: {}",
        &dom[..dom.len().min(300)]
    );
}
