#![no_main]
// An `[edge]` section (sites, rules, limits) as TOML, then its validation: every problem
// reported, never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(cfg) = toml::from_str::<edge_node::config::EdgeConfig>(s) {
            let _ = cfg.validate("edge");
        }
    }
});
