//! Prepares the Apache Flink comparison for `cargo x bench`: fetches Flink's jars (the PyPI
//! package apache-flink-libraries, which bundles a Flink distribution's `lib/`), compiles our
//! own job `ci/flink/KeyedSum.java` against them, and hands `weir bench` the arguments that
//! run it. Everything lands under `target/flink/`, fetched at bench time only. Nothing here
//! fails the bench: when Java, pip or the download is missing, it says why and the bench
//! runs without Flink.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Flink release compared against.
const VERSION: &str = "2.3.0";

/// JVM flags: those that Flink's own start scripts pass on Java 17 and later (`env.java.opts.all`
/// in the distribution's config.yaml, less the compiler exports only the Table planner needs),
/// so Flink runs as it would deployed; and logging of warnings and errors only.
const JAVA_OPTS: &[&str] = &[
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.text=ALL-UNNAMED",
    "--add-opens=java.base/java.time=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED",
    "-Dlog4j2.level=WARN",
];

/// The `weir bench` arguments that add the Flink comparison, or none (after saying why).
pub fn bench_args() -> Vec<String> {
    match prepare() {
        Ok(classpath) => {
            eprintln!("==> Flink {VERSION} ready for the comparison");
            vec!["--flink-classpath".into(), classpath, format!("--flink-java-opts={}", JAVA_OPTS.join(" "))]
        }
        Err(why) => {
            eprintln!("==> skipping the Apache Flink comparison: {why}");
            Vec::new()
        }
    }
}

/// Fetches and unpacks Flink's jars once, compiles the job; returns the Java classpath.
fn prepare() -> Result<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("no workspace root")?;
    let dir = root.join("target").join("flink");
    let lib = dir.join(format!("flink-{VERSION}")).join("lib");
    for tool in ["java", "javac"] {
        run(Command::new(tool).arg("-version")).map_err(|e| format!("{tool} is not usable ({e})"))?;
    }
    if !lib.join(format!("flink-dist-{VERSION}.jar")).is_file() {
        fetch(&dir, &lib)?;
    }
    let mut jars: Vec<PathBuf> = std::fs::read_dir(&lib)
        .map_err(|e| format!("cannot list {}: {e}", lib.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.ends_with(".jar") && (name.starts_with("flink-dist-") || name.starts_with("log4j-"))
        })
        .collect();
    jars.sort();
    let classes = dir.join("classes");
    let _ = std::fs::remove_dir_all(&classes);
    let source = root.join("ci").join("flink").join("KeyedSum.java");
    let jar_path = join_paths(&jars)?;
    eprintln!("==> javac {}", source.display());
    run(Command::new("javac").arg("-nowarn").arg("-d").arg(&classes).arg("-cp").arg(&jar_path).arg(&source))
        .map_err(|e| format!("compiling KeyedSum.java failed ({e})"))?;
    join_paths(&[vec![classes], jars].concat())
}

/// Downloads apache-flink-libraries with pip and unpacks its `deps/lib/` into `lib`.
fn fetch(dir: &Path, lib: &Path) -> Result<(), String> {
    let download = dir.join("download");
    std::fs::create_dir_all(&download).map_err(|e| format!("cannot create {}: {e}", download.display()))?;
    let package = format!("apache-flink-libraries=={VERSION}");
    eprintln!("==> python3 -m pip download {package} (about 330 MB, once)");
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", &package, "--dest"])
        .arg(&download))
    .map_err(|e| format!("pip could not download {package} ({e})"))?;
    let archive = download.join(format!("apache_flink_libraries-{VERSION}.tar.gz"));
    if !archive.is_file() {
        return Err(format!("pip did not leave {}", archive.display()));
    }
    // Unpack into a fresh directory and rename it into place, so a half-unpacked one is never taken for done.
    let partial = lib.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    eprintln!("==> unpacking Flink's lib/");
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&partial)
        .arg("--strip-components=3")
        .arg(format!("apache_flink_libraries-{VERSION}/deps/lib")))
    .map_err(|e| format!("cannot unpack {} ({e})", archive.display()))?;
    std::fs::rename(&partial, lib).map_err(|e| format!("cannot move {} into place: {e}", partial.display()))?;
    let _ = std::fs::remove_dir_all(&download);
    Ok(())
}

/// Runs a command with its output captured; the error carries its exit status and last stderr line.
fn run(command: &mut Command) -> Result<(), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.output().map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("").trim();
    Err(format!("{}: {last}", output.status))
}

fn join_paths(paths: &[PathBuf]) -> Result<String, String> {
    let joined = std::env::join_paths(paths).map_err(|e| format!("cannot build the classpath: {e}"))?;
    joined.into_string().map_err(|_| "the classpath is not UTF-8".to_string())
}
