//! Folder sources: a directory on the server's disk, allowed only under the roots an admin
//! configured, listed with each file's size and modification time so unchanged files cost one
//! stat and nothing else.

use std::path::{Path, PathBuf};

/// Files one folder sync lists at most: a mistaken root (`/`) stops here instead of at the disk.
pub const MAX_FILES: usize = 20_000;

/// One file as a sync sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderFile {
    /// Its path below the folder, `/`-separated: the document's key.
    pub key: String,
    pub path: PathBuf,
    /// Size and modification time: equal stamps mean the file was not touched.
    pub stamp: String,
}

/// The folder a source names, canonical, if it lies under one of `roots`: symbolic links and
/// `..` are resolved first, so neither leads out of a root.
pub fn resolve(location: &str, roots: &[PathBuf]) -> Result<PathBuf, String> {
    if roots.is_empty() {
        return Err(
            "Folder sources are off: an admin lists the folders they may read with --source-roots."
                .into(),
        );
    }
    let path = Path::new(location);
    if !path.is_absolute() {
        return Err("A folder source needs an absolute path.".into());
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| format!("The folder {location:?} cannot be opened: {e}"))?;
    if !canonical.is_dir() {
        return Err(format!("{location:?} is not a folder."));
    }
    let inside = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|root| canonical.starts_with(&root));
    if !inside {
        return Err(format!(
            "{location:?} is outside the folders this server may read (--source-roots)."
        ));
    }
    Ok(canonical)
}

/// The files under `folder`, hidden ones and symbolic links left out, in a stable order.
pub fn list(folder: &Path) -> Result<Vec<FolderFile>, String> {
    let mut files = Vec::new();
    let walk = walkdir::WalkDir::new(folder)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walk {
        let entry = entry.map_err(|e| format!("listing {}: {e}", folder.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        if files.len() == MAX_FILES {
            return Err(format!(
                "{} holds more than {MAX_FILES} files; point the source at a smaller folder.",
                folder.display()
            ));
        }
        let meta = entry
            .metadata()
            .map_err(|e| format!("reading {}: {e}", entry.path().display()))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let Ok(relative) = entry.path().strip_prefix(folder) else {
            continue;
        };
        let key = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        files.push(FolderFile {
            key,
            path: entry.path().to_path_buf(),
            stamp: format!("{}:{modified}", meta.len()),
        });
    }
    files.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_folders_under_a_root_are_accepted() {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("docs");
        std::fs::create_dir(&inside).unwrap();
        let outside = tempfile::tempdir().unwrap();
        let roots = vec![root.path().to_path_buf()];
        assert!(resolve(inside.to_str().unwrap(), &roots).is_ok());
        assert!(resolve(outside.path().to_str().unwrap(), &roots)
            .unwrap_err()
            .contains("outside"));
        let escape = format!("{}/docs/../..", root.path().display());
        assert!(resolve(&escape, &roots).unwrap_err().contains("outside"));
        assert!(resolve("docs", &roots).unwrap_err().contains("absolute"));
        assert!(resolve(inside.to_str().unwrap(), &[])
            .unwrap_err()
            .contains("off"));
        #[cfg(unix)]
        {
            let link = inside.join("away");
            std::os::unix::fs::symlink(outside.path(), &link).unwrap();
            assert!(resolve(link.to_str().unwrap(), &roots)
                .unwrap_err()
                .contains("outside"));
        }
    }

    #[test]
    fn listing_keys_files_by_their_path_and_skips_hidden_ones_and_links() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("a/b")).unwrap();
        std::fs::create_dir_all(root.path().join(".git")).unwrap();
        std::fs::write(root.path().join("a/b/one.md"), "one").unwrap();
        std::fs::write(root.path().join("two.txt"), "two!").unwrap();
        std::fs::write(root.path().join(".hidden"), "x").unwrap();
        std::fs::write(root.path().join(".git/config"), "x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/hostname", root.path().join("link.txt")).unwrap();
        let files = list(root.path()).unwrap();
        let keys: Vec<_> = files.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["a/b/one.md", "two.txt"]);
        assert!(files[1].stamp.starts_with("4:"), "{}", files[1].stamp);
    }
}
