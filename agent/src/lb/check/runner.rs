//! The checker task: every `delay_loop`, one round of attempts with keepalived's retry
//! rule, and a [`CheckEvent`] on the first verdict and on every change.
//!
//! ```text
//!  spawn(spec, tx) ──> task: [warmup] ─> round ─> sleep(delay_loop) ─> round ─> ...
//!                        round = attempt [─ delay_before_retry ─ attempt]...  (retry)
//!                        verdict changed? ──CheckEvent──> tx (unbounded, never blocks)
//! ```
//!
//! Retry rule (keepalived): a server that is up is declared down only after `retry + 1`
//! consecutive failed attempts, `delay_before_retry` apart; a server that is down comes
//! up on one successful attempt and is not retried while down. Every attempt is bounded
//! by `connect_timeout` (MISC_CHECK by `misc_timeout`, enforced by the script runner).
//! The task ends when the receiver is dropped, or when its handle is aborted.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::spec::{kind_name, CheckerSpec, Probe};
use super::{dns, http, misc, ping, tcp, udp, CheckEvent};

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Passing.
    pub up: bool,
    /// One line for logs and the event.
    pub detail: String,
    /// MISC_CHECK with `misc_dynamic`: the weight the script asked for.
    pub weight: Option<u32>,
}

impl Outcome {
    /// A pass.
    pub fn up(detail: impl Into<String>) -> Outcome {
        Outcome {
            up: true,
            detail: detail.into(),
            weight: None,
        }
    }
    /// A failure.
    pub fn down(detail: impl Into<String>) -> Outcome {
        Outcome {
            up: false,
            detail: detail.into(),
            weight: None,
        }
    }
}

/// One attempt of the probe, bounded in time.
pub async fn attempt(spec: &CheckerSpec) -> Outcome {
    if let Probe::Misc(m) = &spec.probe {
        // The script runner kills the process group at misc_timeout.
        return Box::pin(misc::probe(m)).await;
    }
    let t = &spec.target;
    // Each probe's future boxed on its own: one `async` over all of them would be as
    // large as the largest (the TLS probe, several KB) for every TCP connect too.
    let work: Pin<Box<dyn Future<Output = Outcome> + Send + '_>> = match &spec.probe {
        Probe::Tcp => Box::pin(tcp::probe(t)),
        Probe::Http(p) => Box::pin(http::probe(t, p)),
        Probe::Dns(p) => Box::pin(dns::probe(t, p, spec.connect_timeout)),
        Probe::Ping => Box::pin(ping::probe(t, spec.connect_timeout)),
        Probe::Udp(p) => Box::pin(udp::probe(t, p, spec.connect_timeout)),
        Probe::Misc(m) => Box::pin(misc::probe(m)),
    };
    match tokio::time::timeout(spec.connect_timeout, work).await {
        Ok(o) => o,
        Err(_) => Outcome::down(format!(
            "timeout after {}",
            fmt_duration(spec.connect_timeout)
        )),
    }
}

/// `5s`, `250ms`.
fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// One round: attempts under the retry rule, given whether the server is up now.
/// Returns the deciding outcome and its attempt's duration.
pub async fn round(spec: &CheckerSpec, currently_up: bool) -> (Outcome, Duration) {
    let attempts = if currently_up {
        spec.retry.saturating_add(1)
    } else {
        1
    };
    let mut n = 0;
    loop {
        n += 1;
        let start = Instant::now();
        let o = attempt(spec).await;
        let took = start.elapsed();
        if o.up || n >= attempts {
            return (o, took);
        }
        tracing::debug!(
            rs = %spec.rs.addr, port = spec.rs.port, checker = spec.index,
            detail = %o.detail, attempt = n, "check attempt failed, retrying"
        );
        tokio::time::sleep(spec.delay_before_retry).await;
    }
}

/// A random duration in `0..=max` (warmup), without a random-number crate.
fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    let r = h.finish();
    let micros = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(r % micros.saturating_add(1))
}

/// Start the checker task. It reports the first verdict, then every change of `up` (or
/// of the dynamic weight of MISC_CHECK with `misc_dynamic`, in `detail` as
/// `dynamic_weight=N`).
pub fn spawn(spec: CheckerSpec, tx: UnboundedSender<CheckEvent>) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(jitter(spec.warmup)).await;
        let kind = kind_name(spec.kind);
        let mut up = !spec.alpha;
        let mut last: Option<(bool, Option<u32>)> = None;
        loop {
            // Boxed: a round's future lives on the heap only while the check runs, not in
            // each of a thousand idle tasks (the probe inside is boxed per kind too).
            let (o, latency) = Box::pin(round(&spec, up)).await;
            up = o.up;
            crate::instrument::record_check_round(&spec.rs.vs, kind, o.up, latency);
            let state = (o.up, o.weight);
            if last != Some(state) {
                last = Some(state);
                let detail = match o.weight {
                    Some(w) => format!("{}; dynamic_weight={w}", o.detail),
                    None => o.detail,
                };
                tracing::debug!(
                    vs = %spec.rs.vs, rs = %spec.rs.addr, port = spec.rs.port,
                    checker = %kind, up = o.up, %detail, "checker verdict"
                );
                let ev = CheckEvent {
                    rs: spec.rs.clone(),
                    checker: spec.index,
                    kind,
                    up: o.up,
                    detail,
                    latency,
                };
                if tx.send(ev).is_err() {
                    return;
                }
            }
            tokio::time::sleep(spec.delay_loop).await;
        }
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::CheckerKind;
    use crate::lb::check::spec::Target;
    use crate::lb::check::RsKey;

    fn tcp_spec() -> CheckerSpec {
        CheckerSpec {
            rs: RsKey {
                vs: "192.0.2.10:80/TCP".into(),
                addr: "198.51.100.11".parse().unwrap(),
                port: 8000,
            },
            index: 0,
            kind: CheckerKind::Tcp,
            target: Target {
                connect: "198.51.100.11:8000".parse().unwrap(),
                bind: None,
            },
            connect_timeout: Duration::from_secs(1),
            retry: 1,
            delay_before_retry: Duration::from_secs(1),
            warmup: Duration::ZERO,
            delay_loop: Duration::from_secs(1),
            alpha: false,
            probe: Probe::Tcp,
        }
    }

    /// A thousand checkers may all be in a round at once (waiting out
    /// `delay_before_retry`): a round must not carry the largest probe's state (the TLS
    /// probe's, about 6 KB) when it runs a TCP connect.
    #[test]
    fn a_round_future_is_small() {
        let spec = tcp_spec();
        let round = round(&spec, true);
        let size = std::mem::size_of_val(&round);
        assert!(size < 1024, "a round's future is {size} bytes");
        let attempt = attempt(&spec);
        let size = std::mem::size_of_val(&attempt);
        assert!(size < 1024, "an attempt's future is {size} bytes");
    }
}
