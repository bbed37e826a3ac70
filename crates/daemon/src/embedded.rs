//! The bundled example deployment, compiled into the binary so `steward run --lab` works
//! from any directory. It is written out once, and then watched like any other directory.

use std::path::Path;

/// (path relative to the desired-state directory, contents)
pub const FILES: &[(&str, &str)] = &[
    (
        "installation.yaml",
        include_str!("../../../desired-state/installation.yaml"),
    ),
    (
        "servers/app1.yaml",
        include_str!("../../../desired-state/servers/app1.yaml"),
    ),
    (
        "servers/app2.yaml",
        include_str!("../../../desired-state/servers/app2.yaml"),
    ),
    (
        "active-directory/corp.yaml",
        include_str!("../../../desired-state/active-directory/corp.yaml"),
    ),
    (
        "health-checks.yaml",
        include_str!("../../../desired-state/health-checks.yaml"),
    ),
];

/// Write the bundled files into `dir` unless it already exists (never overwrite edits).
pub fn write_if_absent(dir: &Path) -> std::io::Result<bool> {
    if dir.exists() {
        return Ok(false);
    }
    for (rel, text) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adding a file to desired-state/ without listing it here would ship an incomplete
    /// example; this catches it.
    #[test]
    fn every_bundled_file_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../desired-state");
        let mut on_disk = Vec::new();
        collect(&root, &root, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| (*p).to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                collect(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
}
