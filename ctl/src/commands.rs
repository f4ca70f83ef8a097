//! One async function per subcommand: build the request, call the manager, print the
//! answer through the pure renderers of `format`. Output goes to stdout, errors are
//! returned to `main`, which prints them and picks the exit code.

use std::io::Write;

use ha_common::time::wall_ms as now_ms;
use ha_proto::v1::{
    CommandReply, HistoryRequest, NodesRequest, RealServerRequest, RsAction, SetPriorityRequest,
    StatusReply, StatusRequest, SwitchoverRequest, VipChangeRequest, WatchRequest,
};

use crate::cli::{Cli, Command, HistoryArgs, Output, PriorityArg, RsOp, VipArg, VipOp};
use crate::client::{connect, Manager};
use crate::error::CtlError;
use crate::format;
use crate::reqid::new_request_id;
use crate::timespec::parse_time;

/// History page size asked of the manager.
const PAGE: u32 = 500;

/// Run the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CtlError> {
    // Local answers first: they need no manager.
    if let Command::Completion { shell } = cli.command {
        return completion(shell);
    }
    let (url, transport) = crate::cli::resolve(&cli.conn).map_err(CtlError::Usage)?;
    let timeout = cli.conn.timeout;
    if cli.verbose {
        eprintln!("hactl: manager {url}");
    }
    // Check local input before connecting, so usage errors never depend on the network.
    let history_filter = match &cli.command {
        Command::History(h) => Some(history_request(h, now_ms())?),
        _ => None,
    };
    let streaming = matches!(cli.command, Command::Watch { .. });
    let request_timeout = (!streaming).then_some(timeout);
    let output = cli.output;
    let view = |wide: bool| format::View {
        now_ms: now_ms(),
        wide,
    };
    if matches!(cli.command, Command::Version) {
        return version(&url, &transport, timeout, output).await;
    }
    // One deadline for the whole call: connect, TLS handshake and the request(s); a
    // stream (watch) is bounded only until it is connected.
    let deadline = tokio::time::Instant::now() + timeout;
    let mut m = connect(&url, &transport, timeout, request_timeout).await?;
    let work = async move {
        match cli.command {
            Command::Status {
                node,
                instance,
                json,
            } => {
                let reply = status(&mut m).await?;
                let reply = format::filter_status(reply, node.as_deref(), instance.as_deref())
                    .map_err(CtlError::Failed)?;
                match output.with_json_flag(json) {
                    Output::Json => print_json(&format::status_json(&reply)),
                    o => print(&format::render_status(&reply, view(o == Output::Wide))),
                }
            }
            Command::Nodes { json } => {
                let reply = m
                    .client
                    .nodes(NodesRequest {})
                    .await
                    .map_err(|s| m.err(&s))?
                    .into_inner();
                if output.with_json_flag(json) == Output::Json {
                    let nodes = reply.nodes.iter().map(format::node_json).collect();
                    print_json(&format::NodesJson { nodes })
                } else {
                    print(&format::render_nodes(&reply.nodes, now_ms()))
                }
            }
            Command::SetPriority {
                node,
                instance,
                priority,
                request_id,
            } => set_priority(&mut m, cli.verbose, &node, &instance, priority, request_id).await,
            Command::Vip { op } => {
                let (args, add) = match op {
                    VipOp::Add(a) => (a, true),
                    VipOp::Del(a) => (a, false),
                };
                vip(
                    &mut m,
                    cli.verbose,
                    &args.node,
                    &args.instance,
                    args.addr,
                    add,
                    args.request_id,
                )
                .await
            }
            Command::Rs { op } => rs(&mut m, cli.verbose, &op).await,
            Command::History(h) => {
                let req = history_filter.unwrap_or_default();
                let json = output.with_json_flag(h.json) == Output::Json;
                history(&mut m, req, h.limit, json).await
            }
            Command::Watch {
                node,
                instance,
                json,
            } => {
                let json = output.with_json_flag(json) == Output::Json;
                watch(&mut m, node, instance, json).await
            }
            Command::Switchover {
                instance,
                to,
                request_id,
            } => switchover(&mut m, cli.verbose, &instance, &to, request_id).await,
            // Answered above, before connecting.
            Command::Completion { .. } | Command::Version => Ok(()),
        }
    };
    if streaming {
        return work.await;
    }
    tokio::time::timeout_at(deadline, work)
        .await
        .unwrap_or_else(|_| {
            Err(CtlError::Failed(format!(
                "timed out: no answer from {url} within --timeout {}",
                crate::client::humantime(timeout)
            )))
        })
}

