//! `auth_hmac { }` of a vrrp_instance (keepalived 2.4.3): HMAC-SHA256 authentication of
//! adverts. Parsed and checked here into [`AuthHmac`]; the wire side is not active yet
//! (a `--check` note says so). Not here: the `authentication { }` block (build.rs).
//!
//! keepalived's rules: `key ID VALUE` with ID 1-255 unique, VALUE ASCII, `hex:HEX` or
//! `file:PATH` (the file holds what the inline value would, a trailing newline dropped,
//! and must not be readable by group or others), 32-64 bytes; `active_key ID` names a
//! defined key; `time_window` 1-300 s; `anti_replay time|monotonic`;
//! `mode enforce|permissive|receive-only` (strict mode needs enforce; checked by the caller).

use std::path::Path;
use std::time::Duration;

use super::build::{origin, Ctx};
use super::lexer::Loc;
use super::model::{AntiReplay, AuthHmac, HmacKey, HmacMode, HmacSecret};
use super::tree::Node;

/// Key length bounds in bytes.
const KEY_MIN: usize = 32;
const KEY_MAX: usize = 64;
/// `time_window` bounds in seconds, and the floor of a derived window.
const WINDOW_MAX: u64 = 300;
const WINDOW_FLOOR: u64 = 5;

/// `auth_hmac` as parsed, before the advert interval is known.
#[derive(Debug, Clone)]
pub(super) struct HmacDraft {
    /// Everything but a derived `time_window` (zero when unset).
    pub hmac: AuthHmac,
    /// `time_window` was written.
    pub window_set: bool,
    /// Where `auth_hmac` is.
    pub loc: Loc,
}

impl HmacDraft {
    /// The final value: an unset window with `anti_replay time` is 3 x the advert
    /// interval, within 5-300 s (keepalived).
    pub fn finish(mut self, advert: Duration) -> AuthHmac {
        if !self.window_set && self.hmac.anti_replay == AntiReplay::Time {
            let secs = (3 * advert.as_secs()).clamp(WINDOW_FLOOR, WINDOW_MAX);
            self.hmac.time_window = Duration::from_secs(secs);
        }
        self.hmac
    }
}

/// Parse an `auth_hmac { }` block; errors name the field and its line.
pub(super) fn parse(cx: &mut Ctx<'_>, block: &Node) -> Option<HmacDraft> {
    let mut hmac = AuthHmac {
        keys: Vec::new(),
        active_key: 0,
        time_window: Duration::ZERO,
        anti_replay: AntiReplay::Time,
        mode: HmacMode::Enforce,
        origin: origin(&block.loc),
    };
    let mut window_set = false;
    let mut active: Option<(u8, &Node)> = None;
    let errors_before = cx.errors.len();
    for n in block.children() {
        match n.name.as_str() {
            "key" => {
                if let Some(k) = key(cx, n) {
                    if let Some(first) = hmac.keys.iter().find(|f| f.id == k.id) {
                        cx.err(
                            n,
                            format!(
                                "auth_hmac: duplicate key id {} (first at line {})",
                                k.id, first.origin.line
                            ),
                        );
                    } else {
                        hmac.keys.push(k);
                    }
                }
            }
            "active_key" => {
                if let Some(id) = cx.int(n, 0, 1, 255) {
                    active = Some((id as u8, n));
                }
            }
            "time_window" => {
                if let Some(w) = cx.int(n, 0, 1, WINDOW_MAX as i64) {
                    hmac.time_window = Duration::from_secs(w as u64);
                    window_set = true;
                }
            }
            "anti_replay" => match cx.arg(n, 0) {
                Some("time") => hmac.anti_replay = AntiReplay::Time,
                Some("monotonic") => hmac.anti_replay = AntiReplay::Monotonic,
                Some(other) => cx.err(
                    n,
                    format!("auth_hmac anti_replay '{other}' must be time or monotonic"),
                ),
                None => {}
            },
            "mode" => match cx.arg(n, 0) {
                Some("enforce") => hmac.mode = HmacMode::Enforce,
                Some("permissive") => hmac.mode = HmacMode::Permissive,
                Some("receive-only") => hmac.mode = HmacMode::ReceiveOnly,
                Some(other) => cx.err(
                    n,
                    format!("auth_hmac mode '{other}' must be enforce, permissive or receive-only"),
                ),
                None => {}
            },
            _ => {}
        }
    }
    match active {
        Some((id, n)) if !hmac.keys.iter().any(|k| k.id == id) => {
            cx.err(n, format!("auth_hmac active_key {id} is not a defined key"))
        }
        Some((id, _)) => hmac.active_key = id,
        None => cx.err(
            block,
            "auth_hmac needs active_key (the key adverts are signed with)",
        ),
    }
    (cx.errors.len() == errors_before).then(|| HmacDraft {
        hmac,
        window_set,
        loc: block.loc.clone(),
    })
}

