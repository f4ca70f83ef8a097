//! Randomness the link needs: the boot id (random per process start) and jitter seeds.
//! Read from /dev/urandom; no crate for so little.

use std::io::Read;

/// Fill `buf` from /dev/urandom.
pub fn fill(buf: &mut [u8]) -> std::io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// A seed from the clock, the pid and std's per-process hash keys (when /dev/urandom fails).
pub fn weak_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

/// A new boot id: 128 random bits as 32 lowercase hex digits.
pub fn new_boot_id() -> String {
    let mut b = [0u8; 16];
    if fill(&mut b).is_err() {
        b[..8].copy_from_slice(&weak_seed().to_le_bytes());
        b[8..].copy_from_slice(&weak_seed().to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_ids_are_hex_and_differ() {
        let a = new_boot_id();
        let b = new_boot_id();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
