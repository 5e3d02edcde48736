//! Every model file is checked against the sha256 that `models/manifest.toml` pins before
//! it is loaded: a bit-flipped or swapped file (TalkSet weights renamed as the AVA file)
//! refuses to start instead of producing wrong events. Hashes are cached per file in
//! `<model dir>/.verified.json` by size and modification time, so a start-up hashes only
//! what changed.

use super::bytes::{memory_origin, ModelBytes};
use super::ModelFileError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The manifest, as the CLI's `models fetch` reads it.
const MANIFEST: &str = include_str!("../../../../models/manifest.toml");
/// The cache of verified hashes, inside the model directory.
const CACHE_FILE: &str = ".verified.json";

/// One pinned file: `<id>/<path>` under the model directory.
#[derive(Debug, Clone)]
pub struct Pin {
    /// The model id (its directory).
    pub id: String,
    /// Path under the model directory, `<id>/<path>`.
    pub rel: String,
    /// Pinned sha256, lower-case hex.
    pub sha256: String,
    /// Pinned size in bytes.
    pub size: u64,
}

#[derive(Deserialize)]
struct Manifest {
    model: Vec<ManifestModel>,
}

#[derive(Deserialize)]
struct ManifestModel {
    id: String,
    #[serde(rename = "file")]
    files: Vec<ManifestFile>,
}

#[derive(Deserialize)]
struct ManifestFile {
    path: String,
    sha256: String,
    size: u64,
}

