//! Writing a rendered file: atomically (a reader sees the old or the new content, never
//! half of one) and only when the content differs.

use std::io::Write;
use std::path::Path;

use crate::BalancerError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Unchanged,
    Replaced,
}

pub fn write_if_changed(path: &Path, content: &str) -> Result<Written, BalancerError> {
    let io = |e: std::io::Error| BalancerError::Write {
        path: path.to_owned(),
        source: e,
    };
    if std::fs::read(path).is_ok_and(|old| old == content.as_bytes()) {
        return Ok(Written::Unchanged);
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)?;
    Ok(Written::Replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_content_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/as3.json");
        assert_eq!(write_if_changed(&path, "{}").unwrap(), Written::Replaced);
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        assert_eq!(write_if_changed(&path, "{}").unwrap(), Written::Unchanged);
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::ino(&after), inode);
        assert_eq!(after.modified().unwrap(), before);
        assert_eq!(
            write_if_changed(&path, "{\"a\":1}").unwrap(),
            Written::Replaced
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}");
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
