//! A minimal reader of TensorFlow Lite model files (`.tflite`, a FlatBuffer).
//!
//! It reads what a model written in candle needs to take its weights from a TFLite graph:
//! the buffers, the tensors of the first subgraph (name, shape, type, buffer, quantisation
//! with per-channel scales and zero points), the operators in execution order (builtin
//! code, inputs, outputs) and the builtin options of the common ops (convolution strides,
//! padding, dilation and fused activation, fully-connected and reshape options, pooling,
//! reductions, …). Int8/uint8 weights are dequantised on request as `scale × (q − zero_point)`,
//! per channel along `quantized_dimension` when the tensor has one scale per channel.
//!
//! Nothing of TFLite's runtime is used; there is no Python at run time. The FlatBuffer is
//! read through the `flatbuffers` crate: the tables of TFLite's `schema.fbs` that this
//! reader needs are declared in its `schema` module the way `flatc` generates them, and
//! [`flatbuffers::root`] runs the crate's verifier over every table, vector, string and
//! scalar that the reader then reads, so a truncated or garbage file gives a
//! [`TfliteError`] naming the file and what is wrong, never a panic or a read out of
//! bounds. Absent fields take the schema's defaults.

mod schema;

use crate::ops::Padding;
use candle_core::{Device, Tensor};
use schema::BuiltinOptions;
use std::path::Path;

/// Errors of the TFLite reader: each names the file (or origin) and the part concerned.
#[derive(Debug, thiserror::Error)]
pub enum TfliteError {
    /// The file cannot be read.
    #[error("tflite {origin}: cannot read")]
    Io {
        /// The file.
        origin: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a well-formed TFLite FlatBuffer.
    #[error("tflite {origin}: not a valid TFLite model: {reason}")]
    Format {
        /// The file.
        origin: String,
        /// What is wrong, with the offending offset.
        reason: String,
    },
    /// A tensor cannot be read or converted as asked.
    #[error("tflite {origin}: tensor {index} `{name}`: {reason}")]
    Tensor {
        /// The file.
        origin: String,
        /// Tensor index in the subgraph.
        index: usize,
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// Element type of a tensor (TFLite's `TensorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    /// f32.
    Float32,
    /// f16.
    Float16,
    /// i32.
    Int32,
    /// u8.
    UInt8,
    /// i64.
    Int64,
    /// i16.
    Int16,
    /// i8.
    Int8,
    /// f64.
    Float64,
    /// bool (one byte).
    Bool,
    /// Any other type code.
    Other(i8),
}

impl TensorType {
    fn from_code(code: i8) -> Self {
        match code {
            0 => Self::Float32,
            1 => Self::Float16,
            2 => Self::Int32,
            3 => Self::UInt8,
            4 => Self::Int64,
            6 => Self::Bool,
            7 => Self::Int16,
            9 => Self::Int8,
            10 => Self::Float64,
            c => Self::Other(c),
        }
    }

    /// Bytes per element, where fixed.
    pub fn size(self) -> Option<usize> {
        match self {
            Self::Float32 | Self::Int32 => Some(4),
            Self::Float16 | Self::Int16 => Some(2),
            Self::UInt8 | Self::Int8 | Self::Bool => Some(1),
            Self::Int64 | Self::Float64 => Some(8),
            Self::Other(_) => None,
        }
    }
}

/// Quantisation parameters of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantization {
    /// One scale per tensor, or one per channel along `quantized_dimension`.
    pub scale: Vec<f32>,
    /// Zero points, as many as scales (empty: all zero).
    pub zero_point: Vec<i64>,
    /// The channel axis of per-channel quantisation.
    pub quantized_dimension: usize,
}

/// One tensor of the subgraph.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Its name in the graph.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its element type.
    pub dtype: TensorType,
    /// Index into the model's buffers (0: the empty buffer, i.e. no constant data).
    pub buffer: usize,
    /// Quantisation, when it has scales.
    pub quantization: Option<Quantization>,
}

impl TensorInfo {
    /// Number of elements (saturating: a corrupt shape cannot overflow).
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }
}

/// A builtin operator (TFLite's `BuiltinOperator`); the ones this crate meets by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinOp {
    /// ADD (0).
    Add,
    /// AVERAGE_POOL_2D (1).
    AveragePool2d,
    /// CONCATENATION (2).
    Concatenation,
    /// CONV_2D (3).
    Conv2d,
    /// DEPTHWISE_CONV_2D (4).
    DepthwiseConv2d,
    /// DEQUANTIZE (6).
    Dequantize,
    /// FULLY_CONNECTED (9).
    FullyConnected,
    /// LOGISTIC (14).
    Logistic,
    /// MAX_POOL_2D (17).
    MaxPool2d,
    /// MUL (18).
    Mul,
    /// RELU (19).
    Relu,
    /// RELU6 (21).
    Relu6,
    /// RESHAPE (22).
    Reshape,
    /// SOFTMAX (25).
    Softmax,
    /// PAD (34).
    Pad,
    /// GATHER (36).
    Gather,
    /// MEAN (40).
    Mean,
    /// SQUEEZE (43).
    Squeeze,
    /// STRIDED_SLICE (45).
    StridedSlice,
    /// SLICE (65).
    Slice,
    /// LOG (73).
    Log,
    /// SQRT (75).
    Sqrt,
    /// Any other builtin code.
    Other(i32),
}