/// Every pinned file of the manifest (empty if the compiled-in manifest did not parse,
/// which a unit test rules out).
pub fn pins() -> &'static [Pin] {
    static PINS: OnceLock<Vec<Pin>> = OnceLock::new();
    PINS.get_or_init(|| match toml::from_str::<Manifest>(MANIFEST) {
        Ok(m) => m
            .model
            .into_iter()
            .flat_map(|m| {
                let id = m.id;
                m.files.into_iter().map(move |f| Pin {
                    rel: format!("{id}/{}", f.path),
                    id: id.clone(),
                    sha256: f.sha256,
                    size: f.size,
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    })
}

/// The pin of `rel` (`<id>/<path>`), if the manifest has one.
pub fn pin(rel: &str) -> Option<&'static Pin> {
    pins().iter().find(|p| p.rel == rel)
}

/// The pinned files that go with `rel`: itself and the files of the same model with the
/// same stem (a TF.js graph's `.bin` beside its `.json`).
pub fn companions(rel: &str) -> Vec<&'static Pin> {
    let stem = |r: &str| {
        Path::new(r)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
    };
    let Some(own) = pin(rel) else {
        return Vec::new();
    };
    pins()
        .iter()
        .filter(|p| p.id == own.id && stem(&p.rel) == stem(rel))
        .collect()
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cache {
    files: BTreeMap<String, CacheEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CacheEntry {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

fn stat(path: &Path) -> std::io::Result<(u64, u128)> {
    let m = std::fs::metadata(path)?;
    let mtime = m
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok((m.len(), mtime))
}

/// sha256 of bytes, lower-case hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks `rel` and its companions (given as `bytes`, else under `dir`) against their pins,
/// for `encoder`.
pub fn verify(
    dir: &Path,
    bytes: &ModelBytes,
    encoder: &'static str,
    rel: &str,
) -> Result<(), ModelFileError> {
    let files = companions(rel);
    if files.is_empty() {
        return Err(ModelFileError::Unpinned {
            encoder,
            path: match bytes.get(rel) {
                Some(_) => memory_origin(rel),
                None => dir.join(rel),
            },
        });
    }
    let (given, files): (Vec<_>, Vec<_>) =
        files.into_iter().partition(|p| bytes.get(&p.rel).is_some());
    for p in given {
        let b = bytes.get(&p.rel).map(|b| &b[..]).unwrap_or_default();
        let mismatch = |actual: String| ModelFileError::Mismatch {
            encoder,
            path: memory_origin(&p.rel),
            id: p.id.clone(),
            expected: p.sha256.clone(),
            actual,
        };
        if b.len() as u64 != p.size {
            return Err(mismatch(format!("{} bytes, not {}", b.len(), p.size)));
        }
        let sha = sha256_bytes(b);
        if sha != p.sha256 {
            return Err(mismatch(format!("sha256 {sha}")));
        }
    }
    if files.is_empty() {
        return Ok(());
    }
    let cache_path = dir.join(CACHE_FILE);
    let mut cache: Cache = std::fs::read(&cache_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut changed = false;
    for p in files {
        let path = dir.join(&p.rel);
        let io = |source: std::io::Error| ModelFileError::Read {
            encoder,
            path: path.clone(),
            source,
        };
        let (size, mtime_ns) = stat(&path).map_err(io)?;
        let mismatch = |actual: String| ModelFileError::Mismatch {
            encoder,
            path: path.clone(),
            id: p.id.clone(),
            expected: p.sha256.clone(),
            actual,
        };
        if size != p.size {
            return Err(mismatch(format!("a file of {size} bytes, not {}", p.size)));
        }
        let cached = cache
            .files
            .get(&p.rel)
            .filter(|c| c.size == size && c.mtime_ns == mtime_ns)
            .map(|c| c.sha256.clone());
        let sha = match cached {
            Some(s) => s,
            None => {
                let s = sha256_file(&path).map_err(io)?;
                cache.files.insert(
                    p.rel.clone(),
                    CacheEntry {
                        size,
                        mtime_ns,
                        sha256: s.clone(),
                    },
                );
                changed = true;
                s
            }
        };
        if sha != p.sha256 {
            return Err(mismatch(format!("sha256 {sha}")));
        }
    }
    if changed {
        write_cache(&cache_path, &cache);
    }
    Ok(())
}

/// Writes the cache beside the models (atomically: a temporary file renamed). A model
/// directory that is read-only just means hashing again next time.
fn write_cache(path: &Path, cache: &Cache) {
    let Ok(bytes) = serde_json::to_vec_pretty(cache) else {
        return;
    };
    let tmp: PathBuf = path.with_extension(format!("json.{}.tmp", std::process::id()));
    if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_pins_parse_and_group_companions() {
        assert!(pins().len() >= 10, "{}", pins().len());
        let c: Vec<&str> = companions("human-models/nanodet.json")
            .iter()
            .map(|p| p.rel.as_str())
            .collect();
        assert_eq!(c, ["human-models/nanodet.json", "human-models/nanodet.bin"]);
        assert!(companions("nowhere/x.bin").is_empty());
    }

    /// A temporary model directory holding one pinned file, written with `bytes`.
    fn dir_with(rel: &str, bytes: &[u8]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
        d
    }

    #[test]
    fn a_wrong_file_is_refused_with_the_fetch_command() {
        let pin = pin("yamnet/yamnet_class_map.csv").unwrap();
        let d = dir_with(&pin.rel, &vec![b'x'; pin.size as usize]);
        let err = verify(d.path(), &ModelBytes::default(), "yamnet", &pin.rel)
            .unwrap_err()
            .to_string();
        assert!(err.contains("yamnet_class_map.csv"), "{err}");
        assert!(err.contains("avsense models fetch --only yamnet"), "{err}");
        assert!(err.contains("--allow-unverified-models"), "{err}");
        let d = dir_with(&pin.rel, b"short");
        let err = verify(d.path(), &ModelBytes::default(), "yamnet", &pin.rel)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a file of 5 bytes"), "{err}");
        let err = verify(d.path(), &ModelBytes::default(), "x", "yamnet/unknown.bin")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not pinned"), "{err}");
    }

    #[test]
    fn bytes_given_in_memory_are_checked_against_the_pin_too() {
        let pin = pin("yamnet/yamnet_class_map.csv").unwrap();
        let empty = tempfile::tempdir().unwrap();
        let mut bytes = ModelBytes::default();
        bytes.insert(pin.rel.clone(), vec![b'x'; pin.size as usize]);
        let err = verify(empty.path(), &bytes, "yamnet", &pin.rel)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("<memory>/yamnet/yamnet_class_map.csv"),
            "{err}"
        );
        assert!(err.contains("sha256"), "{err}");
        bytes.insert(pin.rel.clone(), b"short".to_vec());
        let err = verify(empty.path(), &bytes, "yamnet", &pin.rel)
            .unwrap_err()
            .to_string();
        assert!(err.contains("5 bytes, not"), "{err}");
    }
}