/// `hactl completion SHELL`: the script clap_complete makes from our own definition.
fn completion(shell: clap_complete::Shell) -> Result<(), CtlError> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "hactl", &mut buf);
    print(&String::from_utf8_lossy(&buf))
}

/// `hactl version`: ours, then the manager's from its status reply. An unreachable
/// manager still gets hactl's line printed, then exit 3.
async fn version(
    url: &str,
    transport: &crate::cli::Transport,
    timeout: std::time::Duration,
    output: Output,
) -> Result<(), CtlError> {
    let ours = env!("CARGO_PKG_VERSION");
    let manager = match connect(url, transport, timeout, Some(timeout)).await {
        Ok(mut m) => status(&mut m).await.map(|r| r.manager_version),
        Err(e) => Err(e),
    };
    let text = match &manager {
        Ok(v) => format::version_text(ours, Some(v), url),
        Err(_) => format::version_text(ours, None, url),
    };
    if output == Output::Json {
        print_json(&format::VersionJson {
            hactl: ours.to_string(),
            manager: manager.as_ref().ok().cloned(),
            manager_url: url.to_string(),
        })?;
    } else {
        print(&text)?;
    }
    manager.map(|_| ())
}

/// Write to stdout. A reader that went away (`hactl history | head`) is
/// [`CtlError::OutputClosed`]: a quiet exit 0, never "Broken pipe" or a panic (Rust
/// ignores SIGPIPE, so the write returns EPIPE).
fn print(s: &str) -> Result<(), CtlError> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CtlError::OutputClosed,
            _ => CtlError::Failed(format!("cannot write output: {e}")),
        })
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), CtlError> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| CtlError::Failed(format!("cannot encode JSON: {e}")))?;
    print(&format!("{s}\n"))
}

async fn status(m: &mut Manager) -> Result<StatusReply, CtlError> {
    let reply = m.client.status(StatusRequest {}).await;
    Ok(reply.map_err(|s| m.err(&s))?.into_inner())
}

/// The request id to use, printed with --verbose.
fn request_id(given: Option<String>, verbose: bool) -> String {
    let id = given.unwrap_or_else(new_request_id);
    if verbose {
        eprintln!("hactl: request id {id}");
    }
    id
}

/// A command reply with ok=false is a refusal (exit 1) carrying the manager's reason; an
/// ok reply with a reason (applied, but not persisted on the agent's disk) is done, and
/// the reason is printed as a warning.
fn check_reply(reply: &CommandReply, what: &str) -> Result<(), CtlError> {
    if reply.ok {
        if !reply.error.is_empty() {
            eprintln!("hactl: warning: {what}: {}", reply.error);
        }
        Ok(())
    } else if reply.error.is_empty() {
        Err(CtlError::Failed(format!("{what} refused")))
    } else {
        Err(CtlError::Failed(format!("{what} refused: {}", reply.error)))
    }
}

async fn set_priority(
    m: &mut Manager,
    verbose: bool,
    node: &str,
    instance: &str,
    priority: PriorityArg,
    given_id: Option<String>,
) -> Result<(), CtlError> {
    let id = request_id(given_id, verbose);
    // Best effort: the state before, to print "BACKUP -> MASTER, priority 100 -> 200".
    let before = status(m)
        .await
        .ok()
        .and_then(|s| format::find_instance(&s, node, instance).cloned());
    let reply = m
        .client
        .set_priority(SetPriorityRequest {
            request_id: id,
            node: node.to_string(),
            instance: instance.to_string(),
            priority: priority.wire(),
        })
        .await
        .map_err(|s| m.err(&s))?
        .into_inner();
    check_reply(&reply, &format!("set-priority {node} {instance}"))?;
    print(&format!(
        "{}\n",
        format::priority_result(node, instance, before.as_ref(), &reply)
    ))
}

