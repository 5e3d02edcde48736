//! Pieces every stage's settings use: whether a neural encoder runs ([`Toggle`]) and the
//! error a stage's `validate()` gives for a value out of bounds ([`Invalid`]).
//!
//! Each stage owns its config type and checks it; `crate::config` only assembles the
//! sections and adds the file name to the error.

use serde::{Deserialize, Serialize};

/// Whether a neural encoder runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    /// Runs when its model files are present (`avsense models fetch`), else is skipped with a
    /// warning.
    #[default]
    Auto,
    /// Must run: the pipeline refuses to start without its model.
    On,
    /// Never runs.
    Off,
}

/// `[vad]` and the other neural encoders without settings of their own: on, off or auto.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderToggle {
    /// `auto` (default), `on` or `off`.
    pub mode: Toggle,
}

/// A setting with a value the runtime does not accept: the key (relative to its section,
/// e.g. `window`; the config adds the section and the file), the value found and what was
/// expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` = {value}: expected {expected}")]
pub struct Invalid {
    /// The key, dotted below the section (`durations[1]`).
    pub key: String,
    /// The value found, as written.
    pub value: String,
    /// What was expected.
    pub expected: String,
}

impl Invalid {
    /// An error for `key` holding `value`.
    pub fn new(
        key: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        Self {
            key: key.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// The same error with its key placed under `section` (`window` → `pipeline.window`).
    pub fn within(mut self, section: &str) -> Self {
        self.key = if self.key.is_empty() {
            section.to_string()
        } else {
            format!("{section}.{}", self.key)
        };
        self
    }
}

/// Checks zenoh endpoint lists (`listen`, `connect`): each like `tcp/127.0.0.1:7447`.
pub fn check_endpoints(lists: [(&str, &[String]); 2]) -> Result<(), Invalid> {
    for (k, list) in lists {
        for (i, e) in list.iter().enumerate() {
            check(
                e.contains('/') && !e.trim().is_empty(),
                &format!("{k}[{i}]"),
                format!("{e:?}"),
                "a zenoh endpoint such as \"tcp/127.0.0.1:7447\"",
            )?;
        }
    }
    Ok(())
}

/// `Ok` when `ok`, else an [`Invalid`] for `key`.
pub fn check(
    ok: bool,
    key: &str,
    value: impl std::fmt::Display,
    expected: &str,
) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(key, value, expected))
    }
}

/// A finite value within `[lo, hi]`.
pub fn in_range(v: f64, lo: f64, hi: f64) -> bool {
    v.is_finite() && (lo..=hi).contains(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nest_under_their_section() {
        let e = Invalid::new("window", 0, "> 0").within("pipeline");
        assert_eq!(e.to_string(), "`pipeline.window` = 0: expected > 0");
        assert!(check(true, "x", 1, "y").is_ok());
        assert!(!in_range(f64::NAN, 0.0, 1.0) && in_range(1.0, 0.0, 1.0));
    }
}