impl BuiltinOp {
    /// From TFLite's builtin code.
    pub fn from_code(code: i32) -> Self {
        match code {
            0 => Self::Add,
            1 => Self::AveragePool2d,
            2 => Self::Concatenation,
            3 => Self::Conv2d,
            4 => Self::DepthwiseConv2d,
            6 => Self::Dequantize,
            9 => Self::FullyConnected,
            14 => Self::Logistic,
            17 => Self::MaxPool2d,
            18 => Self::Mul,
            19 => Self::Relu,
            21 => Self::Relu6,
            22 => Self::Reshape,
            25 => Self::Softmax,
            34 => Self::Pad,
            36 => Self::Gather,
            40 => Self::Mean,
            43 => Self::Squeeze,
            45 => Self::StridedSlice,
            65 => Self::Slice,
            73 => Self::Log,
            75 => Self::Sqrt,
            c => Self::Other(c),
        }
    }
}

/// A fused activation (TFLite's `ActivationFunctionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// None.
    #[default]
    None,
    /// max(x, 0).
    Relu,
    /// clamp(x, −1, 1).
    ReluN1To1,
    /// clamp(x, 0, 6).
    Relu6,
    /// tanh.
    Tanh,
    /// Any other code.
    Other(i8),
}

impl Activation {
    fn from_code(code: i8) -> Self {
        match code {
            0 => Self::None,
            1 => Self::Relu,
            2 => Self::ReluN1To1,
            3 => Self::Relu6,
            4 => Self::Tanh,
            c => Self::Other(c),
        }
    }
}

/// The builtin options this reader decodes (others: [`Options::Other`] with the union type).
#[derive(Debug, Clone, PartialEq)]
pub enum Options {
    /// No options table.
    None,
    /// CONV_2D.
    Conv2d {
        /// SAME or VALID.
        padding: Padding,
        /// (rows, columns).
        stride: (usize, usize),
        /// (rows, columns).
        dilation: (usize, usize),
        /// Fused activation.
        activation: Activation,
    },
    /// DEPTHWISE_CONV_2D.
    DepthwiseConv2d {
        /// SAME or VALID.
        padding: Padding,
        /// (rows, columns).
        stride: (usize, usize),
        /// (rows, columns).
        dilation: (usize, usize),
        /// Depth multiplier.
        depth_multiplier: usize,
        /// Fused activation.
        activation: Activation,
    },
    /// AVERAGE_POOL_2D / MAX_POOL_2D.
    Pool2d {
        /// SAME or VALID.
        padding: Padding,
        /// (rows, columns).
        stride: (usize, usize),
        /// (rows, columns).
        filter: (usize, usize),
        /// Fused activation.
        activation: Activation,
    },
    /// FULLY_CONNECTED.
    FullyConnected {
        /// Fused activation.
        activation: Activation,
        /// Keep the input's leading dimensions.
        keep_num_dims: bool,
        /// Hybrid kernels: quantise the input asymmetrically.
        asymmetric_quantize_inputs: bool,
    },
    /// RESHAPE (the new shape may also come as a second input tensor).
    Reshape {
        /// The new shape, when given as an option.
        new_shape: Vec<i32>,
    },
    /// MEAN, SUM, … (`ReducerOptions`).
    Reducer {
        /// Keep reduced dimensions.
        keep_dims: bool,
    },
    /// ADD.
    Add {
        /// Fused activation.
        activation: Activation,
    },
    /// MUL.
    Mul {
        /// Fused activation.
        activation: Activation,
    },
    /// CONCATENATION.
    Concatenation {
        /// Axis.
        axis: i32,
        /// Fused activation.
        activation: Activation,
    },
    /// GATHER.
    Gather {
        /// Axis.
        axis: i32,
        /// Batch dimensions.
        batch_dims: i32,
    },
    /// SOFTMAX.
    Softmax {
        /// Inverse temperature.
        beta: f32,
    },
    /// Options this reader does not decode: the `BuiltinOptions` union type.
    Other(u8),
}

/// One operator, in execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    /// The builtin operator (custom operators are [`BuiltinOp::Other`] with code 32).
    pub op: BuiltinOp,
    /// Custom code of a custom operator.
    pub custom_code: Option<String>,
    /// Operator version.
    pub version: i32,
    /// Input tensor indices (−1: optional input absent).
    pub inputs: Vec<i32>,
    /// Output tensor indices.
    pub outputs: Vec<i32>,
    /// Decoded builtin options.
    pub options: Options,
}