async fn vip(
    m: &mut Manager,
    verbose: bool,
    node: &str,
    instance: &str,
    addr: VipArg,
    add: bool,
    given_id: Option<String>,
) -> Result<(), CtlError> {
    let id = request_id(given_id, verbose);
    let reply = m
        .client
        .vip_change(VipChangeRequest {
            request_id: id,
            node: node.to_string(),
            instance: instance.to_string(),
            addr: addr.to_string(),
            add,
        })
        .await
        .map_err(|s| m.err(&s))?
        .into_inner();
    let verb = if add { "add" } else { "del" };
    check_reply(&reply, &format!("vip {verb} {node} {instance} {addr}"))?;
    print(&format!(
        "{}\n",
        format::vip_result(node, instance, &addr.to_string(), add, &reply)
    ))
}

async fn switchover(
    m: &mut Manager,
    verbose: bool,
    instance: &str,
    to: &str,
    given_id: Option<String>,
) -> Result<(), CtlError> {
    let id = request_id(given_id, verbose);
    let before = status(m)
        .await
        .ok()
        .and_then(|s| format::find_instance(&s, to, instance).cloned());
    let reply = m
        .client
        .switchover(SwitchoverRequest {
            request_id: id,
            instance: instance.to_string(),
            to_node: to.to_string(),
        })
        .await
        .map_err(|s| m.err(&s))?
        .into_inner();
    check_reply(&reply, &format!("switchover {instance} to {to}"))?;
    print(&format!(
        "{}\n",
        format::priority_result(to, instance, before.as_ref(), &reply)
    ))
}

/// `rs add|del|weight|drain|reset`: one real-server override; prints the virtual server
/// after the change.
async fn rs(m: &mut Manager, verbose: bool, op: &RsOp) -> Result<(), CtlError> {
    let (args, action, weight) = op.parts();
    let wire = match op {
        RsOp::Add(_) => RsAction::RsAdd,
        RsOp::Del(_) => RsAction::RsDel,
        RsOp::Weight(_) => RsAction::RsWeight,
        RsOp::Drain(_) => RsAction::RsDrain,
        RsOp::Reset(_) => RsAction::RsReset,
    };
    let id = request_id(args.request_id.clone(), verbose);
    let rs = args.real_server;
    let reply = m
        .client
        .real_server(RealServerRequest {
            request_id: id,
            node: args.node.clone(),
            virtual_server: args.virtual_server.clone(),
            addr: rs.addr.to_string(),
            port: u32::from(rs.port),
            action: wire as i32,
            weight: u32::from(weight),
        })
        .await
        .map_err(|s| m.err(&s))?
        .into_inner();
    let what = format!("rs {action} {} {} {rs}", args.node, args.virtual_server);
    check_reply(&reply, &what)?;
    if args.json {
        print_json(&format::rs_result_json(&args.node, &reply))
    } else {
        print(&format::rs_result(
            &args.node,
            &args.virtual_server,
            action,
            &rs.to_string(),
            &reply,
        ))
    }
}

/// Build the history filter from the command line (usage errors for bad values).
pub fn history_request(h: &HistoryArgs, now: i64) -> Result<HistoryRequest, CtlError> {
    let kind = match &h.kind {
        Some(k) => format::parse_kind(k).map_err(CtlError::Usage)? as i32,
        None => 0,
    };
    let time = |t: &Option<String>| -> Result<i64, CtlError> {
        match t {
            Some(s) => parse_time(s, now).map_err(|e| CtlError::Usage(e.to_string())),
            None => Ok(0),
        }
    };
    let since_ms = time(&h.since)?;
    let until_ms = time(&h.until)?;
    if since_ms != 0 && until_ms != 0 && until_ms < since_ms {
        return Err(CtlError::Usage("--until is before --since".into()));
    }
    if h.limit == Some(0) {
        return Err(CtlError::Usage("--limit must be at least 1".into()));
    }
    Ok(HistoryRequest {
        node: h.node.clone().unwrap_or_default(),
        instance: h.instance.clone().unwrap_or_default(),
        kind,
        since_ms,
        until_ms,
        after_id: 0,
        limit: PAGE,
    })
}

