//! Model files an embedding program hands over as bytes instead of a directory: weights
//! compiled into its binary with `include_bytes!`, fetched over its own transport, or read
//! from a bundle. They take the place of the files on disk, by their path under the model
//! directory (`human-models/nanodet.json`), and are verified against the manifest's pins
//! the same way.

use avsense_nn::formats::files::ModelFiles;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Model files held in memory, by their path under the model directory
/// (`<model id>/<file>`, as `models/manifest.toml` names them). Cheap to clone.
#[derive(Clone, Default)]
pub struct ModelBytes(Arc<BTreeMap<String, Arc<[u8]>>>);

impl ModelBytes {
    /// Adds (or replaces) the file `rel` (`yamnet/yamnet.tflite`).
    pub fn insert(&mut self, rel: impl Into<String>, bytes: impl Into<Arc<[u8]>>) {
        Arc::make_mut(&mut self.0).insert(rel.into(), bytes.into());
    }

    /// The bytes of `rel`, if given.
    pub fn get(&self, rel: &str) -> Option<&Arc<[u8]>> {
        self.0.get(rel)
    }

    /// Whether no file was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The paths given.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for ModelBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (k, format!("{} bytes", v.len()))),
            )
            .finish()
    }
}

impl PartialEq for ModelBytes {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

/// Where errors say a file given as bytes came from.
pub fn memory_origin(rel: &str) -> PathBuf {
    Path::new("<memory>").join(rel)
}

/// One model's folder (`<model dir>/<id>`) as the loaders read it: the bytes given for
/// `<id>/<file>` first, else the file on disk.
#[derive(Debug, Clone)]
pub struct ModelFolder {
    id: String,
    dir: PathBuf,
    bytes: ModelBytes,
}

impl ModelFolder {
    /// The folder of model `id` under `models_dir`, with `bytes` in front of it.
    pub fn new(models_dir: &Path, id: &str, bytes: ModelBytes) -> Self {
        Self {
            id: id.to_string(),
            dir: models_dir.join(id),
            bytes,
        }
    }

    fn rel(&self, name: &str) -> String {
        format!("{}/{name}", self.id)
    }
}

impl ModelFiles for ModelFolder {
    fn read(&self, name: &str) -> std::io::Result<Cow<'_, [u8]>> {
        match self.bytes.get(&self.rel(name)) {
            Some(b) => Ok(Cow::Borrowed(&b[..])),
            None => std::fs::read(self.dir.join(name)).map(Cow::Owned),
        }
    }

    fn origin(&self, name: &str) -> PathBuf {
        let rel = self.rel(name);
        if self.bytes.get(&rel).is_some() {
            memory_origin(&rel)
        } else {
            self.dir.join(name)
        }
    }
}

/// An encoder's model file, resolved: the file's name in its model's folder and the folder
/// (bytes given, else disk) its companions are read from.
#[derive(Debug, Clone)]
pub struct ModelFile {
    /// The file's name in its folder (`nanodet.json`).
    pub name: String,
    /// Its folder.
    pub folder: ModelFolder,
}

impl ModelFile {
    /// The file's bytes (borrowed when given in memory).
    pub fn read(&self) -> std::io::Result<Cow<'_, [u8]>> {
        self.folder.read(&self.name)
    }

    /// How errors name it.
    pub fn origin(&self) -> PathBuf {
        self.folder.origin(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_given_take_the_place_of_the_files_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("m")).unwrap();
        std::fs::write(dir.path().join("m/a.json"), b"disk").unwrap();
        std::fs::write(dir.path().join("m/b.bin"), b"disk-b").unwrap();
        let mut bytes = ModelBytes::default();
        bytes.insert("m/a.json", b"memory".to_vec());
        let folder = ModelFolder::new(dir.path(), "m", bytes.clone());
        assert_eq!(&folder.read("a.json").unwrap()[..], b"memory");
        assert_eq!(folder.origin("a.json"), PathBuf::from("<memory>/m/a.json"));
        assert_eq!(&folder.read("b.bin").unwrap()[..], b"disk-b");
        assert_eq!(folder.origin("b.bin"), dir.path().join("m/b.bin"));
        assert!(folder.read("c.bin").is_err());
        assert_eq!(format!("{bytes:?}"), r#"{"m/a.json": "6 bytes"}"#);
        assert_eq!(bytes, bytes.clone());
        assert_ne!(bytes, ModelBytes::default());
    }
}
