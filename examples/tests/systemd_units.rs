//! Every unit in `examples/systemd/` passes `systemd-analyze verify` without a warning about it,
//! with its `/usr/local/bin/TOOL` pointed at the tool built by this package (verify wants the
//! program to exist).

use std::path::Path;
use std::process::Command;

/// The tools a unit may start, with the binaries cargo built for this test.
const TOOLS: &[(&str, &str)] = &[
    ("backup", env!("CARGO_BIN_EXE_backup")),
    ("healthreport", env!("CARGO_BIN_EXE_healthreport")),
    ("logban", env!("CARGO_BIN_EXE_logban")),
    ("onedrive-export", env!("CARGO_BIN_EXE_onedrive-export")),
    ("scan-uploads", env!("CARGO_BIN_EXE_scan-uploads")),
];

#[test]
fn every_unit_verifies() {
    let Some(analyze) = test_support::require_program("systemd-analyze") else {
        return;
    };
    let units_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for entry in std::fs::read_dir(&units_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !(name.ends_with(".service") || name.ends_with(".timer")) {
            continue;
        }
        let mut text = std::fs::read_to_string(&path).unwrap();
        if name.ends_with(".service") {
            let tool = TOOLS
                .iter()
                .find(|(tool, _)| text.contains(&format!("ExecStart=/usr/local/bin/{tool} ")))
                .unwrap_or_else(|| panic!("{name}: ExecStart names no tool of this package"));
            text = text.replace(&format!("/usr/local/bin/{}", tool.0), tool.1);
        }
        std::fs::write(dir.path().join(&name), text).unwrap();
        units.push(name);
    }
    assert!(units.len() >= 3, "units found: {units:?}");
    for name in &units {
        let out = Command::new(&analyze)
            .arg("verify")
            .arg(dir.path().join(name))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {said}");
        assert!(
            !said.contains(&format!("{name}:")),
            "{name}: warnings: {said}"
        );
    }
}
