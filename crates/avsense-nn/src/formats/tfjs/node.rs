//! The graph's nodes as the loader builds them and every other part reads them: name, op,
//! inputs, attributes; and the run's batch sizes. A leaf: it imports no other part of the
//! executor, so the loader, the passes, the op registry and the executor can all use it.

use base64::{STANDARD, URL_SAFE};

/// An op's index in the op registry (`ops::OPS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OpId(pub(super) u16);

/// The batch sizes a run needs besides the node's inputs: `Reshape` targets are baked for
/// the declared batch, and take the fed one instead.
#[derive(Clone, Copy)]
pub(super) struct Batch {
    /// Axis 0 of the (first) fed input.
    pub(super) fed: usize,
    /// Axis 0 of the first placeholder as declared (1 where it is free).
    pub(super) declared: usize,
    /// [`TfjsGraph::run_spatial`](super::TfjsGraph::run_spatial): the fed and the declared
    /// (height, width) of the first placeholder, when they differ; constant `ResizeBilinear`
    /// sizes scale by fed / declared.
    pub(super) spatial: Option<[(usize, usize); 2]>,
}

impl Batch {
    /// A constant resize size (`[height, width]`) for this run: scaled by fed / declared
    /// when the input's spatial size differs; None when the scaled size is not whole.
    pub(super) fn resize_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let Some([(fh, dh), (fw, dw)]) = self.spatial else {
            return Some((h, w));
        };
        let scale = |v: usize, fed: usize, declared: usize| {
            (declared > 0 && (v * fed).is_multiple_of(declared)).then(|| v * fed / declared)
        };
        Some((scale(h, fh, dh)?, scale(w, fw, dw)?))
    }
}

/// A graph node as the executor sees it.
pub(super) struct Node {
    pub(super) name: String,
    pub(super) op: String,
    /// Its op's entry in the op registry; `None`: not supported.
    pub(super) op_id: Option<OpId>,
    /// (producer node, output index) of each data input; control inputs are dropped.
    pub(super) inputs: Vec<(usize, usize)>,
    pub(super) attr: serde_json::Map<String, serde_json::Value>,
}

impl Node {
    fn attr(&self, key: &str) -> Option<&serde_json::Value> {
        self.attr.get(key)
    }

    /// A string attribute (`s`, base64 in the JSON).
    pub(super) fn attr_s(&self, key: &str) -> Option<String> {
        decode_text(self.attr(key)?.get("s")?.as_str()?)
    }

    /// An integer attribute (`i`).
    pub(super) fn attr_i(&self, key: &str) -> Option<i64> {
        json_i64(self.attr(key)?.get("i"))
    }

    /// A float attribute (`f`).
    pub(super) fn attr_f(&self, key: &str) -> Option<f64> {
        self.attr(key)?.get("f")?.as_f64()
    }

    /// A boolean attribute (`b`).
    pub(super) fn attr_b(&self, key: &str) -> Option<bool> {
        self.attr(key)?.get("b")?.as_bool()
    }

    /// A type attribute (`type`, such as `DT_FLOAT`).
    pub(super) fn attr_type(&self, key: &str) -> Option<&str> {
        self.attr(key)?.get("type")?.as_str()
    }

    fn attr_list(&self, key: &str, kind: &str) -> &[serde_json::Value] {
        self.attr(key)
            .and_then(|a| a.get("list"))
            .and_then(|l| l.get(kind))
            .and_then(|l| l.as_array())
            .map_or(&[], Vec::as_slice)
    }

    /// An integer list attribute (`list.i`); empty when absent.
    pub(super) fn attr_ints(&self, key: &str) -> Vec<i64> {
        self.attr_list(key, "i")
            .iter()
            .filter_map(|v| json_i64(Some(v)))
            .collect()
    }

    /// A string list attribute (`list.s`); empty when absent.
    pub(super) fn attr_strs(&self, key: &str) -> Vec<String> {
        self.attr_list(key, "s")
            .iter()
            .filter_map(|v| v.as_str())
            .filter_map(decode_text)
            .collect()
    }

    /// Whether the node's `data_format` is NCHW (TF's default, and so absent, is NHWC).
    pub(super) fn nchw(&self) -> bool {
        self.attr_s("data_format").as_deref() == Some("NCHW")
    }
}

/// TF's JSON writes int64 attributes as strings ("3") and int32 as numbers.
pub(super) fn json_i64(v: Option<&serde_json::Value>) -> Option<i64> {
    let v = v?;
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// A `bytes` field of the protobuf JSON as text: base64, standard or URL-safe alphabet
/// (proto3's JSON mapping accepts either), padded or not.
fn decode_text(s: &str) -> Option<String> {
    let bytes = base64::decode_config(s, STANDARD)
        .or_else(|_| base64::decode_config(s, URL_SAFE))
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// `name:k` → (`name`, k); a plain `name` is output 0.
pub(super) fn split_output(name: &str) -> (&str, usize) {
    match name.rsplit_once(':') {
        Some((n, k)) => match k.parse() {
            Ok(k) => (n, k),
            Err(_) => (name, 0),
        },
        None => (name, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_resize_sizes_scale_with_the_fed_input() {
        let b = |spatial| Batch {
            fed: 1,
            declared: 1,
            spatial,
        };
        // Declared 416², fed 416 wide × 256 high: a pyramid's 13/26/52 follow.
        let fed = b(Some([(256, 416), (416, 416)]));
        assert_eq!(fed.resize_size(26, 26), Some((16, 26)));
        assert_eq!(fed.resize_size(52, 52), Some((32, 52)));
        assert_eq!(fed.resize_size(13, 13), Some((8, 13)));
        // Not a whole number: refused; no spatial change: unchanged.
        assert_eq!(b(Some([(250, 416), (416, 416)])).resize_size(13, 13), None);
        assert_eq!(b(None).resize_size(13, 7), Some((13, 7)));
    }

    #[test]
    fn base64_attributes() {
        assert_eq!(decode_text("VkFMSUQ=").as_deref(), Some("VALID"));
        assert_eq!(decode_text("TkhXQw==").as_deref(), Some("NHWC"));
        assert_eq!(decode_text("U0FNRQ").as_deref(), Some("SAME"));
        // URL-safe alphabet: "??>" is "Pz8-" there, "Pz8+" in the standard one.
        assert_eq!(decode_text("Pz8-").as_deref(), Some("??>"));
        assert_eq!(decode_text("Pz8+").as_deref(), Some("??>"));
        assert_eq!(decode_text("not base64!"), None);
    }

    #[test]
    fn output_names() {
        assert_eq!(split_output("a/b"), ("a/b", 0));
        assert_eq!(split_output("a/b:1"), ("a/b", 1));
        assert_eq!(split_output("a:b"), ("a:b", 0));
    }
}
