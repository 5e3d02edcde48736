//! Loading the fusion networks' weights: from a directory written by `avsense train`, or the
//! shipped weights built into the binary (`models/fusion/` at the repository's top).

use super::{FusionModelError, LearnedKind, LearnedModel, ModelSpec};
use candle_core::Device;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A loaded model with its spec, shared by the streams of a pipeline.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The model.
    pub model: Arc<LearnedModel>,
    /// Its spec.
    pub spec: Arc<ModelSpec>,
    /// The device it runs on.
    pub device: Device,
}

/// Loads `<kind>` from `dir` (`<kind>.json` + `<kind>.safetensors`), or the weights built
/// into the binary when `dir` is `None`.
pub fn load_weights(
    kind: LearnedKind,
    dir: Option<&Path>,
    device: &Device,
) -> Result<Loaded, FusionModelError> {
    let (spec, model) = match dir {
        Some(dir) => {
            let spec = ModelSpec::load(&dir.join(format!("{}.json", kind.name())))?;
            if spec.kind != kind {
                return Err(FusionModelError::Read {
                    path: dir.join(format!("{}.json", kind.name())),
                    reason: format!("its kind is {:?}, expected {kind:?}", spec.kind),
                });
            }
            let w = dir.join(format!("{}.safetensors", kind.name()));
            let model = LearnedModel::load(&w, &spec, device)?;
            (spec, model)
        }
        None => builtin(kind, device)?,
    };
    Ok(Loaded {
        model: Arc::new(model),
        spec: Arc::new(spec),
        device: device.clone(),
    })
}

/// The shipped weights (`models/fusion/`, written by `avsense train`), built into the binary
/// so that it runs from anywhere.
const BUILTIN: [(LearnedKind, &str, &[u8]); 3] = [
    (
        LearnedKind::Gnn,
        include_str!("../../../../../models/fusion/gnn.json"),
        include_bytes!("../../../../../models/fusion/gnn.safetensors"),
    ),
    (
        LearnedKind::Attention,
        include_str!("../../../../../models/fusion/attention.json"),
        include_bytes!("../../../../../models/fusion/attention.safetensors"),
    ),
    (
        LearnedKind::Concat,
        include_str!("../../../../../models/fusion/concat.json"),
        include_bytes!("../../../../../models/fusion/concat.safetensors"),
    ),
];

fn builtin(
    kind: LearnedKind,
    device: &Device,
) -> Result<(ModelSpec, LearnedModel), FusionModelError> {
    let name = kind.name();
    let (_, json, weights) =
        BUILTIN
            .iter()
            .find(|b| b.0 == kind)
            .ok_or_else(|| FusionModelError::Read {
                path: PathBuf::from(format!("models/fusion/{name}.json")),
                reason: "not built in".into(),
            })?;
    let spec = ModelSpec::parse(json, Path::new(&format!("models/fusion/{name}.json")))?;
    let path = PathBuf::from(format!("models/fusion/{name}.safetensors"));
    let tensors = candle_core::safetensors::load_buffer(weights, device).map_err(|e| {
        FusionModelError::Read {
            path: path.clone(),
            reason: e.to_string(),
        }
    })?;
    let model = LearnedModel::from_tensors(tensors, &path, &spec, device)?;
    Ok((spec, model))
}
