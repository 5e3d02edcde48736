//! `avsense timeline`: a picture of an events file — per stream, lanes for motion, each
//! object track, speech, sounds (with their labels), off-screen sounds, active speakers,
//! fusion events and stream health on one time axis, with an arrow from each sound to the
//! track that made it. PNG (text through a system TrueType font) or SVG.
//!
//! ```text
//! lanes     events (JSON Lines, any schema-2 phases) → lanes per stream
//! picture   lanes → layout → shapes; the SVG writer
//! raster    shapes → pixels → PNG
//! ```

pub mod lanes;
pub mod picture;
pub mod raster;

use avsense::Event;
use std::path::{Path, PathBuf};

/// Why a timeline could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// The events file could not be read.
    #[error("timeline: cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not an avsense event.
    #[error(
        "timeline: {path}:{line}: not an avsense event (JSON Lines from `avsense run --events`)"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The file holds no event.
    #[error("timeline: {0} holds no event")]
    Empty(PathBuf),
    /// The output's extension is neither `.png` nor `.svg`.
    #[error("timeline: {0}: write a .png or an .svg")]
    Format(PathBuf),
    /// No font for a PNG's text.
    #[error("timeline: no TrueType font for the PNG's text (tried {}): install fonts-dejavu-core, pass --font FILE.ttf, or write an .svg", .tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NoFont {
        /// The places looked at.
        tried: Vec<PathBuf>,
    },
    /// A font file could not be read.
    #[error("timeline: cannot read the font {path}")]
    FontRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A font file is not a TrueType/OpenType font.
    #[error("timeline: {path} is not a TrueType/OpenType font: {reason}")]
    FontParse {
        /// The file.
        path: PathBuf,
        /// fontdue's reason.
        reason: String,
    },
    /// The picture could not be written.
    #[error("timeline: cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// PNG encoding failed.
    #[error("timeline: cannot write {path} as PNG")]
    Png {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: png::EncodingError,
    },
}

/// How to draw.
#[derive(Debug, Clone, Default)]
pub struct TimelineOptions {
    /// Width in pixels (default 1600).
    pub width: Option<u32>,
    /// A TrueType font for the PNG's text (default: a system sans font).
    pub font: Option<PathBuf>,
    /// Only this stream (default: every stream of the file).
    pub stream: Option<String>,
    /// The time axis, seconds (default: the events' span).
    pub from: Option<f64>,
    /// The time axis' end.
    pub to: Option<f64>,
}

/// Reads an events file (JSON Lines; blank lines skipped).
pub fn read_events(path: &Path) -> Result<Vec<Event>, TimelineError> {
    let text = std::fs::read_to_string(path).map_err(|source| TimelineError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| TimelineError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Lays out the events of `events_path` as [`TimelineOptions`] say.
pub fn layout_file(
    events_path: &Path,
    o: &TimelineOptions,
) -> Result<picture::Picture, TimelineError> {
    let mut events = read_events(events_path)?;
    if let Some(s) = &o.stream {
        events.retain(|e| &e.stream == s);
    }
    if events.is_empty() {
        return Err(TimelineError::Empty(events_path.to_path_buf()));
    }
    let mut t = lanes::timeline(&events);
    if o.from.is_some() || o.to.is_some() {
        let from = o.from.unwrap_or(t.span.0);
        let to = o.to.unwrap_or(t.span.1).max(from + 1e-3);
        t.span = (from, to);
    }
    let name = events_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let title = format!(
        "avsense timeline: {name} ({:.1}–{:.1} s)",
        t.span.0, t.span.1
    );
    Ok(picture::layout(
        &t,
        o.width.unwrap_or(1600).max(400),
        &title,
    ))
}

/// Draws the events of `events_path` into `out` (`.png` or `.svg`); returns the picture
/// (its size and lanes).
pub fn draw(
    events_path: &Path,
    out: &Path,
    o: &TimelineOptions,
) -> Result<picture::Picture, TimelineError> {
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext != "png" && ext != "svg" {
        return Err(TimelineError::Format(out.to_path_buf()));
    }
    // The font first: a missing one fails before any work.
    let fonts = match ext.as_str() {
        "png" => Some(raster::Fonts::find(o.font.as_deref())?),
        _ => None,
    };
    let p = layout_file(events_path, o)?;
    match fonts {
        Some(f) => raster::write_png(&raster::rasterise(&p, &f), out)?,
        None => {
            std::fs::write(out, picture::to_svg(&p)).map_err(|source| TimelineError::Write {
                path: out.to_path_buf(),
                source,
            })?
        }
    }
    Ok(p)
}
