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
//! Nothing of TFLite's runtime is used; there is no Python at run time. Every offset in the
//! file is bounds-checked: a truncated or garbage file gives a [`TfliteError`] naming the
//! file, never a panic. The FlatBuffer layout follows TFLite's `schema.fbs` (field ids as
//! there; a table's vtable lists field offsets, absent fields take the schema's default).

use crate::ops::Padding;
use candle_core::{Device, Tensor};
use std::path::Path;

/// Errors of the TFLite reader: each names the file (or origin) and the part concerned.
#[derive(Debug, thiserror::Error)]
pub enum TfliteError {
    /// The file cannot be read.
    #[error("tflite {origin}: cannot read: {source}")]
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

/// A bounds-checked view of FlatBuffer bytes.
struct Fb<'a> {
    buf: &'a [u8],
}

/// A table: its position and its vtable's position.
#[derive(Clone, Copy)]
struct Table {
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

type FbResult<T> = Result<T, String>;

impl<'a> Fb<'a> {
    fn bytes(&self, pos: usize, len: usize) -> FbResult<&'a [u8]> {
        pos.checked_add(len)
            .and_then(|end| self.buf.get(pos..end))
            .ok_or_else(|| {
                format!(
                    "offset {pos} + {len} bytes is past the end of the file ({} bytes)",
                    self.buf.len()
                )
            })
    }
    fn u8(&self, pos: usize) -> FbResult<u8> {
        Ok(self.bytes(pos, 1)?[0])
    }
    fn u16(&self, pos: usize) -> FbResult<u16> {
        let b = self.bytes(pos, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, pos: usize) -> FbResult<u32> {
        let b = self.bytes(pos, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&self, pos: usize) -> FbResult<i32> {
        Ok(self.u32(pos)? as i32)
    }
    fn u64(&self, pos: usize) -> FbResult<u64> {
        let b = self.bytes(pos, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Follows a `uoffset_t` stored at `pos`.
    fn deref(&self, pos: usize) -> FbResult<usize> {
        let off = self.u32(pos)? as usize;
        let target = pos
            .checked_add(off)
            .ok_or_else(|| format!("offset overflow at {pos}"))?;
        if target >= self.buf.len() {
            return Err(format!(
                "offset at {pos} points to {target}, past the end of the file ({} bytes)",
                self.buf.len()
            ));
        }
        Ok(target)
    }

    fn table(&self, pos: usize) -> FbResult<Table> {
        let soff = i64::from(self.i32(pos)?);
        let vtable = pos as i64 - soff;
        if vtable < 0 || vtable as usize >= self.buf.len() {
            return Err(format!(
                "table at {pos} has its vtable outside the file ({vtable})"
            ));
        }
        let vtable = vtable as usize;
        let vlen = self.u16(vtable)? as usize;
        if vlen < 4 || vlen % 2 != 0 {
            return Err(format!("table at {pos}: bad vtable size {vlen}"));
        }
        self.bytes(vtable, vlen)?;
        let tlen = self.u16(vtable + 2)? as usize;
        self.bytes(pos, tlen.max(4))?;
        Ok(Table {
            pos,
            vtable,
            vtable_len: vlen,
        })
    }

    /// Position of field `id` of table `t`, if present.
    fn field(&self, t: Table, id: usize) -> FbResult<Option<usize>> {
        let slot = 4 + 2 * id;
        if slot + 2 > t.vtable_len {
            return Ok(None);
        }
        let off = self.u16(t.vtable + slot)? as usize;
        Ok((off != 0).then_some(t.pos + off))
    }

    fn field_u8(&self, t: Table, id: usize, default: u8) -> FbResult<u8> {
        self.field(t, id)?.map_or(Ok(default), |p| self.u8(p))
    }
    fn field_i8(&self, t: Table, id: usize, default: i8) -> FbResult<i8> {
        Ok(self.field_u8(t, id, default as u8)? as i8)
    }
    fn field_bool(&self, t: Table, id: usize) -> FbResult<bool> {
        Ok(self.field_u8(t, id, 0)? != 0)
    }
    fn field_i32(&self, t: Table, id: usize, default: i32) -> FbResult<i32> {
        self.field(t, id)?.map_or(Ok(default), |p| self.i32(p))
    }
    fn field_u32(&self, t: Table, id: usize, default: u32) -> FbResult<u32> {
        self.field(t, id)?.map_or(Ok(default), |p| self.u32(p))
    }
    fn field_u64(&self, t: Table, id: usize, default: u64) -> FbResult<u64> {
        self.field(t, id)?.map_or(Ok(default), |p| self.u64(p))
    }
    fn field_f32(&self, t: Table, id: usize, default: f32) -> FbResult<f32> {
        self.field(t, id)?
            .map_or(Ok(default.to_bits()), |p| self.u32(p))
            .map(f32::from_bits)
    }

    fn field_table(&self, t: Table, id: usize) -> FbResult<Option<Table>> {
        match self.field(t, id)? {
            Some(p) => Ok(Some(self.table(self.deref(p)?)?)),
            None => Ok(None),
        }
    }

    /// A vector field: (position of the first element, length), bounds-checked for
    /// `elem` bytes per element.
    fn field_vector(&self, t: Table, id: usize, elem: usize) -> FbResult<Option<(usize, usize)>> {
        let Some(p) = self.field(t, id)? else {
            return Ok(None);
        };
        let v = self.deref(p)?;
        let len = self.u32(v)? as usize;
        let bytes = len
            .checked_mul(elem)
            .ok_or_else(|| format!("vector at {v}: length {len} overflows"))?;
        self.bytes(v + 4, bytes)
            .map_err(|e| format!("vector at {v} of {len} elements: {e}"))?;
        Ok(Some((v + 4, len)))
    }

    fn field_string(&self, t: Table, id: usize) -> FbResult<Option<String>> {
        match self.field_vector(t, id, 1)? {
            Some((start, len)) => Ok(Some(
                String::from_utf8_lossy(self.bytes(start, len)?).into_owned(),
            )),
            None => Ok(None),
        }
    }

    fn field_i32s(&self, t: Table, id: usize) -> FbResult<Vec<i32>> {
        match self.field_vector(t, id, 4)? {
            Some((start, len)) => (0..len).map(|i| self.i32(start + 4 * i)).collect(),
            None => Ok(Vec::new()),
        }
    }

    fn field_f32s(&self, t: Table, id: usize) -> FbResult<Vec<f32>> {
        match self.field_vector(t, id, 4)? {
            Some((start, len)) => (0..len)
                .map(|i| self.u32(start + 4 * i).map(f32::from_bits))
                .collect(),
            None => Ok(Vec::new()),
        }
    }

    fn field_i64s(&self, t: Table, id: usize) -> FbResult<Vec<i64>> {
        match self.field_vector(t, id, 8)? {
            Some((start, len)) => (0..len)
                .map(|i| self.u64(start + 8 * i).map(|v| v as i64))
                .collect(),
            None => Ok(Vec::new()),
        }
    }

    fn field_tables(&self, t: Table, id: usize) -> FbResult<Vec<Table>> {
        match self.field_vector(t, id, 4)? {
            Some((start, len)) => (0..len)
                .map(|i| self.table(self.deref(start + 4 * i)?))
                .collect(),
            None => Ok(Vec::new()),
        }
    }
}

// Field ids, as in TFLite's schema.fbs.
mod field {
    pub const MODEL_VERSION: usize = 0;
    pub const MODEL_OPERATOR_CODES: usize = 1;
    pub const MODEL_SUBGRAPHS: usize = 2;
    pub const MODEL_DESCRIPTION: usize = 3;
    pub const MODEL_BUFFERS: usize = 4;
    pub const SUBGRAPH_TENSORS: usize = 0;
    pub const SUBGRAPH_INPUTS: usize = 1;
    pub const SUBGRAPH_OUTPUTS: usize = 2;
    pub const SUBGRAPH_OPERATORS: usize = 3;
    pub const TENSOR_SHAPE: usize = 0;
    pub const TENSOR_TYPE: usize = 1;
    pub const TENSOR_BUFFER: usize = 2;
    pub const TENSOR_NAME: usize = 3;
    pub const TENSOR_QUANTIZATION: usize = 4;
    pub const QUANT_SCALE: usize = 2;
    pub const QUANT_ZERO_POINT: usize = 3;
    pub const QUANT_DIMENSION: usize = 6;
    pub const BUFFER_DATA: usize = 0;
    pub const BUFFER_OFFSET: usize = 1;
    pub const BUFFER_SIZE: usize = 2;
    pub const OPCODE_DEPRECATED_BUILTIN: usize = 0;
    pub const OPCODE_CUSTOM: usize = 1;
    pub const OPCODE_VERSION: usize = 2;
    pub const OPCODE_BUILTIN: usize = 3;
    pub const OP_OPCODE_INDEX: usize = 0;
    pub const OP_INPUTS: usize = 1;
    pub const OP_OUTPUTS: usize = 2;
    pub const OP_OPTIONS_TYPE: usize = 3;
    pub const OP_OPTIONS: usize = 4;
}

// `BuiltinOptions` union types.
mod options_type {
    pub const CONV_2D: u8 = 1;
    pub const DEPTHWISE_CONV_2D: u8 = 2;
    pub const POOL_2D: u8 = 5;
    pub const FULLY_CONNECTED: u8 = 8;
    pub const SOFTMAX: u8 = 9;
    pub const CONCATENATION: u8 = 10;
    pub const ADD: u8 = 11;
    pub const RESHAPE: u8 = 17;
    pub const MUL: u8 = 21;
    pub const GATHER: u8 = 23;
    pub const REDUCER: u8 = 27;
}

fn padding(code: i8) -> FbResult<Padding> {
    match code {
        0 => Ok(Padding::Same),
        1 => Ok(Padding::Valid),
        c => Err(format!("unknown padding code {c}")),
    }
}

fn positive(v: i32, what: &str) -> FbResult<usize> {
    if v >= 1 {
        Ok(v as usize)
    } else {
        Err(format!("{what} must be ≥ 1, got {v}"))
    }
}

fn parse_options(fb: &Fb, ty: u8, t: Option<Table>) -> FbResult<Options> {
    let Some(t) = t else {
        return Ok(if ty == 0 {
            Options::None
        } else {
            Options::Other(ty)
        });
    };
    use options_type as o;
    Ok(match ty {
        o::CONV_2D => Options::Conv2d {
            padding: padding(fb.field_i8(t, 0, 0)?)?,
            stride: (
                positive(fb.field_i32(t, 2, 0)?, "stride_h")?,
                positive(fb.field_i32(t, 1, 0)?, "stride_w")?,
            ),
            activation: Activation::from_code(fb.field_i8(t, 3, 0)?),
            dilation: (
                positive(fb.field_i32(t, 5, 1)?, "dilation_h_factor")?,
                positive(fb.field_i32(t, 4, 1)?, "dilation_w_factor")?,
            ),
        },
        o::DEPTHWISE_CONV_2D => Options::DepthwiseConv2d {
            padding: padding(fb.field_i8(t, 0, 0)?)?,
            stride: (
                positive(fb.field_i32(t, 2, 0)?, "stride_h")?,
                positive(fb.field_i32(t, 1, 0)?, "stride_w")?,
            ),
            // 0 in old converters means 1 (TFLite's kernel infers it from the shapes).
            depth_multiplier: fb.field_i32(t, 3, 0)?.max(1) as usize,
            activation: Activation::from_code(fb.field_i8(t, 4, 0)?),
            dilation: (
                positive(fb.field_i32(t, 6, 1)?, "dilation_h_factor")?,
                positive(fb.field_i32(t, 5, 1)?, "dilation_w_factor")?,
            ),
        },
        o::POOL_2D => Options::Pool2d {
            padding: padding(fb.field_i8(t, 0, 0)?)?,
            stride: (
                positive(fb.field_i32(t, 2, 0)?, "stride_h")?,
                positive(fb.field_i32(t, 1, 0)?, "stride_w")?,
            ),
            filter: (
                positive(fb.field_i32(t, 4, 0)?, "filter_height")?,
                positive(fb.field_i32(t, 3, 0)?, "filter_width")?,
            ),
            activation: Activation::from_code(fb.field_i8(t, 5, 0)?),
        },
        o::FULLY_CONNECTED => Options::FullyConnected {
            activation: Activation::from_code(fb.field_i8(t, 0, 0)?),
            keep_num_dims: fb.field_bool(t, 2)?,
            asymmetric_quantize_inputs: fb.field_bool(t, 3)?,
        },
        o::SOFTMAX => Options::Softmax {
            beta: fb.field_f32(t, 0, 0.0)?,
        },
        o::CONCATENATION => Options::Concatenation {
            axis: fb.field_i32(t, 0, 0)?,
            activation: Activation::from_code(fb.field_i8(t, 1, 0)?),
        },
        o::ADD => Options::Add {
            activation: Activation::from_code(fb.field_i8(t, 0, 0)?),
        },
        o::MUL => Options::Mul {
            activation: Activation::from_code(fb.field_i8(t, 0, 0)?),
        },
        o::RESHAPE => Options::Reshape {
            new_shape: fb.field_i32s(t, 0)?,
        },
        o::GATHER => Options::Gather {
            axis: fb.field_i32(t, 0, 0)?,
            batch_dims: fb.field_i32(t, 1, 0)?,
        },
        o::REDUCER => Options::Reducer {
            keep_dims: fb.field_bool(t, 0)?,
        },
        other => Options::Other(other),
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
        if &bytes[4..8] != b"TFL3" {
            return Err(format(format!(
                "no TFLite file identifier: bytes 4..8 are {:?}, expected \"TFL3\"",
                String::from_utf8_lossy(&bytes[4..8])
            )));
        }
        let parsed = Self::parse(&Fb { buf: &bytes }).map_err(format)?;
        let (version, description, tensors, operators, inputs, outputs, buffers) = parsed;
        let model = Self {
            origin: origin.to_string(),
            bytes,
            version,
            description,
            tensors,
            operators,
            inputs,
            outputs,
            buffers,
        };
        model.check_tensors()?;
        Ok(model)
    }

    #[allow(clippy::type_complexity)]
    fn parse(
        fb: &Fb,
    ) -> FbResult<(
        u32,
        Option<String>,
        Vec<TensorInfo>,
        Vec<Operator>,
        Vec<usize>,
        Vec<usize>,
        Vec<std::ops::Range<usize>>,
    )> {
        use field as f;
        let root = fb.table(fb.deref(0)?)?;
        let version = fb.field_u32(root, f::MODEL_VERSION, 0)?;
        let description = fb.field_string(root, f::MODEL_DESCRIPTION)?;

        let mut buffers = Vec::new();
        for (i, b) in fb
            .field_tables(root, f::MODEL_BUFFERS)?
            .into_iter()
            .enumerate()
        {
            let range = match fb.field_vector(b, f::BUFFER_DATA, 1)? {
                Some((start, len)) => start..start + len,
                None => {
                    // Data outside the FlatBuffer (models > 2 GB): offset/size from the file start.
                    let offset = fb.field_u64(b, f::BUFFER_OFFSET, 0)?;
                    let size = fb.field_u64(b, f::BUFFER_SIZE, 0)?;
                    if offset > 1 {
                        let (o, s) = (offset as usize, size as usize);
                        fb.bytes(o, s)
                            .map_err(|e| format!("buffer {i} (external data): {e}"))?;
                        o..o + s
                    } else {
                        0..0
                    }
                }
            };
            buffers.push(range);
        }

        let mut codes = Vec::new();
        for c in fb.field_tables(root, f::MODEL_OPERATOR_CODES)? {
            let deprecated = fb.field_i8(c, f::OPCODE_DEPRECATED_BUILTIN, 0)?;
            let builtin = fb.field_i32(c, f::OPCODE_BUILTIN, 0)?;
            // As TFLite's GetBuiltinCode: the larger of the two fields.
            let code = builtin.max(i32::from(deprecated));
            codes.push((
                BuiltinOp::from_code(code),
                fb.field_string(c, f::OPCODE_CUSTOM)?,
                fb.field_i32(c, f::OPCODE_VERSION, 1)?,
            ));
        }

        let subgraphs = fb.field_tables(root, f::MODEL_SUBGRAPHS)?;
        let Some(&sg) = subgraphs.first() else {
            return Err("the model has no subgraph".into());
        };
        let mut tensors = Vec::new();
        for (i, t) in fb
            .field_tables(sg, f::SUBGRAPH_TENSORS)?
            .into_iter()
            .enumerate()
        {
            let shape = fb
                .field_i32s(t, f::TENSOR_SHAPE)?
                .into_iter()
                .map(|d| {
                    usize::try_from(d).map_err(|_| format!("tensor {i}: negative dimension {d}"))
                })
                .collect::<FbResult<Vec<_>>>()?;
            let buffer = fb.field_u32(t, f::TENSOR_BUFFER, 0)? as usize;
            if buffer >= buffers.len().max(1) {
                return Err(format!(
                    "tensor {i}: buffer index {buffer} out of range ({} buffers)",
                    buffers.len()
                ));
            }
            let quantization = match fb.field_table(t, f::TENSOR_QUANTIZATION)? {
                Some(q) => {
                    let scale = fb.field_f32s(q, f::QUANT_SCALE)?;
                    let zero_point = fb.field_i64s(q, f::QUANT_ZERO_POINT)?;
                    let dim = fb.field_i32(q, f::QUANT_DIMENSION, 0)?;
                    if scale.is_empty() {
                        None
                    } else {
                        Some(Quantization {
                            scale,
                            zero_point,
                            quantized_dimension: usize::try_from(dim).map_err(|_| {
                                format!("tensor {i}: negative quantized_dimension {dim}")
                            })?,
                        })
                    }
                }
                None => None,
            };
            tensors.push(TensorInfo {
                name: fb.field_string(t, f::TENSOR_NAME)?.unwrap_or_default(),
                shape,
                dtype: TensorType::from_code(fb.field_i8(t, f::TENSOR_TYPE, 0)?),
                buffer,
                quantization,
            });
        }
        let index = |v: i32, what: &str| -> FbResult<usize> {
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
        let inputs = fb
            .field_i32s(sg, f::SUBGRAPH_INPUTS)?
            .into_iter()
            .map(|v| index(v, "subgraph input"))
            .collect::<FbResult<Vec<_>>>()?;
        let outputs = fb
            .field_i32s(sg, f::SUBGRAPH_OUTPUTS)?
            .into_iter()
            .map(|v| index(v, "subgraph output"))
            .collect::<FbResult<Vec<_>>>()?;

        let mut operators = Vec::new();
        for (i, o) in fb
            .field_tables(sg, f::SUBGRAPH_OPERATORS)?
            .into_iter()
            .enumerate()
        {
            let ci = fb.field_u32(o, f::OP_OPCODE_INDEX, 0)? as usize;
            let Some((op, custom_code, version)) = codes.get(ci).cloned() else {
                return Err(format!(
                    "operator {i}: opcode index {ci} out of range ({} codes)",
                    codes.len()
                ));
            };
            let op_inputs = fb.field_i32s(o, f::OP_INPUTS)?;
            let op_outputs = fb.field_i32s(o, f::OP_OUTPUTS)?;
            for &v in &op_inputs {
                if v != -1 {
                    index(v, &format!("operator {i} ({op:?}) input"))?;
                }
            }
            for &v in &op_outputs {
                index(v, &format!("operator {i} ({op:?}) output"))?;
            }
            let ty = fb.field_u8(o, f::OP_OPTIONS_TYPE, 0)?;
            let table = fb.field_table(o, f::OP_OPTIONS)?;
            let options = parse_options(fb, ty, table)
                .map_err(|e| format!("operator {i} ({op:?}) options: {e}"))?;
            operators.push(Operator {
                op,
                custom_code,
                version,
                inputs: op_inputs,
                outputs: op_outputs,
                options,
            });
        }
        Ok((
            version,
            description,
            tensors,
            operators,
            inputs,
            outputs,
            buffers,
        ))
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
    use super::*;

    /// A top-down FlatBuffer writer for the tests: every object is written after the one
    /// that points to it (uoffset_t is unsigned), offsets are reserved and patched.
    struct W {
        buf: Vec<u8>,
    }

    #[derive(Clone, Copy)]
    enum V {
        U8(u8),
        I32(i32),
        /// An offset, patched later (its position is returned by `table`).
        Off,
    }

    impl W {
        fn new() -> Self {
            let mut buf = vec![0u8; 8];
            buf[4..8].copy_from_slice(b"TFL3");
            Self { buf }
        }
        fn align4(&mut self) {
            while self.buf.len() % 4 != 0 {
                self.buf.push(0);
            }
        }
        fn patch(&mut self, at: usize, target: usize) {
            let v = (target - at) as u32;
            self.buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        /// A table (vtable just before it); returns its position and the positions of its
        /// offset fields, in order.
        fn table(&mut self, fields: &[(usize, V)]) -> (usize, Vec<usize>) {
            self.align4();
            let nslots = fields.iter().map(|f| f.0 + 1).max().unwrap_or(0);
            let vt = self.buf.len();
            let vlen = 4 + 2 * nslots;
            self.buf.resize(vt + vlen, 0);
            self.align4();
            let table = self.buf.len();
            self.buf
                .extend_from_slice(&((table - vt) as i32).to_le_bytes());
            let mut slots = vec![0u16; nslots];
            let mut offs = Vec::new();
            for &(id, v) in fields {
                let here = self.buf.len();
                slots[id] = (here - table) as u16;
                match v {
                    V::U8(u) => self.buf.extend_from_slice(&[u, 0, 0, 0]),
                    V::I32(i) => self.buf.extend_from_slice(&i.to_le_bytes()),
                    V::Off => {
                        offs.push(here);
                        self.buf.extend_from_slice(&[0; 4]);
                    }
                }
            }
            let tlen = self.buf.len() - table;
            self.buf[vt..vt + 2].copy_from_slice(&(vlen as u16).to_le_bytes());
            self.buf[vt + 2..vt + 4].copy_from_slice(&(tlen as u16).to_le_bytes());
            for (i, s) in slots.iter().enumerate() {
                self.buf[vt + 4 + 2 * i..vt + 6 + 2 * i].copy_from_slice(&s.to_le_bytes());
            }
            (table, offs)
        }
        /// A vector of `n` offsets; returns its position and its slots.
        fn offsets(&mut self, n: usize) -> (usize, Vec<usize>) {
            self.align4();
            let p = self.buf.len();
            self.buf.extend_from_slice(&(n as u32).to_le_bytes());
            self.buf.resize(p + 4 + 4 * n, 0);
            (p, (0..n).map(|i| p + 4 + 4 * i).collect())
        }
        fn bytes(&mut self, elem_count: usize, data: &[u8]) -> usize {
            self.align4();
            let p = self.buf.len();
            self.buf
                .extend_from_slice(&(elem_count as u32).to_le_bytes());
            self.buf.extend_from_slice(data);
            p
        }
        fn i32s(&mut self, v: &[i32]) -> usize {
            let d: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            self.bytes(v.len(), &d)
        }
    }

    /// A one-op model: DEPTHWISE_CONV_2D (stride 2×1, SAME, RELU6) on a [1,4,4,2] input with
    /// a per-channel int8 filter [1,3,3,2] (scales 0.5/0.25, zero points 0/1) and a float
    /// bias.
    fn tiny_model() -> Vec<u8> {
        let mut w = W::new();
        // Model: version(0), operator_codes(1), subgraphs(2), buffers(4)
        let (model, mo) = w.table(&[(0, V::I32(3)), (1, V::Off), (2, V::Off), (4, V::Off)]);
        w.patch(0, model);
        let (codes, cs) = w.offsets(1);
        w.patch(mo[0], codes);
        // OperatorCode: deprecated_builtin_code(0), version(2), builtin_code(3)
        let (code, _) = w.table(&[(0, V::U8(4)), (2, V::I32(1)), (3, V::I32(4))]);
        w.patch(cs[0], code);
        let (sgs, ss) = w.offsets(1);
        w.patch(mo[1], sgs);
        // SubGraph: tensors(0), inputs(1), outputs(2), operators(3)
        let (sg, so) = w.table(&[(0, V::Off), (1, V::Off), (2, V::Off), (3, V::Off)]);
        w.patch(ss[0], sg);
        let (tv, ts) = w.offsets(4);
        w.patch(so[0], tv);
        let specs: [(&[i32], &str, i32, u8, bool); 4] = [
            (&[1, 4, 4, 2], "input", 0, 0, false),
            (&[1, 3, 3, 2], "filter", 1, 9, true),
            (&[2], "bias", 2, 0, false),
            (&[1, 2, 4, 2], "output", 0, 0, false),
        ];
        for (k, (shape, name, buffer, ty, quant)) in specs.into_iter().enumerate() {
            let mut fields = vec![
                (0, V::Off),
                (1, V::U8(ty)),
                (2, V::I32(buffer)),
                (3, V::Off),
            ];
            if quant {
                fields.push((4, V::Off));
            }
            let (t, to) = w.table(&fields);
            w.patch(ts[k], t);
            let p = w.i32s(shape);
            w.patch(to[0], p);
            let p = w.bytes(name.len(), name.as_bytes());
            w.patch(to[1], p);
            if quant {
                // QuantizationParameters: scale(2), zero_point(3), quantized_dimension(6)
                let (q, qo) = w.table(&[(2, V::Off), (3, V::Off), (6, V::I32(3))]);
                w.patch(to[2], q);
                let d: Vec<u8> = [0.5f32, 0.25]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect();
                let p = w.bytes(2, &d);
                w.patch(qo[0], p);
                let d: Vec<u8> = [0i64, 1].iter().flat_map(|x| x.to_le_bytes()).collect();
                let p = w.bytes(2, &d);
                w.patch(qo[1], p);
            }
        }
        let p = w.i32s(&[0]);
        w.patch(so[1], p);
        let p = w.i32s(&[3]);
        w.patch(so[2], p);
        let (ov, os) = w.offsets(1);
        w.patch(so[3], ov);
        // Operator: opcode_index(0), inputs(1), outputs(2), builtin_options_type(3), options(4)
        let (op, oo) = w.table(&[
            (0, V::I32(0)),
            (1, V::Off),
            (2, V::Off),
            (3, V::U8(2)),
            (4, V::Off),
        ]);
        w.patch(os[0], op);
        let p = w.i32s(&[0, 1, 2]);
        w.patch(oo[0], p);
        let p = w.i32s(&[3]);
        w.patch(oo[1], p);
        // DepthwiseConv2DOptions: padding(0), stride_w(1), stride_h(2), depth_multiplier(3),
        // fused_activation_function(4)
        let (dw, _) = w.table(&[
            (0, V::U8(0)),
            (1, V::I32(1)),
            (2, V::I32(2)),
            (3, V::I32(1)),
            (4, V::U8(3)),
        ]);
        w.patch(oo[2], dw);
        // Buffers: [empty, filter, bias]
        let (bv, bs) = w.offsets(3);
        w.patch(mo[2], bv);
        let (b0, _) = w.table(&[]);
        w.patch(bs[0], b0);
        let (b1, b1o) = w.table(&[(0, V::Off)]);
        w.patch(bs[1], b1);
        let q: Vec<u8> = (0..18).map(|i| (i as i8 - 9) as u8).collect();
        let p = w.bytes(18, &q);
        w.patch(b1o[0], p);
        let (b2, b2o) = w.table(&[(0, V::Off)]);
        w.patch(bs[2], b2);
        let d: Vec<u8> = [0.5f32, -0.25]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let p = w.bytes(8, &d);
        w.patch(b2o[0], p);
        w.buf
    }

    #[test]
    fn parses_a_tiny_model() {
        let m = TfliteModel::from_bytes(tiny_model(), "tiny").unwrap();
        assert_eq!(m.version, 3);
        assert_eq!(m.tensors.len(), 4);
        assert_eq!(m.inputs, vec![0]);
        assert_eq!(m.outputs, vec![3]);
        assert_eq!(m.tensors[1].name, "filter");
        assert_eq!(m.tensors[1].shape, vec![1, 3, 3, 2]);
        assert_eq!(m.tensors[1].dtype, TensorType::Int8);
        let op = &m.operators[0];
        assert_eq!(op.op, BuiltinOp::DepthwiseConv2d);
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
            let want = if e % 2 == 0 {
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
        // A valid identifier with garbage after it: every offset is checked.
        let mut garbage = vec![0xffu8; 64];
        garbage[4..8].copy_from_slice(b"TFL3");
        let e = TfliteModel::from_bytes(garbage, "g.tflite")
            .unwrap_err()
            .to_string();
        assert!(e.contains("g.tflite"), "{e}");
        // Corrupt each byte of the good file in turn: an error or a model, never a panic.
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                if let Ok(m) = TfliteModel::from_bytes(bad, "flip.tflite") {
                    for k in 0..m.tensors.len() {
                        let _ = m.tensor_f32(k);
                        let _ = m.tensor_i64(k);
                    }
                }
            }
        }
    }
}
