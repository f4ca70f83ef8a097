//! The virtual-server runtime loop (`service::run`) end to end over channels, on an
//! in-memory data plane: checker events in, the desired table applied, status published,
//! history events out, and a clean shutdown that leaves nothing programmed.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ha_agent::lb::check::{CheckEvent, RsKey};
use ha_agent::lb::dataplane::reconcile::ReconcileTiming;
use ha_agent::lb::dataplane::{DataPlane, DataPlaneError, ObjectStatus, Service, Stats};
use ha_agent::lb::service::{self, LbEvent, LbStatus, ServiceInput};
use tokio::sync::{mpsc, watch};

/// Every table applied, shared with the test.
#[derive(Clone, Default)]
struct Mem(Arc<Mutex<Vec<Vec<Service>>>>);

impl DataPlane for Mem {
    fn name(&self) -> &'static str {
        "mem"
    }
    async fn apply(&mut self, desired: &[Service]) -> Result<Vec<ObjectStatus>, DataPlaneError> {
        self.0.lock().unwrap().push(desired.to_vec());
        Ok(Vec::new())
    }
    async fn read(&mut self) -> Result<Vec<Service>, DataPlaneError> {
        Ok(self.0.lock().unwrap().last().cloned().unwrap_or_default())
    }
    async fn stats(&mut self) -> Result<Vec<Stats>, DataPlaneError> {
        Ok(Vec::new())
    }
}

const CONF: &str = r#"
virtual_server 192.0.2.10 80 {
    lb_algo rr
    real_server 198.51.100.11 80 {
        weight 2
        TCP_CHECK {
        }
    }
    real_server 198.51.100.12 80 {
        weight 1
    }
}
"#;

/// Generous hang guard, not a timing assert.
const PATIENCE: Duration = Duration::from_secs(10);

async fn until(rx: &mut watch::Receiver<LbStatus>, f: impl Fn(&LbStatus) -> bool) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if f(&rx.borrow_and_update()) {
                return;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("status never matched");
}

#[tokio::test]
async fn checks_drive_the_table_and_shutdown_clears_it() {
    let cfg = ha_agent::config::parse_str(Path::new("k.conf"), CONF)
        .unwrap()
        .config;
    let mem = Mem::default();
    let (ck_tx, ck_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (st_tx, mut st_rx) = watch::channel(LbStatus::default());
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let runtime = service::run(
        &cfg,
        mem.clone(),
        ReconcileTiming::default(),
        ck_rx,
        in_rx,
        st_tx,
        Some(ev_tx),
    );
    let driver = async {
        until(&mut st_rx, |s| {
            s.virtual_servers
                .first()
                .is_some_and(|v| v.real_servers.iter().all(|r| r.in_table))
        })
        .await;
        // The checked server fails: it leaves the table; the other (no checker) stays.
        ck_tx
            .send(CheckEvent {
                rs: RsKey {
                    vs: "192.0.2.10:80/TCP".into(),
                    addr: "198.51.100.11".parse().unwrap(),
                    port: 80,
                },
                checker: 0,
                kind: "TCP_CHECK",
                up: false,
                detail: "connection refused".into(),
                latency: Duration::from_millis(1),
            })
            .unwrap();
        until(&mut st_rx, |s| {
            let v = &s.virtual_servers[0];
            !v.real_servers[0].in_table && v.real_servers[1].in_table && v.live_weight == 1
        })
        .await;
        let last = mem.0.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].destinations.len(), 1);
        assert_eq!(last[0].destinations[0].addr.to_string(), "198.51.100.12");
        // History saw the checker and the real server go down.
        let mut seen = Vec::new();
        while let Ok(e) = ev_rx.try_recv() {
            seen.push(e);
        }
        assert!(
            seen.iter()
                .any(|e| matches!(e, LbEvent::Checker { up: false, .. })),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .any(|e| matches!(e, LbEvent::RealServer { up: false, .. })),
            "{seen:?}"
        );
        in_tx.send(ServiceInput::Shutdown).unwrap();
    };
    tokio::time::timeout(PATIENCE, async { tokio::join!(runtime, driver) })
        .await
        .expect("runtime did not stop");
    // The last apply removed everything.
    assert_eq!(mem.0.lock().unwrap().last().unwrap().len(), 0);
}