async fn history(
    m: &mut Manager,
    mut req: HistoryRequest,
    limit: Option<u32>,
    json: bool,
) -> Result<(), CtlError> {
    let mut remaining = limit.map(|l| l as usize);
    let mut events = Vec::new();
    loop {
        if let Some(r) = remaining {
            req.limit = PAGE.min(u32::try_from(r).unwrap_or(PAGE));
        }
        let page = m
            .client
            .history(req.clone())
            .await
            .map_err(|s| m.err(&s))?
            .into_inner();
        let n = page.events.len();
        let take = remaining.map_or(n, |r| r.min(n));
        events.extend(page.events.into_iter().take(take));
        if let Some(r) = remaining.as_mut() {
            *r -= take;
        }
        // Stop at the last page, when the limit is reached, or if the cursor stalls.
        if page.next_after_id == 0 || remaining == Some(0) || page.next_after_id <= req.after_id {
            break;
        }
        req.after_id = page.next_after_id;
    }
    if json {
        let events = events.iter().map(format::event_json).collect();
        print_json(&format::HistoryJson { events })
    } else if events.is_empty() {
        print("no events\n")
    } else {
        let now = now_ms();
        let mut s = String::new();
        for e in &events {
            s.push_str(&format::event_line_at(e, now));
            s.push('\n');
        }
        print(&s)
    }
}

async fn watch(
    m: &mut Manager,
    node: Option<String>,
    instance: Option<String>,
    json: bool,
) -> Result<(), CtlError> {
    let mut stream = m
        .client
        .watch(WatchRequest {
            node: node.unwrap_or_default(),
            instance: instance.unwrap_or_default(),
        })
        .await
        .map_err(|s| m.err(&s))?
        .into_inner();
    loop {
        let next = tokio::select! {
            msg = stream.message() => msg,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match next {
            Ok(Some(e)) => {
                let line = if json {
                    serde_json::to_string(&format::event_json(&e))
                        .map_err(|e| CtlError::Failed(format!("cannot encode JSON: {e}")))?
                } else {
                    format::event_line(&e)
                };
                print(&format!("{line}\n"))?;
            }
            Ok(None) => return Err(CtlError::Failed("the manager ended the watch".into())),
            Err(s) => return Err(m.err(&s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> HistoryArgs {
        HistoryArgs {
            node: Some("lb2".into()),
            instance: None,
            kind: Some("transition".into()),
            since: Some("10m".into()),
            until: None,
            limit: None,
            json: true,
        }
    }

    #[test]
    fn history_filter_from_args() {
        let r = history_request(&args(), 1_000_000).unwrap();
        assert_eq!(r.node, "lb2");
        assert_eq!(r.kind, ha_proto::v1::EventKind::Transition as i32);
        assert_eq!(r.since_ms, 1_000_000 - 600_000);
        assert_eq!(r.until_ms, 0);
        assert_eq!(r.limit, PAGE);
    }

    #[test]
    fn history_filter_usage_errors() {
        let mut a = args();
        a.kind = Some("nope".into());
        assert_eq!(history_request(&a, 0).unwrap_err().exit_code(), 2);
        let mut a = args();
        a.since = Some("1h".into());
        a.until = Some("2h".into());
        assert!(history_request(&a, 10_000_000).is_err());
        let mut a = args();
        a.since = Some("last tuesday".into());
        assert_eq!(history_request(&a, 0).unwrap_err().exit_code(), 2);
    }
}