/// A parsed TFLite model: the first subgraph and the constant data.
#[derive(Debug, Clone)]
pub struct TfliteModel {
    origin: String,
    bytes: Vec<u8>,
    /// Model schema version.
    pub version: u32,
    /// Description string.
    pub description: Option<String>,
    /// Tensors of the first subgraph.
    pub tensors: Vec<TensorInfo>,
    /// Operators of the first subgraph, in execution order.
    pub operators: Vec<Operator>,
    /// Subgraph input tensors.
    pub inputs: Vec<usize>,
    /// Subgraph output tensors.
    pub outputs: Vec<usize>,
    /// Byte range of each buffer's data in the file (empty when the buffer is empty).
    buffers: Vec<std::ops::Range<usize>>,
}

/// What the parse of the FlatBuffer gives, before the tensors are checked.
struct Parsed {
    version: u32,
    description: Option<String>,
    tensors: Vec<TensorInfo>,
    operators: Vec<Operator>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    buffers: Vec<std::ops::Range<usize>>,
}

/// What is wrong with the file, for [`TfliteError::Format`].
type ParseResult<T> = Result<T, String>;

fn padding(code: i8) -> ParseResult<Padding> {
    match code {
        0 => Ok(Padding::Same),
        1 => Ok(Padding::Valid),
        c => Err(format!("unknown padding code {c}")),
    }
}

fn positive(v: i32, what: &str) -> ParseResult<usize> {
    if v >= 1 {
        Ok(v as usize)
    } else {
        Err(format!("{what} must be ≥ 1, got {v}"))
    }
}

/// The values of an optional vector (absent: empty).
fn values<'a, T: flatbuffers::Follow<'a> + 'a>(
    v: Option<flatbuffers::Vector<'a, T>>,
) -> Vec<T::Inner> {
    v.map(|v| v.iter().collect()).unwrap_or_default()
}

/// (rows, columns) from TFLite's `_h`/`_w` pair, each ≥ 1.
fn pair(h: i32, w: i32, what: &str) -> ParseResult<(usize, usize)> {
    Ok((
        positive(h, &format!("{what}_h"))?,
        positive(w, &format!("{what}_w"))?,
    ))
}

fn parse_options(op: &schema::Operator<'_>) -> ParseResult<Options> {
    let ty = op.builtin_options_type();
    let Some(options) = op.builtin_options() else {
        return Ok(if ty == schema::options_type::NONE {
            Options::None
        } else {
            Options::Other(ty)
        });
    };
    let act = Activation::from_code;
    Ok(match options {
        BuiltinOptions::Conv2d(o) => Options::Conv2d {
            padding: padding(o.padding())?,
            stride: pair(o.stride_h(), o.stride_w(), "stride")?,
            activation: act(o.fused_activation_function()),
            dilation: (
                positive(o.dilation_h_factor(), "dilation_h_factor")?,
                positive(o.dilation_w_factor(), "dilation_w_factor")?,
            ),
        },
        BuiltinOptions::DepthwiseConv2d(o) => Options::DepthwiseConv2d {
            padding: padding(o.padding())?,
            stride: pair(o.stride_h(), o.stride_w(), "stride")?,
            // 0 in old converters means 1 (TFLite's kernel infers it from the shapes).
            depth_multiplier: o.depth_multiplier().max(1) as usize,
            activation: act(o.fused_activation_function()),
            dilation: (
                positive(o.dilation_h_factor(), "dilation_h_factor")?,
                positive(o.dilation_w_factor(), "dilation_w_factor")?,
            ),
        },
        BuiltinOptions::Pool2d(o) => Options::Pool2d {
            padding: padding(o.padding())?,
            stride: pair(o.stride_h(), o.stride_w(), "stride")?,
            filter: (
                positive(o.filter_height(), "filter_height")?,
                positive(o.filter_width(), "filter_width")?,
            ),
            activation: act(o.fused_activation_function()),
        },
        BuiltinOptions::FullyConnected(o) => Options::FullyConnected {
            activation: act(o.fused_activation_function()),
            keep_num_dims: o.keep_num_dims(),
            asymmetric_quantize_inputs: o.asymmetric_quantize_inputs(),
        },
        BuiltinOptions::Softmax(o) => Options::Softmax { beta: o.beta() },
        BuiltinOptions::Concatenation(o) => Options::Concatenation {
            axis: o.axis(),
            activation: act(o.fused_activation_function()),
        },
        BuiltinOptions::Add(o) => Options::Add {
            activation: act(o.fused_activation_function()),
        },
        BuiltinOptions::Mul(o) => Options::Mul {
            activation: act(o.fused_activation_function()),
        },
        BuiltinOptions::Reshape(o) => Options::Reshape {
            new_shape: values(o.new_shape()),
        },
        BuiltinOptions::Gather(o) => Options::Gather {
            axis: o.axis(),
            batch_dims: o.batch_dims(),
        },
        BuiltinOptions::Reducer(o) => Options::Reducer {
            keep_dims: o.keep_dims(),
        },
    })
}

