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
    "packaging/completions.sh",
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

#[test]
fn completions_and_the_man_page_are_installed_by_both_packages() {
    let manifest = read("Cargo.toml");
    let (deb, rpm) = manifest
        .split_once("[package.metadata.generate-rpm]")
        .unwrap();
    for (source, deb_dest, rpm_dest) in [
        (
            "packaging/completions/codacy-audit-forwarder.bash",
            "usr/share/bash-completion/completions/codacy-audit-forwarder",
            "/usr/share/bash-completion/completions/codacy-audit-forwarder",
        ),
        (
            "packaging/completions/_codacy-audit-forwarder",
            "usr/share/zsh/vendor-completions/_codacy-audit-forwarder",
            "/usr/share/zsh/site-functions/_codacy-audit-forwarder",
        ),
        (
            "packaging/completions/codacy-audit-forwarder.fish",
            "usr/share/fish/vendor_completions.d/codacy-audit-forwarder.fish",
            "/usr/share/fish/vendor_completions.d/codacy-audit-forwarder.fish",
        ),
        (
            "packaging/man/*.1",
            "usr/share/man/man1/",
            "/usr/share/man/man1/",
        ),
    ] {
        for (name, section, dest) in [("deb", deb, deb_dest), ("rpm", rpm, rpm_dest)] {
            assert!(
                section
                    .lines()
                    .any(|l| l.contains(&format!("\"{source}\""))
                        && l.contains(&format!("\"{dest}\""))),
                "the {name} does not install {source} as {dest}"
            );
        }
    }
}

#[test]
fn packaged_completions_and_man_page_match_the_cli() {
    let bin = env!("CARGO_BIN_EXE_codacy-audit-forwarder");
    for (args, file) in [
        (
            &["completions", "bash"][..],
            "packaging/completions/codacy-audit-forwarder.bash",
        ),
        (
            &["completions", "zsh"][..],
            "packaging/completions/_codacy-audit-forwarder",
        ),
        (
            &["completions", "fish"][..],
            "packaging/completions/codacy-audit-forwarder.fish",
        ),
        (&["man"][..], "packaging/man/codacy-audit-forwarder.1"),
    ] {
        let out = Command::new(bin).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout) == read(file),
            "{file} is stale: run packaging/completions.sh"
        );
    }
    // One page per command: the same set, the same text.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let pages = |d: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".1"))
            .collect();
        names.sort();
        names
    };
    let shipped = root().join("packaging/man");
    assert_eq!(
        pages(dir.path()),
        pages(&shipped),
        "run packaging/completions.sh"
    );
    for page in pages(&shipped) {
        assert!(
            std::fs::read(dir.path().join(&page)).unwrap()
                == std::fs::read(shipped.join(&page)).unwrap(),
            "packaging/man/{page} is stale: run packaging/completions.sh"
        );
    }
    assert!(pages(&shipped).contains(&"codacy-audit-forwarder-check.1".to_string()));
}

#[test]
fn the_readme_links_only_inside_the_repository() {
    // The packages ship the README alone in /usr/share/doc: a link out of the checkout dangles.
    let readme = read("README.md");
    assert!(
        !readme.contains("`../") && !readme.contains("](../"),
        "README.md points outside the repository"
    );
    for target in readme
        .split("](")
        .skip(1)
        .filter_map(|r| r.split(')').next())
    {
        if target.starts_with('#') || target.starts_with("http") {
            continue;
        }
        let path = target.split('#').next().unwrap();
        assert!(
            root().join(path).exists(),
            "README.md links {target}, which is missing"
        );
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
