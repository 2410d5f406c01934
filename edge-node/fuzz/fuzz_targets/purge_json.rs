#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_node::fuzz::purge_json(data));
