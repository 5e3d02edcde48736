//! Model files at run time: where they are (`[models] dir`, `$AVSENSE_MODELS`,
//! `models/cache` in a checkout, or the user's data directory: [`default_dir`]), which device runs them, and whether an encoder's file is there for its
//! [`Toggle`], and that it is the file the manifest pins ([`verify`]). Fetching them is the
//! `avsense models fetch` command's job (the CLI crate).

pub mod bytes;
pub mod verify;

pub use bytes::{ModelBytes, ModelFile, ModelFolder};

use crate::core::settings::Toggle;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Default model directory (relative to the working directory).
pub const DEFAULT_DIR: &str = "models/cache";

/// The compute device for the neural encoders.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when built with `--features cuda` and a GPU is present, else CPU.
    #[default]
    Auto,
    /// CPU.
    Cpu,
    /// CUDA GPU 0 (an error when unavailable).
    Cuda,
}

/// `[models]`: model directory and device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Model directory (default: [`default_dir`]: `$AVSENSE_MODELS`, else `models/cache` in
    /// an avsense checkout, else `~/.local/share/avsense/models`).
    pub dir: Option<PathBuf>,
    /// `auto`, `cpu` or `cuda`.
    pub device: DeviceChoice,
    /// Check every model file against the sha256 the manifest pins before loading it
    /// (default true; `false`, or `--allow-unverified-models`, for your own weights).
    pub verify: bool,
    /// Model files an embedding program gives as bytes ([`ModelsConfig::with_bytes`]);
    /// they take the place of the files on disk. Not read from TOML.
    #[serde(skip)]
    pub bytes: ModelBytes,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            device: DeviceChoice::Auto,
            verify: true,
            bytes: ModelBytes::default(),
        }
    }
}

/// The model directory: `$AVSENSE_MODELS`; else [`DEFAULT_DIR`] when the working
/// directory has a `models/` folder (an avsense checkout); else the user's data directory,
/// `$XDG_DATA_HOME/avsense/models` (`~/.local/share/avsense/models`), so that
/// `avsense models fetch` and `avsense run` find the same files from any directory.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AVSENSE_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if std::path::Path::new(DEFAULT_DIR)
        .parent()
        .is_some_and(std::path::Path::is_dir)
    {
        return PathBuf::from(DEFAULT_DIR);
    }
    user_dir(
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
    .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

/// `<data home>/avsense/models`: `$XDG_DATA_HOME`, else `$HOME/.local/share`.
fn user_dir(xdg: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    let data = xdg
        .filter(|x| x.is_absolute())
        .or_else(|| home.map(|h| h.join(".local/share")))?;
    Some(data.join("avsense/models"))
}

/// An encoder's model file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The file is missing while the encoder must run.
    #[error("encoder {encoder}: cannot load its model: {} not found (run `avsense models fetch`, or set [models] dir)", path.display())]
    Missing {
        /// The encoder.
        encoder: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file is not the one the manifest pins (corrupt, truncated, or other weights).
    #[error("encoder {encoder}: {} is not the pinned model file ({actual}; expected sha256 {expected}): fetch it again with `avsense models fetch --only {id}`, or pass --allow-unverified-models ([models] verify = false) to run your own weights", path.display())]
    Mismatch {
        /// The encoder.
        encoder: &'static str,
        /// The file.
        path: PathBuf,
        /// Its model id in the manifest.
        id: String,
        /// The pinned sha256.
        expected: String,
        /// What the file is instead.
        actual: String,
    },
    /// The manifest pins no such file, so it cannot be verified.
    #[error("encoder {encoder}: {} is not pinned by models/manifest.toml, so it cannot be verified (pass --allow-unverified-models or set [models] verify = false to run it)", path.display())]
    Unpinned {
        /// The encoder.
        encoder: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read to verify it.
    #[error("encoder {encoder}: cannot read {}", path.display())]
    Read {
        /// The encoder.
        encoder: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The device asked for is not available.
    #[error("encoder device: {reason}")]
    Device {
        /// Why.
        reason: String,
    },
}

impl ModelsConfig {
    /// The model directory in force.
    pub fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(default_dir)
    }

    /// With the model file `rel` (its path under the model directory, as
    /// `models/manifest.toml` names it: `yamnet/yamnet.tflite`, `human-models/nanodet.bin`)
    /// given as bytes: the encoders load it from memory instead of the disk. It is verified
    /// against the manifest's pin like a file (unless `verify` is off).
    pub fn with_bytes(
        mut self,
        rel: impl Into<String>,
        bytes: impl Into<std::sync::Arc<[u8]>>,
    ) -> Self {
        self.bytes.insert(rel, bytes);
        self
    }

    /// Resolves an encoder's model file `rel` (`<model id>/<file>` under the model
    /// directory, or given as bytes) under its toggle: `Some(file)` to load, `None` to skip
    /// (`off`, or `auto` with the file missing, which is logged).
    pub fn file(
        &self,
        toggle: Toggle,
        encoder: &'static str,
        rel: &str,
    ) -> Result<Option<ModelFile>, ModelFileError> {
        if toggle == Toggle::Off {
            return Ok(None);
        }
        let dir = self.dir();
        let path = dir.join(rel);
        if self.bytes.get(rel).is_some() || path.is_file() {
            self.verified(encoder, rel)?;
            let (id, name) = rel.split_once('/').unwrap_or(("", rel));
            return Ok(Some(ModelFile {
                name: name.to_string(),
                folder: ModelFolder::new(&dir, id, self.bytes.clone()),
            }));
        }
        match toggle {
            Toggle::On => Err(ModelFileError::Missing { encoder, path }),
            _ => {
                tracing::warn!(
                    "{encoder}: {} not found, the encoder is off (run `avsense models fetch`)",
                    path.display()
                );
                Ok(None)
            }
        }
    }

    /// Under an `auto` toggle, where `rel` was looked for when it is neither given as bytes
    /// nor on disk (the encoder then runs without it); `None` otherwise.
    pub fn missing(&self, toggle: Toggle, rel: &str) -> Option<PathBuf> {
        let path = self.dir().join(rel);
        (toggle == Toggle::Auto && self.bytes.get(rel).is_none() && !path.is_file()).then_some(path)
    }

    /// Checks `rel` (and the files that go with it) against the manifest's pins, unless
    /// `verify` is off.
    pub fn verified(&self, encoder: &'static str, rel: &str) -> Result<(), ModelFileError> {
        if !self.verify {
            return Ok(());
        }
        verify::verify(&self.dir(), &self.bytes, encoder, rel)
    }

    /// The candle device the config asks for.
    pub fn device(&self) -> Result<candle_core::Device, ModelFileError> {
        match self.device {
            DeviceChoice::Cpu => Ok(candle_core::Device::Cpu),
            DeviceChoice::Auto => candle_core::Device::cuda_if_available(0)
                .map_err(|e| ModelFileError::Device { reason: e.to_string() }),
            DeviceChoice::Cuda => candle_core::Device::new_cuda(0).map_err(|e| ModelFileError::Device {
                reason: format!("[models] device = \"cuda\": {e} (build with --features cuda on a machine with a GPU)"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_directory_follows_xdg_then_home() {
        assert_eq!(
            user_dir(Some("/data".into()), Some("/home/u".into())),
            Some(PathBuf::from("/data/avsense/models"))
        );
        assert_eq!(
            user_dir(Some("relative".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.local/share/avsense/models")),
            "a relative XDG_DATA_HOME is ignored (XDG spec)"
        );
        assert_eq!(user_dir(None, None), None);
    }
}
