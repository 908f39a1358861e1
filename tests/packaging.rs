//! Packaging inputs that can be checked without building a package, plus the full build-and-inspect
//! (`packaging/check-deb.sh`) as an ignored test: `cargo test --test packaging -- --ignored`.

#[path = "common/peers.rs"]
mod peers;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

const SCRIPTS: &[&str] = &[
    "packaging/build.sh",
    "packaging/check-deb.sh",
    "packaging/debian/postinst",
    "packaging/debian/prerm",
    "packaging/debian/postrm",
    "packaging/rpm/preinstall.sh",
    "packaging/rpm/postinstall.sh",
    "packaging/rpm/preuninstall.sh",
    "packaging/rpm/postuninstall.sh",
];

#[test]
fn maintainer_scripts_are_valid_shell() {
    for s in SCRIPTS {
        let out = Command::new("sh")
            .arg("-n")
            .arg(root().join(s))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{s}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn debian_scripts_carry_the_debhelper_token_cargo_deb_needs() {
    // cargo-deb inserts its generated steps (user creation, unit registration) at this token.
    for s in ["postinst", "prerm", "postrm"] {
        assert!(
            read(&format!("packaging/debian/{s}")).contains("#DEBHELPER#"),
            "{s}"
        );
    }
}

#[test]
fn rpm_pre_install_creates_the_same_user_as_sysusers_d() {
    let sysusers = read("systemd/codacy-audit-forwarder.sysusers");
    let line = sysusers.lines().find(|l| l.starts_with("u ")).unwrap();
    assert!(
        read("packaging/rpm/preinstall.sh")
            .lines()
            .any(|l| l == line),
        "packaging/rpm/preinstall.sh must contain exactly: {line}"
    );
}

#[test]
fn no_script_starts_or_enables_the_service_on_install() {
    // It needs an API token first; the admin enables it. Upgrades may try-restart a running one.
    for s in ["packaging/debian/postinst", "packaging/rpm/postinstall.sh"] {
        let text = read(s);
        let commands: Vec<&str> = text
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with("systemctl") || l.starts_with("deb-systemd-invoke"))
            .collect();
        for c in commands {
            let words: Vec<&str> = c.split_whitespace().collect();
            for bad in ["start", "restart", "enable", "reenable"] {
                assert!(!words.contains(&bad), "{s}: {c}");
            }
        }
    }
}

#[test]
fn every_packaged_source_file_exists() {
    let manifest: toml_lite::Manifest = toml_lite::parse(&read("Cargo.toml"));
    assert!(!manifest.sources.is_empty());
    for src in manifest.sources {
        if src.starts_with("target/") {
            continue; // built
        }
        if src.contains('*') {
            // A glob: its fixed part must be a folder with files in it.
            let base: PathBuf = Path::new(&src)
                .components()
                .take_while(|c| !c.as_os_str().to_string_lossy().contains('*'))
                .collect();
            let files = std::fs::read_dir(root().join(&base))
                .map(|d| d.count())
                .unwrap_or(0);
            assert!(
                files > 0,
                "{src} is packaged but {} is empty or missing",
                base.display()
            );
        } else {
            assert!(
                Path::new(&root().join(&src)).exists(),
                "{src} is packaged but missing"
            );
        }
    }
    for script in manifest.scripts {
        assert!(root().join(&script).exists(), "{script} missing");
    }
}

#[test]
fn siem_content_is_packaged_in_both_the_deb_and_the_rpm() {
    // README "SIEM content" tells admins to look in /usr/share/codacy-audit-forwarder/<siem>.
    let manifest = read("Cargo.toml");
    let (deb, rpm) = manifest
        .split_once("[package.metadata.generate-rpm]")
        .unwrap();
    for (source, dest) in [
        (
            "packaging/splunk/TA-codacy-audit/",
            "usr/share/codacy-audit-forwarder/splunk/",
        ),
        (
            "packaging/elastic/",
            "usr/share/codacy-audit-forwarder/elastic/",
        ),
        ("detections/", "usr/share/codacy-audit-forwarder/sigma/"),
        (
            "packaging/grafana/",
            "usr/share/codacy-audit-forwarder/grafana/",
        ),
        (
            "packaging/prometheus/",
            "usr/share/codacy-audit-forwarder/prometheus/",
        ),
    ] {
        for (name, section, dest) in [
            ("deb", deb, dest.to_string()),
            ("rpm", rpm, format!("/{dest}")),
        ] {
            assert!(
                section
                    .lines()
                    .any(|l| l.contains(&format!("\"{source}")) && l.contains(&format!("\"{dest}"))),
                "the {name} does not install {source} under {dest}"
            );
        }
    }
}

/// Just enough TOML reading for asset sources, without a TOML dependency in dev-dependencies:
/// `source = "..."` (rpm tables), `["src", ...]` (deb arrays) and `*_script = "..."`.
mod toml_lite {
    pub struct Manifest {
        pub sources: Vec<String>,
        pub scripts: Vec<String>,
    }

    pub fn parse(text: &str) -> Manifest {
        let mut sources = Vec::new();
        let mut scripts = Vec::new();
        let mut in_meta = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') && !line.starts_with("[\"") {
                in_meta = line.starts_with("[package.metadata.");
                continue;
            }
            if !in_meta || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.split("source = \"").nth(1) {
                sources.push(rest.split('"').next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("[\"") {
                sources.push(rest.split('"').next().unwrap().to_string());
            } else if line.contains("_script = \"") {
                scripts.push(line.split('"').nth(1).unwrap().to_string());
            }
        }
        Manifest { sources, scripts }
    }
}

/// Builds the release binary and both packages, then inspects them (a few minutes).
#[test]
#[ignore = "slow: builds release packages; CI runs packaging/check-deb.sh"]
fn built_packages_pass_check_deb() {
    if peers::require(peers::Peer::DpkgDeb).is_none() {
        return;
    }
    let status = Command::new(root().join("packaging/check-deb.sh"))
        .status()
        .unwrap();
    assert!(status.success(), "packaging/check-deb.sh failed");
}
