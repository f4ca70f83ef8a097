//! Fuzzes the keepalived.conf parser: any text must give a model or diagnostics, never a
//! panic, overflow or hang (CVE-2024-41184 was a keepalived parser underflow).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ha_agent::config::parse_str(Path::new("fuzz.conf"), text);
    }
});
