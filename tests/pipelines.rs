//! Every example config in `pipelines/` parses and validates (paths inside are resolved
//! relative to the file; the media they name need not exist for this check).

#[test]
fn every_example_pipeline_config_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("pipelines/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "toml") {
            avsense::PipelineConfig::load(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 7, "{n} configs");
}