/// `key ID VALUE`.
fn key(cx: &mut Ctx<'_>, n: &Node) -> Option<HmacKey> {
    let id = cx.int(n, 0, 1, 255)? as u8;
    let Some(value) = n.arg(1) else {
        cx.err(n, "auth_hmac key needs an id and a value");
        return None;
    };
    let secret = match value.strip_prefix("file:") {
        Some(path) => match read_key_file(Path::new(path)) {
            Ok(text) => decode(&text),
            Err(e) => {
                cx.err(n, format!("auth_hmac key {id}: key file '{path}' {e}"));
                return None;
            }
        },
        None => decode(value),
    };
    let Some(secret) = secret else {
        cx.err(n, format!("auth_hmac key {id}: bad hex value"));
        return None;
    };
    if !(KEY_MIN..=KEY_MAX).contains(&secret.len()) {
        cx.err(
            n,
            format!(
                "auth_hmac key {id}: length {} not in range {KEY_MIN}-{KEY_MAX} bytes",
                secret.len()
            ),
        );
        return None;
    }
    Some(HmacKey {
        id,
        secret: HmacSecret(secret),
        origin: origin(&n.loc),
    })
}

/// `hex:HEX` to bytes, anything else as its ASCII bytes.
fn decode(s: &str) -> Option<Vec<u8>> {
    let Some(hex) = s.strip_prefix("hex:") else {
        return Some(s.as_bytes().to_vec());
    };
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

/// A key file: private to its owner, small, one value (a trailing newline dropped).
fn read_key_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err("is readable by group or others (chmod 600)".into());
    }
    // "hex:" and two digits per byte of the longest key, and some slack.
    let budget = (4 + KEY_MAX * 2 + 8) as u64;
    let text = super::lexer::read_bounded(path, budget)?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::parse_str;
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn conf(hmac: &str) -> String {
        format!(
            "vrrp_instance A {{\n interface eth0\n virtual_router_id 1\n advert_int 2\n virtual_ipaddress {{\n 192.0.2.1\n }}\n auth_hmac {{\n{hmac} }}\n}}\n"
        )
    }

    fn errors(hmac: &str) -> Vec<String> {
        match parse_str(Path::new("k.conf"), &conf(hmac)) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn parses_into_the_model_with_a_derived_window() {
        let l = parse_str(
            Path::new("k.conf"),
            &conf(&format!(
                "  key 1 {KEY}\n  key 2 hex:{}\n  active_key 2\n  mode permissive\n",
                "ab".repeat(32)
            )),
        )
        .unwrap();
        let h = l.config.vrrp_instances[0].auth_hmac.clone().unwrap();
        assert_eq!(h.keys.len(), 2);
        assert_eq!(h.keys[1].secret.0, vec![0xab; 32]);
        assert_eq!(h.active_key, 2);
        assert_eq!(h.mode, HmacMode::Permissive);
        // advert_int 2 -> 3 x 2 = 6 s.
        assert_eq!(h.time_window, Duration::from_secs(6));
        assert!(
            l.notes
                .iter()
                .any(|n| n.line == 8 && n.message.contains("'auth_hmac' parsed, not active yet")),
            "{:?}",
            l.notes
        );
        // The secret never shows in debug output.
        assert!(!format!("{h:?}").contains(KEY));
    }

    #[test]
    fn bad_values_name_the_field_and_line() {
        assert_eq!(
            errors("  key 1 short\n  active_key 1\n"),
            vec![
                "k.conf:9: auth_hmac key 1: length 5 not in range 32-64 bytes",
                "k.conf:10: auth_hmac active_key 1 is not a defined key"
            ]
        );
        assert_eq!(
            errors(&format!(
                "  key 1 {KEY}\n  key 1 {KEY}\n  active_key 1\n  time_window 301\n  anti_replay clock\n"
            )),
            vec![
                "k.conf:10: auth_hmac: duplicate key id 1 (first at line 9)",
                "k.conf:12: time_window 301 out of range 1-300",
                "k.conf:13: auth_hmac anti_replay 'clock' must be time or monotonic",
            ]
        );
        assert_eq!(
            errors(&format!("  key 1 {KEY}\n")),
            vec!["k.conf:8: auth_hmac needs active_key (the key adverts are signed with)"]
        );
        assert_eq!(
            errors("  key 1 hex:zz\n  active_key 1\n"),
            vec![
                "k.conf:9: auth_hmac key 1: bad hex value",
                "k.conf:10: auth_hmac active_key 1 is not a defined key"
            ]
        );
    }

    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vrrp.key");
        std::fs::write(&path, format!("{KEY}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let line = format!("  key 7 file:{}\n  active_key 7\n", path.display());
        let e = errors(&line);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("is readable by group or others"), "{e:?}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let l = parse_str(Path::new("k.conf"), &conf(&line)).unwrap();
        let h = l.config.vrrp_instances[0].auth_hmac.clone().unwrap();
        assert_eq!(h.keys[0].secret.0, KEY.as_bytes());
    }
}
