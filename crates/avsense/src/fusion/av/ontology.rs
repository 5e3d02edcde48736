//! The AudioSet → COCO ontology map (`models/fusion/ontology.toml`): which visible classes can
//! make which sounds. It gives the fusion graph's semantic-compatibility edge feature and the
//! `rules` fusion baseline. Kept as data so users can extend it; validated against YAMNet's
//! class list and the detector's COCO-80 names when loaded.

use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The map shipped with avsense (the file in `models/fusion/`), compiled in so the binary
/// works from any directory.
pub const DEFAULT_ONTOLOGY: &str = include_str!("../../../../../models/fusion/ontology.toml");

/// Errors of loading the ontology map.
#[derive(Debug, thiserror::Error)]
pub enum OntologyError {
    /// The file could not be read.
    #[error("ontology {path}: cannot read")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Malformed TOML or an unknown key.
    #[error("ontology {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message.
        message: String,
    },
    /// An entry names a class the models do not have, or has a bad weight.
    #[error("ontology {path}: map[{index}]: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The `[[map]]` entry (0-based).
        index: usize,
        /// What is wrong and what was expected.
        what: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    map: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    coco: Vec<String>,
    audioset: Vec<String>,
    #[serde(default = "one")]
    weight: f32,
}

fn one() -> f32 {
    1.0
}

/// Compatibility of AudioSet classes (by YAMNet index) with COCO classes (by id).
#[derive(Debug, Clone, Default)]
pub struct Ontology {
    /// (audioset index, coco id) → weight in (0, 1]; the largest when listed twice.
    pairs: HashMap<(usize, usize), f32>,
    /// AudioSet indices that some visible class can make.
    mapped: Vec<bool>,
}

