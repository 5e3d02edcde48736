//! PyTorch `torch.save` state dicts read from bytes: the zip archive with
//! `<root>/data.pkl` (the pickled dict of tensor records) and `<root>/data/<key>` (each
//! storage, little-endian). candle's own reader opens a path; this one takes any seekable
//! reader, so weights can come from memory as well as from a file.

use candle_core::pickle::{Object, Stack};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

/// Why a state dict could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TorchError {
    /// Not a zip archive, or an entry could not be read.
    #[error("not a readable PyTorch archive: {0}")]
    Archive(#[from] zip::result::ZipError),
    /// An entry's bytes could not be read.
    #[error("entry {entry}")]
    Io {
        /// The zip entry.
        entry: String,
        /// The read error.
        source: std::io::Error,
    },
    /// The pickle does not decode, or is not a dict of tensors.
    #[error("data.pkl: {0}")]
    Pickle(String),
    /// A tensor's storage is not what its record says.
    #[error("tensor `{name}`: {reason}")]
    Tensor {
        /// The state-dict key.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// Reads every tensor of a `torch.save`d state dict from `reader` onto `device`, by key.
/// Tensors must be stored contiguously (C or Fortran order), as `torch.save` writes
/// parameters.
pub fn read_state_dict<R: Read + Seek>(
    reader: R,
    device: &Device,
) -> Result<HashMap<String, Tensor>, TorchError> {
    let mut zip = zip::ZipArchive::new(reader)?;
    let pkl = zip
        .file_names()
        .find(|n| n.ends_with("data.pkl"))
        .map(str::to_string)
        .ok_or_else(|| TorchError::Pickle("no data.pkl in the archive".into()))?;
    let dir = pkl.trim_end_matches(".pkl").to_string();
    let mut stack = Stack::empty();
    {
        let entry = zip.by_name(&pkl)?;
        stack
            .read_loop(&mut BufReader::new(entry))
            .map_err(|e| TorchError::Pickle(e.to_string()))?;
    }
    let top = stack
        .finalize()
        .map_err(|e| TorchError::Pickle(e.to_string()))?;
    // A scripted module pickles its state as Build(Reduce(__torch__.Module), dict).
    let top = match top {
        Object::Build { callable, args } => match *callable {
            Object::Reduce { callable: c, .. }
                if matches!(&*c, Object::Class { module_name, class_name }
                    if module_name == "__torch__" && class_name == "Module") =>
            {
                *args
            }
            other => Object::Build {
                callable: Box::new(other),
                args,
            },
        },
        other => other,
    };
    let dict = match top {
        Object::Dict(kv) => kv,
        other => {
            return Err(TorchError::Pickle(format!(
                "the archive holds {}, not a state dict",
                kind(&other)
            )))
        }
    };
    let mut out = HashMap::new();
    for (key, value) in dict {
        let info = value
            .into_tensor_info(key, Path::new(&dir))
            .map_err(|e| TorchError::Pickle(e.to_string()))?;
        let Some(info) = info else { continue };
        let bad = |reason: String| TorchError::Tensor {
            name: info.name.clone(),
            reason,
        };
        let layout = &info.layout;
        let fortran = !layout.is_contiguous() && layout.is_fortran_contiguous();
        if !layout.is_contiguous() && !fortran {
            return Err(bad(format!(
                "a strided storage {layout:?} is not supported"
            )));
        }
        let size = info.dtype.size_in_bytes();
        let n = layout.shape().elem_count();
        // candle's record keeps the storage offset in bytes already.
        let start = layout.start_offset();
        let mut storage = Vec::new();
        zip.by_name(&info.path)?
            .read_to_end(&mut storage)
            .map_err(|source| TorchError::Io {
                entry: info.path.clone(),
                source,
            })?;
        let bytes = storage.get(start..start + n * size).ok_or_else(|| {
            bad(format!(
                "{} needs bytes {start}..{} of its storage, which has {}",
                info.path,
                start + n * size,
                storage.len()
            ))
        })?;
        let dims = layout.dims();
        let t = if fortran && dims.len() > 1 {
            let rev: Vec<usize> = dims.iter().rev().copied().collect();
            let perm: Vec<usize> = (0..dims.len()).rev().collect();
            Tensor::from_raw_buffer(bytes, info.dtype, &rev, device)
                .and_then(|t| t.permute(perm))
                .and_then(|t| t.contiguous())
        } else {
            Tensor::from_raw_buffer(bytes, info.dtype, dims, device)
        }
        .map_err(|e| bad(e.to_string()))?;
        out.insert(info.name, t);
    }
    Ok(out)
}

fn kind(o: &Object) -> &'static str {
    match o {
        Object::Dict(_) => "a dict",
        Object::List(_) => "a list",
        Object::Tuple(_) => "a tuple",
        Object::Build { .. } | Object::Reduce { .. } => "an object",
        _ => "a value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn junk_is_a_clear_error_not_a_panic() {
        let e = read_state_dict(Cursor::new(b"not a zip".to_vec()), &Device::Cpu).unwrap_err();
        assert!(
            e.to_string().contains("not a readable PyTorch archive"),
            "{e}"
        );
        // A zip without a pickle.
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file("x/other", zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut w, b"abc").unwrap();
            w.finish().unwrap();
        }
        buf.set_position(0);
        let e = read_state_dict(buf, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("no data.pkl"), "{e}");
    }
}
