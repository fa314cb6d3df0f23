//! Embeds the database migrations into the binary, in the order they must run:
//! sqlxmq's own (read from the sqlxmq package that this build compiles against, found
//! with `cargo metadata`, so that no copy of them lives in this repository), then ours
//! from `migrations/`. Versions are timestamps; sqlxmq's all predate ours.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let own_dir = manifest_dir.join("migrations");
    let sqlxmq_dir = sqlxmq_package_dir(&manifest_dir).join("migrations");

    let mut migrations = Vec::new();
    collect(&sqlxmq_dir, "sqlxmq", ".up.sql", &mut migrations);
    collect(&own_dir, "app", ".sql", &mut migrations);
    migrations.sort_by_key(|m| m.version);
    for pair in migrations.windows(2) {
        assert!(
            pair[0].version != pair[1].version,
            "two migrations share version {}",
            pair[0].version
        );
    }

    let mut out = String::from("&[\n");
    for m in &migrations {
        writeln!(
            out,
            "    EmbeddedMigration {{ version: {}, description: {:?}, origin: {:?}, sql: include_str!({:?}) }},",
            m.version, m.description, m.origin, m.path
        )
        .expect("writing to a String");
    }
    out.push(']');
    let out_file = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("migrations.rs");
    fs::write(&out_file, out).expect("write migrations.rs");

    println!("cargo:rerun-if-changed={}", own_dir.display());
    println!("cargo:rerun-if-changed=Cargo.lock");
}

struct Found {
    version: i64,
    description: String,
    origin: &'static str,
    path: PathBuf,
}

/// Collects `<version>_<description><suffix>` files from `dir`.
fn collect(dir: &Path, origin: &'static str, suffix: &str, into: &mut Vec<Found>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        // sqlxmq's reversible migrations also have .down.sql files; only the ups run.
        let Some(stem) = name.strip_suffix(suffix) else {
            continue;
        };
        if stem.ends_with(".down") {
            continue;
        }
        let (version, description) = stem
            .split_once('_')
            .unwrap_or_else(|| panic!("migration {name} is not named <version>_<description>"));
        into.push(Found {
            version: version
                .parse()
                .unwrap_or_else(|_| panic!("migration {name} has no numeric version")),
            description: description.replace(['_', '-'], " "),
            origin,
            path: path.canonicalize().expect("canonical path"),
        });
    }
}

/// The directory of the sqlxmq package in the resolved dependency graph.
fn sqlxmq_package_dir(manifest_dir: &Path) -> PathBuf {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target = env::var("TARGET").expect("set by cargo");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--offline",
            "--format-version",
            "1",
            "--filter-platform",
            &target,
        ])
        .arg("--manifest-path")
        .arg(manifest_dir.join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let manifest_path = metadata["packages"]
        .as_array()
        .expect("packages array")
        .iter()
        .find(|p| p["name"] == "sqlxmq")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("sqlxmq is a dependency");
    Path::new(manifest_path)
        .parent()
        .expect("manifest has a parent directory")
        .to_path_buf()
}
