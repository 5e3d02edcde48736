//! Where a model's files come from: a folder on disk, or bytes an embedding program already
//! holds (weights compiled into its binary with `include_bytes!`, fetched over its own
//! transport, or read from a read-only bundle). The loaders read every file through
//! [`ModelFiles`], so a model loads the same way from either.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A model's folder as the loaders see it: files by name, relative to the folder
/// (`nanodet.json`, and the `nanodet.bin` shard it names).
pub trait ModelFiles {
    /// The bytes of `name`.
    fn read(&self, name: &str) -> std::io::Result<Cow<'_, [u8]>>;
    /// How errors name `name` (a path on disk, or `<memory>/name`).
    fn origin(&self, name: &str) -> PathBuf;
}

/// Files in a folder on disk.
#[derive(Debug, Clone)]
pub struct DirFiles(pub PathBuf);

impl DirFiles {
    /// The folder of `file` and its file name: how a path-based loader becomes a
    /// [`ModelFiles`] one.
    pub fn split(file: &Path) -> (Self, String) {
        let dir = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (Self(dir.to_path_buf()), name)
    }
}

impl ModelFiles for DirFiles {
    fn read(&self, name: &str) -> std::io::Result<Cow<'_, [u8]>> {
        std::fs::read(self.0.join(name)).map(Cow::Owned)
    }

    fn origin(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

/// Files held in memory, by name.
#[derive(Debug, Clone, Default)]
pub struct MemoryFiles {
    files: HashMap<String, Arc<[u8]>>,
}

impl MemoryFiles {
    /// No files.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `name`.
    pub fn insert(&mut self, name: impl Into<String>, bytes: impl Into<Arc<[u8]>>) {
        self.files.insert(name.into(), bytes.into());
    }

    /// With `name` added.
    pub fn with(mut self, name: impl Into<String>, bytes: impl Into<Arc<[u8]>>) -> Self {
        self.insert(name, bytes);
        self
    }
}

impl ModelFiles for MemoryFiles {
    fn read(&self, name: &str) -> std::io::Result<Cow<'_, [u8]>> {
        self.files
            .get(name)
            .map(|b| Cow::Borrowed(&b[..]))
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no file `{name}` among the model bytes given"),
                )
            })
    }

    fn origin(&self, name: &str) -> PathBuf {
        Path::new("<memory>").join(name)
    }
}

/// `name`'s sibling `other`: the path of `other` relative to the folder the loader reads,
/// given that `name` may itself sit in a sub-folder (`a/model.json` + `w.bin` →
/// `a/w.bin`).
pub fn sibling(name: &str, other: &str) -> String {
    match Path::new(name)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        Some(p) => p.join(other).to_string_lossy().into_owned(),
        None => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_read_from_memory_or_a_folder_and_name_their_origin() {
        let m = MemoryFiles::new().with("a.json", b"{}".to_vec());
        assert_eq!(&m.read("a.json").unwrap()[..], b"{}");
        let e = m.read("b.bin").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("b.bin"));
        assert_eq!(m.origin("a.json"), PathBuf::from("<memory>/a.json"));

        let (d, name) = DirFiles::split(Path::new("/nowhere/x/model.json"));
        assert_eq!(name, "model.json");
        assert_eq!(d.origin("w.bin"), PathBuf::from("/nowhere/x/w.bin"));
        assert!(d.read("w.bin").is_err());
        let (d, _) = DirFiles::split(Path::new("model.json"));
        assert_eq!(d.0, PathBuf::from("."));

        assert_eq!(sibling("model.json", "w.bin"), "w.bin");
        assert_eq!(sibling("a/model.json", "w.bin"), "a/w.bin");
    }
}
