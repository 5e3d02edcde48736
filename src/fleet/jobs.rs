//! `avsense submit` (jobs from files, globs and directories) and `avsense jobs` (their
//! states).

use super::{FleetConfig, FleetError, Job, JobRecord, JobState};
use async_nats::jetstream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// File name extensions a directory's media files have.
pub const MEDIA_EXTENSIONS: &[&str] = &[
    "mp4", "mkv", "mov", "avi", "webm", "ts", "m4v", "mpg", "mpeg", "flv", "wav", "mp3", "ogg",
    "flac", "m4a", "aac", "opus",
];

/// Whether `name` matches the wildcard `pattern` (`*` any run, `?` one character).
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic two-pointer match with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

fn media_in(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            media_in(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| MEDIA_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// The files an input names: itself (a file), its media files (a directory, recursively),
/// or the files its last component's wildcard matches (a glob); URIs pass as they are.
/// Paths come back absolute, as the workers must see them.
pub fn expand(input: &str) -> Result<Vec<String>, FleetError> {
    let bad = |reason: String| FleetError::Input {
        input: input.to_string(),
        reason,
    };
    if input.contains("://") {
        return Ok(vec![input.to_string()]);
    }
    let path = Path::new(input);
    let abs = |p: &Path| -> Result<String, FleetError> {
        std::fs::canonicalize(p)
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| bad(format!("{}: {e}", p.display())))
    };
    if path.is_file() {
        return Ok(vec![abs(path)?]);
    }
    if path.is_dir() {
        let mut found = Vec::new();
        media_in(path, &mut found).map_err(|e| bad(e.to_string()))?;
        if found.is_empty() {
            return Err(bad(format!(
                "no media files in the directory (extensions {})",
                MEDIA_EXTENSIONS.join(", ")
            )));
        }
        return found.iter().map(|p| abs(p)).collect();
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.contains(['*', '?']) {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| bad(format!("{}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| wildcard(name, n))
            })
            .collect();
        found.sort();
        if found.is_empty() {
            return Err(bad("the pattern matches no file".into()));
        }
        return found.iter().map(|p| abs(p)).collect();
    }
    Err(bad("no such file or directory".into()))
}

/// Puts one job per file of `inputs` on the site's queue (each with its state `pending`),
/// each over `range` (start, end in seconds; the whole file when both are `None`); returns
/// them in order.
pub async fn submit(
    fleet: &FleetConfig,
    inputs: &[String],
    pipeline: Option<&Path>,
    range: (Option<f64>, Option<f64>),
) -> Result<Vec<Job>, FleetError> {
    let (start, end) = range;
    if start.is_some_and(|s| !(s.is_finite() && s >= 0.0))
        || end.is_some_and(|e| !(e.is_finite() && e > start.unwrap_or(0.0)))
    {
        return Err(FleetError::Input {
            input: format!("--start {start:?} --end {end:?}"),
            reason: "a range is start ≥ 0 and end after start, in seconds".into(),
        });
    }
    let mut files = Vec::new();
    for i in inputs {
        files.extend(expand(i)?);
    }
    let pipeline = match pipeline {
        Some(p) => Some(
            std::fs::canonicalize(p)
                .map_err(|e| FleetError::Input {
                    input: p.display().to_string(),
                    reason: e.to_string(),
                })?
                .to_string_lossy()
                .into_owned(),
        ),
        None => None,
    };
    let js = fleet.connect().await?;
    let store = fleet.ensure(&js).await?;
    let subject = fleet.jobs_subject();
    let mut jobs = Vec::new();
    for input in files {
        let job = Job {
            id: super::job_id(),
            input,
            pipeline: pipeline.clone(),
            start,
            end,
        };
        store
            .put(
                &JobRecord::new(&job, JobState::Pending),
                Duration::from_secs(30),
            )
            .await
            .map_err(fleet.err(format!("job {}: state", job.id)))?;
        let payload = serde_json::to_vec(&job).map_err(|e| fleet.err("job json")(e.into()))?;
        let ack = js
            .send_publish(
                subject.clone(),
                jetstream::message::PublishMessage::build()
                    .payload(payload.into())
                    .message_id(&job.id),
            )
            .await
            .map_err(|e| fleet.err(format!("job {}: publish", job.id))(e.into()))?;
        ack.await
            .map_err(|e| fleet.err(format!("job {}: publish acknowledgement", job.id))(e.into()))?;
        jobs.push(job);
    }
    Ok(jobs)
}

/// Every job of the bucket.
pub async fn list(fleet: &FleetConfig) -> Result<Vec<JobRecord>, FleetError> {
    let js = fleet.connect().await?;
    let store = fleet.ensure(&js).await?;
    store.all().await.map_err(fleet.err("listing jobs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_a_shell() {
        assert!(wildcard("*.mp4", "a.mp4"));
        assert!(wildcard("seg_??.mp4", "seg_07.mp4"));
        assert!(!wildcard("seg_??.mp4", "seg_7.mp4"));
        assert!(wildcard("*", ""));
        assert!(wildcard("a*b*c", "axxbyyc"));
        assert!(!wildcard("a*b*c", "axxbyy"));
        assert!(!wildcard("*.mp4", "a.mkv"));
    }

    #[test]
    fn inputs_expand_to_absolute_media_files_or_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        for n in ["b.mp4", "a.MKV", "notes.txt"] {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/c.wav"), b"x").unwrap();
        let all = expand(d.path().to_str().unwrap()).unwrap();
        let names: Vec<&str> = all.iter().map(|p| p.rsplit('/').next().unwrap()).collect();
        assert_eq!(names, ["a.MKV", "b.mp4", "c.wav"]);
        assert!(all.iter().all(|p| p.starts_with('/')));
        let glob = format!("{}/*.mp4", d.path().display());
        assert_eq!(expand(&glob).unwrap().len(), 1);
        let e = expand(&format!("{}/*.avi", d.path().display()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("matches no file"), "{e}");
        let e = expand("/nowhere/x.mp4").unwrap_err().to_string();
        assert!(
            e.contains("/nowhere/x.mp4") && e.contains("no such file"),
            "{e}"
        );
        assert_eq!(expand("rtsp://cam/1").unwrap(), ["rtsp://cam/1"]);
    }
}
