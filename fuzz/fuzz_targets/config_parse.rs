//! Fuzzes the keepalived.conf parser: any text must give a model or diagnostics, never a
//! panic, overflow or hang (CVE-2024-41184 was a keepalived parser underflow). Includes
//! are not followed: a fuzzed `include /**/*` would otherwise walk the filesystem.
#![no_main]

use std::path::Path;

use ha_agent::config::{parse_with, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let opts = Options {
            config_id: None,
            follow_includes: false,
        };
        let _ = parse_with(Path::new("fuzz.conf"), text, &opts);
    }
});
