//! Section 6: the size of each deployment zip.

use super::*;

/// Section 6: Each function's deployment zip: `scripts/package`'s when there is one, else the
/// x86-64 release binary zipped here.
pub(super) fn zip_sizes(root: &Path, report: &mut Report) -> Res<()> {
    report.section("6. Deployment zip sizes");
    let mut json = serde_json::Map::new();
    for function in FUNCTIONS {
        let packaged = root.join(format!("target/lambda/{function}/bootstrap.zip"));
        let (zip, source) = if packaged.exists() {
            let age = std::fs::metadata(&packaged)?
                .modified()?
                .elapsed()
                .unwrap_or_default();
            (
                packaged,
                format!(
                    "scripts/package's zip, built {} min ago",
                    age.as_secs() / 60
                ),
            )
        } else {
            let out = root.join(format!("target/bench/{function}-bootstrap.zip"));
            zip_binary(&lambda::binary(root, function), &out)?;
            (
                out,
                "no target/lambda zip: target/release binary zipped here (deflate level 9, x86-64)"
                    .into(),
            )
        };
        let bytes = std::fs::metadata(&zip)?.len();
        let mib = bytes as f64 / MIB;
        let binary = std::fs::metadata(lambda::binary(root, function))?.len() as f64 / MIB;
        report.row(
            function,
            format!(
                "{} MiB  ({source}; x86-64 release binary {} MiB)",
                number(mib),
                number(binary)
            ),
        );
        json.insert(
            function.into(),
            json!({"zip_bytes": bytes, "zip_mib": mib, "zip": zip.strip_prefix(root).unwrap_or(&zip), "source": source, "release_binary_mib": binary}),
        );
        report.budget(format!("zip size: {function}"), mib, 5.0, "MiB", true);
    }
    report.json.insert("zip_sizes".into(), Value::Object(json));
    Ok(())
}

/// Zips `binary` as `bootstrap` at maximum compression, with Python's zipfile.
fn zip_binary(binary: &Path, out: &Path) -> Res<()> {
    std::fs::create_dir_all(out.parent().expect("a folder"))?;
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z:\n    z.write(sys.argv[1], 'bootstrap')",
        ])
        .arg(binary)
        .arg(out)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("zipping {} failed", binary.display()).into())
    }
}
