//! Property: any config the validator accepts runs a 2 s test source to its end, with the
//! work (windows, events) bounded by the config, and never panics; anything else is refused
//! with a one-line error naming the file. Values are drawn from the edges that broke runs
//! before (1e-9, NaN, infinities, negatives, huge) and from the ordinary ranges.
mod common;

use avsense::PipelineConfig;
use proptest::prelude::*;
use std::path::Path;

/// A number from the awkward edges (one time in seven) or an ordinary range.
fn number(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(-1.0),
        1 => Just(0.0),
        1 => Just(1e-9),
        1 => Just(1e-3),
        1 => Just(1e9),
        42 => lo..hi,
    ]
}

/// TOML for a float (TOML spells the special values `nan` and `inf`).
fn toml_f(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{v:e}")
    }
}

#[derive(Debug, Clone)]
struct Probe {
    window: f64,
    hop: f64,
    lateness: f64,
    speech_on: f64,
    speech_off: f64,
    min_silence: f64,
    sound_on: f64,
    sound_off: f64,
    sound_hangover: f64,
    motion_hangover: f64,
    capacity: i64,
}

/// `base × fraction` when both are plain numbers (a value tied to another, like the hop to
/// the window), else the awkward value itself.
fn scaled(base: f64, fraction: f64) -> f64 {
    if fraction.is_finite() && (0.0..=1.0).contains(&fraction) {
        base * fraction
    } else {
        fraction
    }
}

fn probe() -> impl Strategy<Value = Probe> {
    (
        (number(0.05, 3.0), number(0.02, 1.0), number(0.0, 5.0)),
        (number(0.05, 1.0), number(0.0, 1.0), number(0.0, 2.0)),
        (
            number(1.0, 30.0),
            number(0.0, 1.0),
            number(0.0, 3.0),
            number(0.0, 3.0),
        ),
        prop_oneof![1 => Just(0i64), 1 => Just(100_000), 8 => 1i64..64],
    )
        .prop_map(
            |(
                (window, hop, lateness),
                (speech_on, speech_off, min_silence),
                (sound_on, sound_off, sound_hangover, motion_hangover),
                capacity,
            )| Probe {
                window,
                hop: scaled(window, hop),
                lateness,
                speech_on,
                speech_off: scaled(speech_on, speech_off),
                min_silence,
                sound_on,
                sound_off: scaled(sound_on, sound_off),
                sound_hangover,
                motion_hangover,
                capacity,
            },
        )
}

fn toml(p: &Probe) -> String {
    format!(
        "[pipeline]\nwindow = {}\nhop = {}\nlateness = {}\n\
         [[source]]\nname = \"t\"\nkind = \"test\"\nduration = 2.0\ncapacity = {}\n\
         [speech]\non = {}\noff = {}\nmin_silence = {}\n\
         [sound]\non_db = {}\noff_db = {}\nhangover = {}\n\
         [motion]\nhangover = {}\n\
         [detector]\nmode = \"off\"\n[tagger]\nmode = \"off\"\n[speaker]\nmode = \"off\"\n",
        toml_f(p.window),
        toml_f(p.hop),
        toml_f(p.lateness),
        p.capacity,
        toml_f(p.speech_on),
        toml_f(p.speech_off),
        toml_f(p.min_silence),
        toml_f(p.sound_on),
        toml_f(p.sound_off),
        toml_f(p.sound_hangover),
        toml_f(p.motion_hangover),
    )
}

/// Runs `cases` probes; returns how many configs were accepted (and so ran).
fn check_probes(cases: u32) -> u32 {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let accepted = std::cell::Cell::new(0u32);
    // A fixed seed: the same probes on every run, so a failure reproduces.
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let result = runner.run(&probe(), |p| {
        let text = toml(&p);
        match PipelineConfig::parse(&text, Path::new("probe.toml")) {
            Err(e) => {
                let msg = e.to_string();
                if std::env::var_os("PROBE_DEBUG").is_some() {
                    eprintln!("refused: {msg}");
                }
                prop_assert!(msg.contains("probe.toml") && !msg.contains('\n'), "{msg}");
            }
            Ok(cfg) => {
                accepted.set(accepted.get() + 1);
                let out = common::run_ok(cfg, Path::new("probe.toml"));
                let s = &out.report.streams[0];
                prop_assert!(
                    (s.media_seconds - 2.0).abs() < 0.1,
                    "media {}",
                    s.media_seconds
                );
                // Windows: one per hop over the media, plus the ones overlapping its ends.
                let bound = (2.0 + p.window) / p.hop + 2.0;
                prop_assert!(
                    (s.align.windows as f64) <= bound,
                    "{} windows for hop {} window {} (bound {bound})",
                    s.align.windows,
                    p.hop,
                    p.window
                );
                prop_assert!(out.events.len() < 1000, "{} events", out.events.len());
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    accepted.get()
}

/// `PROPTEST_CASES` sets the number of probes (default 96).
#[test]
fn accepted_configs_run_and_stop_with_bounded_work() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96);
    let accepted = check_probes(cases);
    eprintln!("{accepted} of {cases} probes were accepted and ran");
    assert!(
        accepted >= cases / 10,
        "too few probes were valid configs to test the property: {accepted} of {cases}"
    );
}