impl Ontology {
    /// Parses `text` (named `path` in errors), checking every AudioSet name against
    /// `audioset_names` (YAMNet's display names, in index order) and every COCO name against
    /// the detector's classes.
    pub fn parse(
        text: &str,
        path: &Path,
        audioset_names: &[String],
    ) -> Result<Self, OntologyError> {
        let file: File = toml::from_str(text).map_err(|e| OntologyError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        let index: HashMap<&str, usize> = audioset_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut out = Ontology {
            pairs: HashMap::new(),
            mapped: vec![false; audioset_names.len()],
        };
        for (i, e) in file.map.iter().enumerate() {
            let bad = |what: String| OntologyError::Invalid {
                path: path.to_path_buf(),
                index: i,
                what,
            };
            if !(e.weight > 0.0 && e.weight <= 1.0) {
                return Err(bad(format!(
                    "weight = {}: expected 0 < weight ≤ 1",
                    e.weight
                )));
            }
            if e.coco.is_empty() || e.audioset.is_empty() {
                return Err(bad("expected non-empty `coco` and `audioset` lists".into()));
            }
            let mut cocos = Vec::new();
            for c in &e.coco {
                cocos.push(avsense_nn::models::coco::id(c).ok_or_else(|| {
                    bad(format!(
                        "COCO class {c:?} is not one of the detector's 80 classes"
                    ))
                })?);
            }
            for a in &e.audioset {
                let ai = *index.get(a.as_str()).ok_or_else(|| {
                    bad(format!(
                        "AudioSet class {a:?} is not one of YAMNet's {} display names",
                        audioset_names.len()
                    ))
                })?;
                out.mapped[ai] = true;
                for c in &cocos {
                    let w = out.pairs.entry((ai, *c)).or_insert(0.0);
                    *w = w.max(e.weight);
                }
            }
        }
        Ok(out)
    }

    /// Reads and parses a map file.
    pub fn load(path: &Path, audioset_names: &[String]) -> Result<Self, OntologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| OntologyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, audioset_names)
    }

    /// The map shipped with avsense.
    pub fn builtin(audioset_names: &[String]) -> Result<Self, OntologyError> {
        Self::parse(
            DEFAULT_ONTOLOGY,
            Path::new("models/fusion/ontology.toml"),
            audioset_names,
        )
    }

    /// How compatible AudioSet class `audioset` is with COCO class `coco` (0: not listed).
    pub fn weight(&self, audioset: usize, coco: usize) -> f32 {
        self.pairs.get(&(audioset, coco)).copied().unwrap_or(0.0)
    }

    /// Semantic compatibility of a sound (AudioSet scores, by index) with a COCO class:
    /// `Σ_a score_a · weight(a, class) / Σ_a score_a` over the classes some visible thing can
    /// make — 0 when none of the sound's mass is on such classes.
    pub fn compatibility(&self, scores: &[f32], coco: usize) -> f32 {
        let mut num = 0.0f32;
        let mut den = 0.0f32;
        for (a, s) in scores.iter().enumerate() {
            if self.mapped.get(a).copied().unwrap_or(false) {
                den += s;
                num += s * self.weight(a, coco);
            }
        }
        if den > 1e-6 {
            num / den
        } else {
            0.0
        }
    }

    /// Number of (AudioSet, COCO) pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["Speech", "Bark", "Telephone", "Music", "Door"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn parses_and_scores_compatibility() {
        let text = "[[map]]\ncoco = [\"person\"]\naudioset = [\"Speech\"]\n\
                    [[map]]\ncoco = [\"person\"]\nweight = 0.5\naudioset = [\"Door\"]\n\
                    [[map]]\ncoco = [\"dog\"]\naudioset = [\"Bark\"]\n";
        let o = Ontology::parse(text, Path::new("o.toml"), &names()).unwrap();
        let person = avsense_nn::models::coco::id("person").unwrap();
        let dog = avsense_nn::models::coco::id("dog").unwrap();
        assert_eq!(o.weight(0, person), 1.0);
        assert_eq!(o.weight(4, person), 0.5);
        assert_eq!(o.weight(1, person), 0.0);
        // Speech 0.6 + Bark 0.2 (+ Music 0.4, which nothing visible makes: ignored).
        let scores = [0.6, 0.2, 0.0, 0.4, 0.0];
        assert!((o.compatibility(&scores, person) - 0.75).abs() < 1e-6);
        assert!((o.compatibility(&scores, dog) - 0.25).abs() < 1e-6);
        assert_eq!(o.compatibility(&[0.0, 0.0, 0.0, 0.9, 0.0], person), 0.0);
    }

    #[test]
    fn unknown_names_are_errors_that_name_file_entry_and_class() {
        let bad_coco = "[[map]]\ncoco = [\"persn\"]\naudioset = [\"Speech\"]\n";
        let e = Ontology::parse(bad_coco, Path::new("o.toml"), &names())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("o.toml") && e.contains("map[0]") && e.contains("\"persn\""),
            "{e}"
        );
        let bad_as = "[[map]]\ncoco = [\"dog\"]\naudioset = [\"Barking\"]\n";
        let e = Ontology::parse(bad_as, Path::new("o.toml"), &names())
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"Barking\"") && e.contains("YAMNet"), "{e}");
        let bad_w = "[[map]]\ncoco = [\"dog\"]\nweight = 2.0\naudioset = [\"Bark\"]\n";
        assert!(Ontology::parse(bad_w, Path::new("o.toml"), &names()).is_err());
    }

    /// The shipped map names only classes YAMNet and the detector have.
    #[test]
    fn builtin_map_is_valid_against_yamnet_names() {
        let csv = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/cache/yamnet/yamnet_class_map.csv");
        let Ok(text) = std::fs::read_to_string(&csv) else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{} missing under CI=true", csv.display());
            }
            eprintln!("SKIP: {} not fetched", csv.display());
            return;
        };
        let names: Vec<String> = text
            .lines()
            .skip(1)
            .filter_map(|l| {
                // index,mid,display_name (the name may be quoted and hold commas)
                let rest = l.splitn(3, ',').nth(2)?;
                Some(rest.trim_matches('"').to_string())
            })
            .collect();
        assert_eq!(names.len(), 521);
        let o = Ontology::builtin(&names).unwrap();
        assert!(o.len() > 150, "{} pairs", o.len());
    }
}