/// The byte range of each buffer's data in `bytes` (empty for an empty buffer).
fn buffer_ranges(
    bytes: &[u8],
    model: &schema::Model<'_>,
) -> ParseResult<Vec<std::ops::Range<usize>>> {
    let mut ranges = Vec::new();
    for (i, b) in model.buffers().into_iter().flatten().enumerate() {
        let range = match b.data() {
            Some(data) => {
                // A verified vector lies inside `bytes`: its offset is the distance between
                // the two slices' starts.
                let data = data.bytes();
                let start = (data.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
                start..start + data.len()
            }
            None => {
                // Data outside the FlatBuffer (models > 2 GB): offset/size from the file start,
                // valid when the offset is > 1.
                let (offset, size) = (b.offset(), b.size());
                if offset > 1 {
                    let range = usize::try_from(offset)
                        .ok()
                        .zip(usize::try_from(size).ok())
                        .and_then(|(o, s)| Some(o..o.checked_add(s)?))
                        .filter(|r| r.end <= bytes.len());
                    range.ok_or_else(|| {
                        format!(
                            "buffer {i} (external data): offset {offset} + {size} bytes is past the end of the file ({} bytes)",
                            bytes.len()
                        )
                    })?
                } else {
                    0..0
                }
            }
        };
        ranges.push(range);
    }
    Ok(ranges)
}

/// Reads what [`TfliteModel`] holds from a verified model.
fn parse(bytes: &[u8], model: &schema::Model<'_>) -> ParseResult<Parsed> {
    let buffers = buffer_ranges(bytes, model)?;

    let codes: Vec<(BuiltinOp, Option<String>, i32)> = model
        .operator_codes()
        .into_iter()
        .flatten()
        .map(|c| {
            // As TFLite's GetBuiltinCode: the larger of the two fields.
            let code = c.builtin_code().max(i32::from(c.deprecated_builtin_code()));
            (
                BuiltinOp::from_code(code),
                c.custom_code().map(str::to_string),
                c.version(),
            )
        })
        .collect();

    let Some(sg) = model.subgraphs().and_then(|s| s.iter().next()) else {
        return Err("the model has no subgraph".into());
    };
    let mut tensors = Vec::new();
    for (i, t) in sg.tensors().into_iter().flatten().enumerate() {
        let shape = values(t.shape())
            .into_iter()
            .map(|d| usize::try_from(d).map_err(|_| format!("tensor {i}: negative dimension {d}")))
            .collect::<ParseResult<Vec<_>>>()?;
        let buffer = t.buffer() as usize;
        if buffer >= buffers.len().max(1) {
            return Err(format!(
                "tensor {i}: buffer index {buffer} out of range ({} buffers)",
                buffers.len()
            ));
        }
        let quantization = match t.quantization() {
            Some(q) => {
                let scale = values(q.scale());
                let dim = q.quantized_dimension();
                if scale.is_empty() {
                    None
                } else {
                    Some(Quantization {
                        scale,
                        zero_point: values(q.zero_point()),
                        quantized_dimension: usize::try_from(dim).map_err(|_| {
                            format!("tensor {i}: negative quantized_dimension {dim}")
                        })?,
                    })
                }
            }
            None => None,
        };
        tensors.push(TensorInfo {
            name: t.name().unwrap_or_default().to_string(),
            shape,
            dtype: TensorType::from_code(t.type_()),
            buffer,
            quantization,
        });
    }
    let index = |v: i32, what: &str| -> ParseResult<usize> {
        usize::try_from(v)
            .ok()
            .filter(|&v| v < tensors.len())
            .ok_or_else(|| {
                format!(
                    "{what}: tensor index {v} out of range ({} tensors)",
                    tensors.len()
                )
            })
    };
    let inputs = values(sg.inputs())
        .into_iter()
        .map(|v| index(v, "subgraph input"))
        .collect::<ParseResult<Vec<_>>>()?;
    let outputs = values(sg.outputs())
        .into_iter()
        .map(|v| index(v, "subgraph output"))
        .collect::<ParseResult<Vec<_>>>()?;

    let mut operators = Vec::new();
    for (i, o) in sg.operators().into_iter().flatten().enumerate() {
        let ci = o.opcode_index() as usize;
        let Some((op, custom_code, version)) = codes.get(ci).cloned() else {
            return Err(format!(
                "operator {i}: opcode index {ci} out of range ({} codes)",
                codes.len()
            ));
        };
        let op_inputs = values(o.inputs());
        let op_outputs = values(o.outputs());
        for &v in &op_inputs {
            if v != -1 {
                index(v, &format!("operator {i} ({op:?}) input"))?;
            }
        }
        for &v in &op_outputs {
            index(v, &format!("operator {i} ({op:?}) output"))?;
        }
        let options =
            parse_options(&o).map_err(|e| format!("operator {i} ({op:?}) options: {e}"))?;
        operators.push(Operator {
            op,
            custom_code,
            version,
            inputs: op_inputs,
            outputs: op_outputs,
            options,
        });
    }
    Ok(Parsed {
        version: model.version(),
        description: model.description().map(str::to_string),
        tensors,
        operators,
        inputs,
        outputs,
        buffers,
    })
}

impl TfliteModel {
    /// Reads and parses a `.tflite` file.
    pub fn load(path: &Path) -> Result<Self, TfliteError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| TfliteError::Io {
            origin: origin.clone(),
            source,
        })?;
        Self::from_bytes(bytes, &origin)
    }

    /// Parses a TFLite model held in memory; `origin` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, origin: &str) -> Result<Self, TfliteError> {
        let format = |reason: String| TfliteError::Format {
            origin: origin.to_string(),
            reason,
        };
        if bytes.len() < 8 {
            return Err(format(format!("{} bytes is too short", bytes.len())));
        }
        if !flatbuffers::buffer_has_identifier(&bytes, "TFL3", false) {
            return Err(format(format!(
                "no TFLite file identifier: bytes 4..8 are {:?}, expected \"TFL3\"",
                String::from_utf8_lossy(&bytes[4..8])
            )));
        }
        let root = flatbuffers::root::<schema::Model>(&bytes).map_err(|e| {
            format(format!(
                "corrupt or truncated FlatBuffer ({} bytes): {e}",
                bytes.len()
            ))
        })?;
        let parsed = parse(&bytes, &root).map_err(format)?;
        let model = Self {
            origin: origin.to_string(),
            bytes,
            version: parsed.version,
            description: parsed.description,
            tensors: parsed.tensors,
            operators: parsed.operators,
            inputs: parsed.inputs,
            outputs: parsed.outputs,
            buffers: parsed.buffers,
        };
        model.check_tensors()?;
        Ok(model)
    }

    /// Every constant tensor's data has the size its shape and type say.
    fn check_tensors(&self) -> Result<(), TfliteError> {
        for (i, t) in self.tensors.iter().enumerate() {
            let Some(range) = self.buffers.get(t.buffer) else {
                continue;
            };
            if range.is_empty() {
                continue;
            }
            if let Some(size) = t.dtype.size() {
                let want = t.numel().checked_mul(size);
                if want != Some(range.len()) {
                    return Err(self.tensor_error(
                        i,
                        format!(
                            "shape {:?} of {:?} needs {want:?} bytes, its buffer {} has {}",
                            t.shape,
                            t.dtype,
                            t.buffer,
                            range.len()
                        ),
                    ));
                }
            }
            if let Some(q) = &t.quantization {
                let n = q.scale.len();
                let per_channel = n > 1;
                if per_channel && t.shape.get(q.quantized_dimension) != Some(&n) {
                    return Err(self.tensor_error(
                        i,
                        format!(
                            "{n} scales do not match dimension {} of shape {:?}",
                            q.quantized_dimension, t.shape
                        ),
                    ));
                }
                if !q.zero_point.is_empty() && q.zero_point.len() != n {
                    return Err(self.tensor_error(
                        i,
                        format!("{} zero points for {n} scales", q.zero_point.len()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn tensor_error(&self, index: usize, reason: String) -> TfliteError {
        TfliteError::Tensor {
            origin: self.origin.clone(),
            index,
            name: self
                .tensors
                .get(index)
                .map_or_else(|| "?".to_string(), |t| t.name.clone()),
            reason,
        }
    }

    /// The file (or origin) the model came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Tensor `index`, or an error naming the index.
    pub fn tensor(&self, index: usize) -> Result<&TensorInfo, TfliteError> {
        self.tensors.get(index).ok_or_else(|| TfliteError::Format {
            origin: self.origin.clone(),
            reason: format!(
                "tensor index {index} out of range ({} tensors)",
                self.tensors.len()
            ),
        })
    }

    /// The constant bytes of tensor `index` (`None`: not a constant).
    pub fn tensor_bytes(&self, index: usize) -> Result<Option<&[u8]>, TfliteError> {
        let t = self.tensor(index)?;
        Ok(self
            .buffers
            .get(t.buffer)
            .filter(|r| !r.is_empty())
            .map(|r| &self.bytes[r.clone()]))
    }

    /// The index of the operator that writes tensor `index`, if any.
    pub fn producer(&self, index: usize) -> Option<usize> {
        self.operators
            .iter()
            .position(|op| op.outputs.iter().any(|&o| o as usize == index && o >= 0))
    }

    /// The indices of the operators that read tensor `index`.
    pub fn consumers(&self, index: usize) -> Vec<usize> {
        self.operators
            .iter()
            .enumerate()
            .filter(|(_, op)| op.inputs.iter().any(|&i| i >= 0 && i as usize == index))
            .map(|(k, _)| k)
            .collect()
    }

    /// The constant values of tensor `index` as f32: float32 as is; int8/uint8/int16/int32
    /// dequantised with its scales when it has any (per channel along the quantised
    /// dimension), else converted. A tensor produced by a DEQUANTIZE op of a constant is
    /// read through it. Errors for a non-constant tensor or an unsupported type.
    pub fn tensor_f32(&self, index: usize) -> Result<Vec<f32>, TfliteError> {
        self.tensor_f32_at(index, 0)
    }

    fn tensor_f32_at(&self, index: usize, depth: usize) -> Result<Vec<f32>, TfliteError> {
        let t = self.tensor(index)?;
        let Some(bytes) = self.tensor_bytes(index)? else {
            if let Some(p) = self.producer(index) {
                let op = &self.operators[p];
                // A constant goes through at most one DEQUANTIZE; more is a corrupt graph.
                if op.op == BuiltinOp::Dequantize && depth == 0 {
                    if let Some(&src) = op.inputs.first() {
                        let src = usize::try_from(src).map_err(|_| {
                            self.tensor_error(index, "DEQUANTIZE without input".into())
                        })?;
                        let v = self.tensor_f32_at(src, depth + 1)?;
                        if v.len() != t.numel() {
                            return Err(self.tensor_error(
                                index,
                                format!(
                                    "DEQUANTIZE of {} values into shape {:?}",
                                    v.len(),
                                    t.shape
                                ),
                            ));
                        }
                        return Ok(v);
                    }
                }
            }
            return Err(self.tensor_error(index, "is not a constant (no data)".into()));
        };
        let ints: Vec<i64> = match t.dtype {
            TensorType::Float32 => {
                return Ok(bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect())
            }
            TensorType::Int8 => bytes.iter().map(|&b| i64::from(b as i8)).collect(),
            TensorType::UInt8 => bytes.iter().map(|&b| i64::from(b)).collect(),
            TensorType::Int16 => bytes
                .chunks_exact(2)
                .map(|b| i64::from(i16::from_le_bytes([b[0], b[1]])))
                .collect(),
            TensorType::Int32 => bytes
                .chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            other => return Err(self.tensor_error(index, format!("cannot read {other:?} as f32"))),
        };
        let Some(q) = &t.quantization else {
            return Ok(ints.into_iter().map(|v| v as f32).collect());
        };
        let n = q.scale.len();
        let zp = |c: usize| q.zero_point.get(c).copied().unwrap_or(0);
        if n == 1 {
            let (s, z) = (q.scale[0], zp(0));
            return Ok(ints
                .into_iter()
                .map(|v| s * v.saturating_sub(z) as f32)
                .collect());
        }
        // Per channel: element e's channel is (e / inner) % n, inner = product of the
        // dimensions after the quantised one (check_tensors made sure shape[dim] = n).
        let inner = t.shape[q.quantized_dimension + 1..]
            .iter()
            .fold(1usize, |a, &d| a.saturating_mul(d));
        Ok(ints
            .into_iter()
            .enumerate()
            .map(|(e, v)| {
                let c = (e / inner.max(1)) % n;
                q.scale[c] * v.saturating_sub(zp(c)) as f32
            })
            .collect())
    }

    /// The constant values of an integer tensor (int32/int64/int8/uint8), e.g. shapes, axes.
    pub fn tensor_i64(&self, index: usize) -> Result<Vec<i64>, TfliteError> {
        let t = self.tensor(index)?;
        let Some(bytes) = self.tensor_bytes(index)? else {
            return Err(self.tensor_error(index, "is not a constant (no data)".into()));
        };
        Ok(match t.dtype {
            TensorType::Int32 => bytes
                .chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            TensorType::Int64 => bytes
                .chunks_exact(8)
                .map(|b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    i64::from_le_bytes(a)
                })
                .collect(),
            TensorType::Int8 => bytes.iter().map(|&b| i64::from(b as i8)).collect(),
            TensorType::UInt8 => bytes.iter().map(|&b| i64::from(b)).collect(),
            other => {
                return Err(self.tensor_error(index, format!("is {other:?}, not an integer type")))
            }
        })
    }

    /// Tensor `index` as an f32 candle tensor of its shape (see [`Self::tensor_f32`]).
    pub fn to_candle(&self, index: usize, device: &Device) -> Result<Tensor, TfliteError> {
        let shape = self.tensor(index)?.shape.clone();
        let data = self.tensor_f32(index)?;
        Tensor::from_vec(data, shape, device)
            .map_err(|e| self.tensor_error(index, format!("to {device:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::schema::{
        Buffer, DepthwiseConv2DOptions, Model, Operator as Op, OperatorCode,
        QuantizationParameters, SubGraph, Tensor as T,
    };
    use super::*;
    use flatbuffers::{FlatBufferBuilder, TableFinishedWIPOffset, VOffsetT, WIPOffset};

    type Off = WIPOffset<TableFinishedWIPOffset>;

    /// Scalar fields of one table, for [`table`].
    #[derive(Clone, Copy)]
    enum F {
        I8(VOffsetT, i8),
        U8(VOffsetT, u8),
        I32(VOffsetT, i32),
        U32(VOffsetT, u32),
        /// An offset to a table, vector or string made before.
        Off(VOffsetT, WIPOffset<flatbuffers::UnionWIPOffset>),
    }

    /// A table with the given fields (always written, even when equal to the default).
    fn table(b: &mut FlatBufferBuilder<'_>, fields: &[F]) -> Off {
        let t = b.start_table();
        for f in fields {
            match *f {
                F::I8(vt, v) => b.push_slot_always(vt, v),
                F::U8(vt, v) => b.push_slot_always(vt, v),
                F::I32(vt, v) => b.push_slot_always(vt, v),
                F::U32(vt, v) => b.push_slot_always(vt, v),
                F::Off(vt, o) => b.push_slot_always(vt, o),
            }
        }
        b.end_table(t)
    }

    fn off<T>(o: WIPOffset<T>) -> WIPOffset<flatbuffers::UnionWIPOffset> {
        o.as_union_value()
    }

    /// A one-op model: DEPTHWISE_CONV_2D (stride 2×1, SAME, RELU6, options type `options`)
    /// on a [1,4,4,2] input with a per-channel int8 filter [1,3,3,2] (scales 0.5/0.25, zero
    /// points 0/1) and a float bias.
    fn model_with_options(options: u8) -> Vec<u8> {
        let mut b = FlatBufferBuilder::new();
        // Buffers: [empty, filter, bias].
        let empty = table(&mut b, &[]);
        let q: Vec<u8> = (0..18).map(|i| (i as i8 - 9) as u8).collect();
        let q = b.create_vector(&q);
        let filter = table(&mut b, &[F::Off(Buffer::VT_DATA, off(q))]);
        let bias: Vec<u8> = [0.5f32, -0.25]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let bias = b.create_vector(&bias);
        let bias = table(&mut b, &[F::Off(Buffer::VT_DATA, off(bias))]);
        let buffers = b.create_vector(&[empty, filter, bias]);
        // Tensors.
        let specs: [(&[i32], &str, i8, u32, bool); 4] = [
            (&[1, 4, 4, 2], "input", 0, 0, false),
            (&[1, 3, 3, 2], "filter", 9, 1, true),
            (&[2], "bias", 0, 2, false),
            (&[1, 2, 4, 2], "output", 0, 0, false),
        ];
        let mut tensors = Vec::new();
        for (shape, name, ty, buffer, quant) in specs {
            let shape = b.create_vector(shape);
            let name = b.create_string(name);
            let mut fields = vec![
                F::Off(T::VT_SHAPE, off(shape)),
                F::I8(T::VT_TYPE, ty),
                F::U32(T::VT_BUFFER, buffer),
                F::Off(T::VT_NAME, off(name)),
            ];
            if quant {
                let scale = b.create_vector(&[0.5f32, 0.25]);
                let zp = b.create_vector(&[0i64, 1]);
                let q = table(
                    &mut b,
                    &[
                        F::Off(QuantizationParameters::VT_SCALE, off(scale)),
                        F::Off(QuantizationParameters::VT_ZERO_POINT, off(zp)),
                        F::I32(QuantizationParameters::VT_QUANTIZED_DIMENSION, 3),
                    ],
                );
                fields.push(F::Off(T::VT_QUANTIZATION, off(q)));
            }
            tensors.push(table(&mut b, &fields));
        }
        let tensors = b.create_vector(&tensors);
        // The operator and its options.
        type D<'a> = DepthwiseConv2DOptions<'a>;
        let dw = table(
            &mut b,
            &[
                F::I8(D::VT_PADDING, 0),
                F::I32(D::VT_STRIDE_W, 1),
                F::I32(D::VT_STRIDE_H, 2),
                F::I32(D::VT_DEPTH_MULTIPLIER, 1),
                F::I8(D::VT_FUSED_ACTIVATION_FUNCTION, 3),
            ],
        );
        let op_in = b.create_vector(&[0i32, 1, 2]);
        let op_out = b.create_vector(&[3i32]);
        let op = table(
            &mut b,
            &[
                F::U32(Op::VT_OPCODE_INDEX, 0),
                F::Off(Op::VT_INPUTS, off(op_in)),
                F::Off(Op::VT_OUTPUTS, off(op_out)),
                F::U8(Op::VT_BUILTIN_OPTIONS_TYPE, options),
                F::Off(Op::VT_BUILTIN_OPTIONS, off(dw)),
            ],
        );
        let ops = b.create_vector(&[op]);
        let sg_in = b.create_vector(&[0i32]);
        let sg_out = b.create_vector(&[3i32]);
        let sg = table(
            &mut b,
            &[
                F::Off(SubGraph::VT_TENSORS, off(tensors)),
                F::Off(SubGraph::VT_INPUTS, off(sg_in)),
                F::Off(SubGraph::VT_OUTPUTS, off(sg_out)),
                F::Off(SubGraph::VT_OPERATORS, off(ops)),
            ],
        );
        let sgs = b.create_vector(&[sg]);
        let code = table(
            &mut b,
            &[
                F::I8(OperatorCode::VT_DEPRECATED_BUILTIN_CODE, 4),
                F::I32(OperatorCode::VT_VERSION, 1),
                F::I32(OperatorCode::VT_BUILTIN_CODE, 4),
            ],
        );
        let codes = b.create_vector(&[code]);
        let description = b.create_string("tiny");
        let model = table(
            &mut b,
            &[
                F::U32(Model::VT_VERSION, 3),
                F::Off(Model::VT_OPERATOR_CODES, off(codes)),
                F::Off(Model::VT_SUBGRAPHS, off(sgs)),
                F::Off(Model::VT_DESCRIPTION, off(description)),
                F::Off(Model::VT_BUFFERS, off(buffers)),
            ],
        );
        b.finish(model, Some("TFL3"));
        b.finished_data().to_vec()
    }

    fn tiny_model() -> Vec<u8> {
        model_with_options(schema::options_type::DEPTHWISE_CONV_2D)
    }

    #[test]
    fn parses_a_tiny_model() {
        let m = TfliteModel::from_bytes(tiny_model(), "tiny").unwrap();
        assert_eq!(m.version, 3);
        assert_eq!(m.description.as_deref(), Some("tiny"));
        assert_eq!(m.tensors.len(), 4);
        assert_eq!(m.inputs, vec![0]);
        assert_eq!(m.outputs, vec![3]);
        assert_eq!(m.tensors[1].name, "filter");
        assert_eq!(m.tensors[1].shape, vec![1, 3, 3, 2]);
        assert_eq!(m.tensors[1].dtype, TensorType::Int8);
        let op = &m.operators[0];
        assert_eq!(op.op, BuiltinOp::DepthwiseConv2d);
        assert_eq!(op.version, 1);
        assert_eq!(op.inputs, vec![0, 1, 2]);
        assert_eq!(
            op.options,
            Options::DepthwiseConv2d {
                padding: Padding::Same,
                stride: (2, 1),
                dilation: (1, 1),
                depth_multiplier: 1,
                activation: Activation::Relu6,
            }
        );
        // Per channel along the last axis: channel 0 scale 0.5 zp 0, channel 1 scale 0.25 zp 1.
        let w = m.tensor_f32(1).unwrap();
        for (e, v) in w.iter().enumerate() {
            let q = (e as i32 - 9) as f32;
            let want = if e.is_multiple_of(2) {
                0.5 * q
            } else {
                0.25 * (q - 1.0)
            };
            assert_eq!(*v, want, "element {e}");
        }
        assert_eq!(m.tensor_f32(2).unwrap(), vec![0.5, -0.25]);
        assert!(m.tensor_f32(0).is_err());
        assert_eq!(m.producer(3), Some(0));
        assert_eq!(m.consumers(1), vec![0]);
    }

    /// A union type byte this reader does not decode: the options are `Other`, the value
    /// is neither verified nor read.
    #[test]
    fn undecoded_options_are_other() {
        let m = TfliteModel::from_bytes(model_with_options(99), "other.tflite").unwrap();
        assert_eq!(m.operators[0].options, Options::Other(99));
        // The same table under another decoded member's type: read as that member.
        let m =
            TfliteModel::from_bytes(model_with_options(schema::options_type::ADD), "add.tflite")
                .unwrap();
        assert_eq!(
            m.operators[0].options,
            Options::Add {
                activation: Activation::None
            }
        );
    }

    #[test]
    fn truncated_and_garbage_are_errors() {
        let good = tiny_model();
        for cut in [0, 3, 7, 8, 20, good.len() / 2, good.len() - 1] {
            let r = TfliteModel::from_bytes(good[..cut].to_vec(), "cut.tflite");
            let e = r.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("cut.tflite"), "cut at {cut}: {e}");
        }
        let text = b"index,mid,display_name\n0,/m/09x0r,Speech\n".to_vec();
        let e = TfliteModel::from_bytes(text, "map.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("map.csv") && e.contains("TFL3"), "{e}");
        // A valid identifier with garbage after it: the verifier refuses it.
        let mut garbage = vec![0xffu8; 64];
        garbage[4..8].copy_from_slice(b"TFL3");
        let e = TfliteModel::from_bytes(garbage, "g.tflite")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("g.tflite") && e.contains("FlatBuffer (64 bytes)"),
            "{e}"
        );
        // Corrupt each byte of the good file in turn: an error or a model, never a panic.
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                match TfliteModel::from_bytes(bad, "flip.tflite") {
                    Ok(m) => {
                        for k in 0..m.tensors.len() {
                            let _ = m.tensor_f32(k);
                            let _ = m.tensor_i64(k);
                        }
                    }
                    Err(e) => assert!(e.to_string().contains("flip.tflite"), "{e}"),
                }
            }
        }
    }
}
