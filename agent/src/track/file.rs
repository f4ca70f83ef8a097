//! `track_file`: an integer read from a file, multiplied by the weight.
//!
//! keepalived reads up to 127 bytes and parses them with `strtol(buf, NULL, 0)`: leading
//! white space, an optional sign, `0x` hex or leading-`0` octal, digits up to the first
//! other character; no digits means 0, and so does a missing or empty file. A number
//! outside the 32-bit range (up to 2^31) is ignored (the previous value stays).
//! keepalived follows the file with inotify; this task polls it every
//! [`DEFAULT_POLL`] (cheap: one small read), so a change is seen within one poll.
//! `init_file [VALUE] [overwrite]` writes VALUE (default 0) at startup when the file is
//! missing, or always with `overwrite` (never on reload).

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::{Status, TrackerEvent, TrackerKind};
use crate::config::model::TrackFile;

/// How often a track file is read.
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);

/// `init_file [VALUE] [overwrite]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitFile {
    /// Value written.
    pub value: i64,
    /// Write even if the file exists.
    pub overwrite: bool,
}

/// A `track_file`, ready to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTracker {
    /// Name referenced by `track_file` in instances.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// `init_file`, if configured.
    pub init: Option<InitFile>,
    /// Poll period.
    pub poll: Duration,
}

impl FileTracker {
    /// From the config block (`init_file` is read from its raw statements); `None`
    /// without a `file`.
    pub fn from_config(t: &TrackFile) -> Option<FileTracker> {
        let init = t
            .other
            .iter()
            .rev()
            .find(|n| n.name == "init_file")
            .map(|n| {
                let mut init = InitFile {
                    value: 0,
                    overwrite: false,
                };
                for a in &n.args {
                    if a == "overwrite" {
                        init.overwrite = true;
                    } else if let Some(v) = parse_value(a.as_bytes()) {
                        init.value = v;
                    }
                }
                init
            });
        Some(FileTracker {
            name: t.name.clone(),
            path: t.file.clone()?,
            init,
            poll: DEFAULT_POLL,
        })
    }
}

/// keepalived's `strtol(buf, NULL, 0)` with its range check: `None` if out of range.
pub fn parse_value(buf: &[u8]) -> Option<i64> {
    let mut i = 0;
    while i < buf.len() && matches!(buf[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        i += 1;
    }
    let neg = match buf.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let (radix, start) = match (buf.get(i), buf.get(i + 1), buf.get(i + 2)) {
        (Some(b'0'), Some(b'x' | b'X'), Some(c)) if c.is_ascii_hexdigit() => (16, i + 2),
        (Some(b'0'), _, _) => (8, i),
        _ => (10, i),
    };
    let mut v: i64 = 0;
    for &c in &buf[start.min(buf.len())..] {
        let Some(d) = char::from(c).to_digit(radix) else {
            break;
        };
        v = v
            .saturating_mul(i64::from(radix))
            .saturating_add(i64::from(d));
    }
    let v = if neg { -v } else { v };
    (i64::from(i32::MIN)..=i64::from(i32::MAX) + 1)
        .contains(&v)
        .then_some(v)
}

/// Read a track file now: a missing or unreadable file is 0; `None` if the number is out
/// of range (keep the previous value).
pub fn read_value(path: &Path) -> Option<i64> {
    let mut buf = [0u8; 127];
    let n = match fs::File::open(path) {
        Ok(mut f) => f.read(&mut buf).unwrap_or(0),
        Err(_) => 0,
    };
    parse_value(&buf[..n])
}

/// Apply `init_file` (startup only): write the value if the file is missing or
/// `overwrite` is set; written to a temp file in the same directory then renamed, never
/// following a symlink.
pub fn init_file(path: &Path, init: InitFile) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(md) if !md.is_file() => {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file",
                path.display()
            )))
        }
        Ok(_) if !init.overwrite => return Ok(()),
        _ => {}
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let written = f
        .write_all(format!("{}\n", init.value).as_bytes())
        .and_then(|()| f.sync_all());
    drop(f);
    match written.and_then(|()| fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Start the polling task: it sends the first value at once, then every change.
pub fn spawn_file_tracker(t: FileTracker, tx: UnboundedSender<TrackerEvent>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Option<i64> = None;
        let mut tick = tokio::time::interval(t.poll.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let path = t.path.clone();
            let Ok(read) = tokio::task::spawn_blocking(move || read_value(&path)).await else {
                continue;
            };
            let Some(v) = read else {
                tracing::warn!(file = %t.path.display(), "track file value out of range, ignored");
                continue;
            };
            if last == Some(v) {
                continue;
            }
            last = Some(v);
            let ev = TrackerEvent {
                kind: TrackerKind::File,
                name: t.name.clone(),
                status: Status::Value(v),
                detail: format!("{} reads {v}", t.path.display()),
                run: None,
            };
            if tx.send(ev).is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol_table() {
        let cases: &[(&str, Option<i64>)] = &[
            ("", Some(0)),
            ("5", Some(5)),
            ("  -20\n", Some(-20)),
            ("+7x", Some(7)),
            ("0x1f", Some(31)),
            ("0X1F\n", Some(31)),
            ("010", Some(8)),
            ("09", Some(0)),
            ("0x", Some(0)),
            ("abc", Some(0)),
            ("12abc", Some(12)),
            ("- 5", Some(0)),
            ("2147483648", Some(2_147_483_648)),
            ("2147483649", None),
            ("-2147483648", Some(-2_147_483_648)),
            ("-2147483649", None),
            ("99999999999999999999999", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_value(input.as_bytes()), *want, "{input:?}");
        }
    }

    #[test]
    fn init_file_parsing() {
        let text = "track_file tf {\n file /run/ha-tf\n init_file 5 overwrite\n}\ntrack_file t2 {\n file /run/ha-t2\n init_file\n}\n";
        let cfg = crate::config::parse_str(Path::new("t.conf"), text)
            .unwrap()
            .config;
        let a = FileTracker::from_config(&cfg.track_files[0]).unwrap();
        assert_eq!(
            a.init,
            Some(InitFile {
                value: 5,
                overwrite: true
            })
        );
        let b = FileTracker::from_config(&cfg.track_files[1]).unwrap();
        assert_eq!(
            b.init,
            Some(InitFile {
                value: 0,
                overwrite: false
            })
        );
    }
}
