//! keepalived.conf keyword table and the check that every statement is known.
//!
//! Every keyword keepalived 2.2 accepts is listed in the block where it accepts it, found
//! by running `keepalived -t` 2.2.7 on every candidate string of its binary in every block
//! and checked against the keepalived.conf(5) man page. Beyond 2.2.7: `v3_checksum_as_v2`
//! and `no_virtual_ipaddress` (2.2.8), `vrrp_ipsets` (builds with ipset support), and the
//! keepalived 2.4.3 additions (`auth_hmac { }`, `owner_ignore_adverts`,
//! `vrrp_delay_after_boot`, the `*_dump_file` paths, ...). `tests/tests/keepalived_keywords.rs`
//! reads every `install_keyword*` call of the 2.4.3 source and fails on one missing here.
//! Each keyword is in one of three classes:
//! - [`Support::Active`]: ha-agent implements it now;
//! - [`Support::Later`]: parsed into the model, not active yet (a `--check` note);
//! - [`Support::NoEffect`]: accepted for compatibility, ha-agent will not do it (a note).
//!
//! A keyword keepalived does not know is an error `unknown keyword 'x' in <block>`.

use super::tree::Node;
use super::Diagnostic;

/// What ha-agent does with a keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Implemented now.
    Active,
    /// Parsed into the model, not active yet.
    Later,
    /// Accepted, has no effect in ha-agent.
    NoEffect,
}

/// The syntax of a keyword.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// `keyword args...`
    Leaf,
    /// `keyword args... { keywords of the given block }`
    Block(&'static Block),
    /// `keyword args... { free-form value lines }` (addresses, names, ...).
    Values,
}

/// One keyword of a block.
#[derive(Debug, Clone, Copy)]
pub struct Kw {
    /// The keyword.
    pub name: &'static str,
    /// What ha-agent does with it.
    pub support: Support,
    /// Its syntax.
    pub shape: Shape,
}

/// A block and the keywords it accepts.
#[derive(Debug)]
pub struct Block {
    /// Name used in messages (`unknown keyword 'x' in <name>`).
    pub name: &'static str,
    /// Keyword lists (several, so blocks can share common lists).
    pub keywords: &'static [&'static [Kw]],
}

impl Block {
    /// The keyword `name` in this block.
    pub fn lookup(&self, name: &str) -> Option<&'static Kw> {
        self.keywords
            .iter()
            .flat_map(|l| l.iter())
            .find(|k| k.name == name)
    }
}

use Support::{Active as A, Later as L, NoEffect as X};

const fn kw(name: &'static str, support: Support) -> Kw {
    Kw {
        name,
        support,
        shape: Shape::Leaf,
    }
}
const fn blk(name: &'static str, support: Support, b: &'static Block) -> Kw {
    Kw {
        name,
        support,
        shape: Shape::Block(b),
    }
}
const fn vals(name: &'static str, support: Support) -> Kw {
    Kw {
        name,
        support,
        shape: Shape::Values,
    }
}

/// The top level of the file.
pub static ROOT: Block = Block {
    name: "top level",
    keywords: &[&[
        blk("global_defs", A, &GLOBAL_DEFS),
        blk("vrrp_instance", A, &VRRP_INSTANCE),
        blk("vrrp_script", A, &VRRP_SCRIPT),
        blk("vrrp_track_file", A, &TRACK_FILE),
        blk("track_file", A, &TRACK_FILE),
        blk("vrrp_track_process", A, &TRACK_PROCESS),
        blk("vrrp_sync_group", A, &SYNC_GROUP),
        blk("garp_group", L, &GARP_GROUP),
        blk("virtual_server", A, &VIRTUAL_SERVER),
        vals("virtual_server_group", A),
        blk("bfd_instance", L, &BFD_INSTANCE),
        blk("SSL", L, &SSL),
        vals("static_ipaddress", L),
        vals("static_routes", L),
        vals("static_rules", L),
        vals("linkbeat_interfaces", L),
        blk("track_group", L, &TRACK_GROUP),
        kw("linkbeat_use_polling", L),
        kw("interface_up_down_delays", L),
        kw("net_namespace", L),
        kw("net_namespace_ipvs", L),
        kw("namespace_with_ipsets", L),
        kw("instance", X),
        kw("use_pid_dir", X),
        kw("child_wait_time", X),
    ]],
};

/// `global_defs { }`.
pub static GLOBAL_DEFS: Block = Block {
    name: "global_defs",
    keywords: &[&[
        kw("router_id", A),
        kw("vrrp_version", A),
        kw("vrrp_garp_master_delay", A),
        kw("vrrp_garp_master_repeat", A),
        kw("vrrp_garp_master_refresh", A),
        kw("vrrp_garp_master_refresh_repeat", A),
        kw("vrrp_garp_lower_prio_delay", A),
        kw("vrrp_garp_lower_prio_repeat", A),
        kw("vrrp_garp_interval", A),
        kw("vrrp_gna_interval", A),
        kw("vrrp_min_garp", A),
        kw("script_user", A),
        kw("enable_script_security", A),
        kw("vrrp_check_unicast_src", A),
        kw("v3_checksum_as_v2", A),
        kw("vrrp_strict", A),
        kw("vrrp_skip_check_adv_addr", A),
        kw("vrrp_higher_prio_send_advert", A),
        kw("vrrp_lower_prio_no_advert", A),
        kw("vrrp_mcast_group4", A),
        kw("vrrp_mcast_group6", A),
        // VRRP features for later issues.
        kw("vrrp_startup_delay", A),
        kw("vrrp_delay_after_boot", A),
        kw("vrrp_owner_ignore_adverts", A),
        // Where the SIGUSR1 / JSON / SIGUSR2 dumps go.
        kw("state_dump_file", A),
        kw("json_dump_file", A),
        kw("stats_dump_file", A),
        kw("json_version", X),
        kw("log_unknown_vrids", X),
        kw("use_symlink_paths", X),
        kw("iproute_usr_dir", X),
        kw("iproute_etc_dir", X),
        kw("vrrp_garp_extra_if", L),
        kw("vrrp_vmac_garp_intvl", L),
        kw("vrrp_down_timer_adverts", L),
        kw("vrrp_notify_fifo", A),
        kw("vrrp_notify_fifo_script", A),
        kw("vrrp_notify_priority_changes", L),
        kw("notify_fifo", A),
        kw("notify_fifo_script", A),
        kw("fifo_write_vrrp_states_on_reload", L),
        kw("max_auto_priority", L),
        kw("min_auto_priority_delay", L),
        kw("vmac_prefix", L),
        kw("vmac_addr_prefix", L),
        kw("default_interface", L),
        kw("dynamic_interfaces", L),
        kw("disable_local_igmp", L),
        kw("vrrp_iptables", L),
        kw("vrrp_ipsets", L),
        kw("nftables", L),
        kw("nftables_priority", L),
        kw("nftables_ifindex", L),
        kw("nftables_counters", L),
        kw("startup_script", L),
        kw("startup_script_timeout", L),
        kw("shutdown_script", L),
        kw("shutdown_script_timeout", L),
        kw("reload_check_config", L),
        kw("reload_time_file", L),
        kw("reload_repeat", L),
        kw("reload_file", L),
        kw("config_save_dir", L),
        kw("tmp_config_directory", L),
        kw("include_check", L),
        kw("random_seed", L),
        kw("data_use_instance", L),
        kw("umask", L),
        // LVS and checkers, for later issues.
        kw("lvs_backend", A),
        kw("lvs_flush", L),
        kw("lvs_flush_on_stop", L),
        kw("lvs_flush_onstop", L),
        kw("lvs_sync_daemon", L),
        kw("lvs_timeouts", L),
        kw("lvs_notify_fifo", L),
        kw("lvs_notify_fifo_script", L),
        kw("lvs_netlink_cmd_rcv_bufs", L),
        kw("lvs_netlink_cmd_rcv_bufs_force", L),
        kw("lvs_netlink_monitor_rcv_bufs", L),
        kw("lvs_netlink_monitor_rcv_bufs_force", L),
        kw("nftables_ipvs", L),
        kw("nftables_ipvs_priority", L),
        kw("nftables_ipvs_start_fwmark", L),
        kw("checker_log_all_failures", L),
        kw("rs_init_notifies", L),
        // Process tuning: the VRRP ones apply to the agent's VRRP thread; the others
        // are keepalived's own daemons', with no meaning for ha-agent.
        kw("vrrp_priority", A),
        kw("vrrp_rt_priority", A),
        kw("vrrp_rlimit_rtime", X),
        kw("vrrp_rlimit_rttime", X),
        kw("vrrp_no_swap", A),
        kw("vrrp_cpu_affinity", X),
        kw("vrrp_process_name", X),
        kw("vrrp_netlink_cmd_rcv_bufs", X),
        kw("vrrp_netlink_cmd_rcv_bufs_force", X),
        kw("vrrp_netlink_monitor_rcv_bufs", X),
        kw("vrrp_netlink_monitor_rcv_bufs_force", X),
        kw("vrrp_rx_bufs_policy", X),
        kw("vrrp_rx_bufs_multiplier", X),
        kw("checker_priority", X),
        kw("checker_rt_priority", X),
        kw("checker_rlimit_rtime", X),
        kw("checker_rlimit_rttime", X),
        kw("checker_no_swap", X),
        kw("checker_cpu_affinity", X),
        kw("checker_process_name", X),
        kw("bfd_priority", X),
        kw("bfd_rt_priority", X),
        kw("bfd_rlimit_rtime", X),
        kw("bfd_rlimit_rttime", X),
        kw("bfd_no_swap", X),
        kw("bfd_cpu_affinity", X),
        kw("bfd_process_name", X),
        kw("lvs_process_name", X),
        kw("process_name", X),
        kw("process_names", X),
        kw("process_monitor_rcv_bufs", X),
        kw("process_monitor_rcv_bufs_force", X),
        // Email alerts, SNMP, DBus: not in ha-agent (the manager replaces them).
        vals("notification_email", X),
        kw("notification_email_from", X),
        kw("smtp_server", X),
        kw("smtp_helo_name", X),
        kw("smtp_connect_timeout", X),
        kw("smtp_alert", X),
        kw("smtp_alert_vrrp", X),
        kw("smtp_alert_checker", X),
        kw("no_email_faults", X),
        kw("no_checker_emails", X),
        kw("enable_traps", X),
        kw("enable_snmp_vrrp", X),
        kw("enable_snmp_keepalived", X),
        kw("enable_snmp_checker", X),
        kw("enable_snmp_rfc", X),
        kw("enable_snmp_rfcv2", X),
        kw("enable_snmp_rfcv3", X),
        kw("snmp_socket", X),
        kw("enable_dbus", X),
        kw("dbus_service_name", X),
        kw("dbus_no_interface_name", X),
        kw("snmp_rs_stats_update_interval", X),
        kw("snmp_vs_stats_update_interval", X),
    ]],
};

/// `vrrp_instance NAME { }`.
pub static VRRP_INSTANCE: Block = Block {
    name: "vrrp_instance",
    keywords: &[&[
        kw("state", A),
        kw("interface", A),
        kw("virtual_router_id", A),
        kw("priority", A),
        kw("advert_int", A),
        kw("version", A),
        blk("authentication", A, &AUTHENTICATION),
        blk("auth_hmac", L, &AUTH_HMAC),
        kw("owner_ignore_adverts", A),
        vals("virtual_ipaddress", A),
        vals("virtual_ipaddress_excluded", A),
        kw("unicast_src_ip", A),
        kw("mcast_src_ip", A),
        vals("unicast_peer", A),
        kw("check_unicast_src", A),
        kw("nopreempt", A),
        kw("preempt", A),
        kw("preempt_delay", A),
        kw("accept", A),
        kw("no_accept", A),
        kw("strict_mode", A),
        vals("track_interface", A),
        kw("garp_master_delay", A),
        kw("garp_master_repeat", A),
        kw("garp_master_refresh", A),
        kw("garp_master_refresh_repeat", A),
        kw("garp_lower_prio_delay", A),
        kw("garp_lower_prio_repeat", A),
        kw("use_vmac", A),
        kw("vmac_xmit_base", A),
        kw("dont_track_primary", A),
        kw("native_ipv6", A),
        kw("v3_checksum_as_v2", A),
        kw("lower_prio_no_advert", A),
        kw("higher_prio_send_advert", A),
        kw("skip_check_adv_addr", A),
        // keepalived 2.2.8 / 2.3.2 (the second an alias of the first).
        kw("timer_expired_backup", A),
        kw("thread_timer_expired", A),
        // For later issues.
        vals("track_script", A),
        vals("track_file", A),
        vals("track_process", A),
        vals("track_bfd", L),
        kw("notify_master", A),
        kw("notify_backup", A),
        kw("notify_fault", A),
        kw("notify_stop", A),
        kw("notify_deleted", L),
        kw("notify", A),
        kw("notify_master_rx_lower_pri", L),
        kw("notify_priority_changes", L),
        vals("virtual_routes", L),
        vals("virtual_rules", L),
        kw("no_virtual_ipaddress", A),
        kw("promote_secondaries", L),
        kw("use_vmac_addr", L),
        kw("use_ipvlan", L),
        kw("vrf", L),
        kw("mcast_dst_ip", L),
        kw("track_src_ip", L),
        kw("unicast_fault_no_peer", L),
        kw("unicast_ttl", L),
        kw("old_unicast_checksum", L),
        kw("garp_extra_if", L),
        kw("vmac_garp_intvl", L),
        kw("down_timer_adverts", L),
        kw("lvs_sync_daemon_interface", L),
        kw("linkbeat_use_polling", L),
        kw("kernel_rx_buf_size", X),
        kw("debug", X),
        kw("smtp_alert", X),
    ]],
};

/// `authentication { }` inside a vrrp_instance.
pub static AUTHENTICATION: Block = Block {
    name: "authentication",
    keywords: &[&[kw("auth_type", A), kw("auth_pass", A)]],
};

/// `auth_hmac { }` inside a vrrp_instance (keepalived 2.4: HMAC-SHA256 advert
/// authentication; parsed into the model, not active yet).
pub static AUTH_HMAC: Block = Block {
    name: "auth_hmac",
    keywords: &[&[
        kw("key", L),
        kw("active_key", L),
        kw("time_window", L),
        kw("anti_replay", L),
        kw("mode", L),
    ]],
};

/// `track_group NAME { group { INSTANCE ... } }` (static track group).
pub static TRACK_GROUP: Block = Block {
    name: "track_group",
    keywords: &[&[vals("group", L)]],
};

/// `vrrp_script NAME { }`.
pub static VRRP_SCRIPT: Block = Block {
    name: "vrrp_script",
    keywords: &[&[
        kw("script", A),
        kw("interval", A),
        kw("timeout", A),
        kw("weight", A),
        kw("rise", A),
        kw("fall", A),
        kw("user", A),
        kw("init_fail", A),
    ]],
};

/// `track_file NAME { }` / `vrrp_track_file NAME { }`.
pub static TRACK_FILE: Block = Block {
    name: "track_file",
    keywords: &[&[kw("file", A), kw("weight", A), kw("init_file", A)]],
};

/// `vrrp_track_process NAME { }`.
pub static TRACK_PROCESS: Block = Block {
    name: "vrrp_track_process",
    keywords: &[&[
        kw("process", A),
        kw("param_match", A),
        kw("weight", A),
        kw("quorum", A),
        kw("quorum_max", A),
        kw("fork_delay", A),
        kw("terminate_delay", A),
        kw("delay", A),
        kw("full_command", A),
    ]],
};

/// `vrrp_sync_group NAME { }`.
pub static SYNC_GROUP: Block = Block {
    name: "vrrp_sync_group",
    keywords: &[&[
        vals("group", A),
        vals("track_interface", A),
        vals("track_script", A),
        vals("track_file", A),
        vals("track_process", A),
        vals("track_bfd", L),
        kw("notify_master", A),
        kw("notify_backup", A),
        kw("notify_fault", A),
        kw("notify_stop", A),
        kw("notify", A),
        kw("notify_priority_changes", A),
        kw("global_tracking", A),
        kw("sync_group_tracking_weight", A),
        kw("smtp_alert", X),
    ]],
};

/// `garp_group { }`.
pub static GARP_GROUP: Block = Block {
    name: "garp_group",
    keywords: &[&[
        kw("garp_interval", L),
        kw("gna_interval", L),
        kw("interface", L),
        vals("interfaces", L),
    ]],
};

/// `bfd_instance NAME { }`.
pub static BFD_INSTANCE: Block = Block {
    name: "bfd_instance",
    keywords: &[&[
        kw("neighbor_ip", L),
        kw("neighbour_ip", L),
        kw("source_ip", L),
        kw("min_rx", L),
        kw("min_tx", L),
        kw("idle_tx", L),
        kw("multiplier", L),
        kw("passive", L),
        kw("ttl", L),
        kw("hoplimit", L),
        kw("max_hops", L),
        kw("weight", L),
        kw("vrrp", L),
        kw("checker", L),
        kw("mode", L),
        kw("multihop", L),
    ]],
};

/// `SSL { }` (client certificate for SSL_GET).
pub static SSL: Block = Block {
    name: "SSL",
    keywords: &[&[
        kw("password", L),
        kw("ca", L),
        kw("certificate", L),
        kw("key", L),
    ]],
};

/// Keywords shared by virtual_server and real_server.
const VS_RS_COMMON: &[Kw] = &[
    kw("weight", A),
    kw("lvs_method", A),
    kw("connect_timeout", A),
    kw("retry", A),
    kw("delay_before_retry", A),
    kw("warmup", A),
    kw("delay_loop", A),
    kw("inhibit_on_failure", A),
    kw("alpha", A),
    kw("virtualhost", A),
    kw("smtp_alert", X),
    kw("snmp_name", X),
];

/// `virtual_server ... { }`.
pub static VIRTUAL_SERVER: Block = Block {
    name: "virtual_server",
    keywords: &[
        VS_RS_COMMON,
        &[
            kw("lvs_sched", A),
            kw("lb_kind", A),
            kw("lb_algo", A),
            kw("ops", L),
            kw("persistence_engine", L),
            kw("persistence_timeout", A),
            kw("persistence_granularity", A),
            kw("protocol", A),
            kw("ha_suspend", A),
            kw("omega", A),
            kw("quorum", A),
            kw("quorum_up", A),
            kw("quorum_down", A),
            kw("hysteresis", A),
            kw("ip_family", A),
            kw("sorry_server", A),
            kw("sorry_server_inhibit", A),
            kw("sorry_server_lvs_method", A),
            kw("hashed", L),
            kw("flag-1", L),
            kw("flag-2", L),
            kw("flag-3", L),
            kw("sh-port", L),
            kw("sh-fallback", L),
            kw("mh-port", L),
            kw("mh-fallback", L),
            blk("real_server", A, &REAL_SERVER),
        ],
    ],
};

/// `real_server IP PORT { }`.
pub static REAL_SERVER: Block = Block {
    name: "real_server",
    keywords: &[
        VS_RS_COMMON,
        &[
            kw("uthreshold", L),
            kw("notify_up", A),
            kw("notify_down", A),
            kw("lthreshold", L),
            blk("HTTP_GET", A, &HTTP_GET),
            blk("SSL_GET", A, &HTTP_GET),
            blk("TCP_CHECK", A, &TCP_CHECK),
            blk("SMTP_CHECK", L, &SMTP_CHECK),
            blk("DNS_CHECK", A, &DNS_CHECK),
            blk("MISC_CHECK", A, &MISC_CHECK),
            blk("BFD_CHECK", L, &BFD_CHECK),
            blk("UDP_CHECK", A, &UDP_CHECK),
            blk("PING_CHECK", A, &PING_CHECK),
            blk("FILE_CHECK", L, &FILE_CHECK),
        ],
    ],
};

/// Keywords every checker accepts.
const CHECKER_COMMON: &[Kw] = &[
    kw("connect_ip", A),
    kw("connect_port", A),
    kw("bindto", A),
    kw("bind_port", A),
    kw("bind_if", L),
    kw("fwmark", A),
    kw("connect_timeout", A),
    kw("retry", A),
    kw("delay_before_retry", A),
    kw("warmup", A),
    kw("delay_loop", A),
    kw("alpha", A),
    kw("log_all_failures", L),
];

/// `HTTP_GET { }` and `SSL_GET { }`.
pub static HTTP_GET: Block = Block {
    name: "HTTP_GET",
    keywords: &[
        CHECKER_COMMON,
        &[
            blk("url", A, &URL),
            kw("http_protocol", A),
            kw("nb_get_retry", A),
            kw("fast_recovery", L),
            kw("enable_sni", A),
            kw("tls_compliant", X),
        ],
    ],
};

/// `url { }` in HTTP_GET / SSL_GET.
pub static URL: Block = Block {
    name: "url",
    keywords: &[&[
        kw("path", A),
        kw("digest", A),
        kw("status_code", A),
        kw("virtualhost", A),
        kw("regex", L),
        kw("regex_no_match", L),
        kw("regex_options", L),
        kw("regex_stack", L),
        kw("regex_min_offset", L),
        kw("regex_max_offset", L),
        kw("tls_compliant", X),
    ]],
};

/// `TCP_CHECK { }`.
pub static TCP_CHECK: Block = Block {
    name: "TCP_CHECK",
    keywords: &[CHECKER_COMMON],
};

/// `SMTP_CHECK { }`.
pub static SMTP_CHECK: Block = Block {
    name: "SMTP_CHECK",
    keywords: &[
        CHECKER_COMMON,
        &[kw("helo_name", L), blk("host", L, &SMTP_HOST)],
    ],
};

/// `host { }` in SMTP_CHECK.
pub static SMTP_HOST: Block = Block {
    name: "host",
    keywords: &[CHECKER_COMMON],
};

/// `DNS_CHECK { }`.
pub static DNS_CHECK: Block = Block {
    name: "DNS_CHECK",
    keywords: &[CHECKER_COMMON, &[kw("type", A), kw("name", A)]],
};

/// `MISC_CHECK { }`.
pub static MISC_CHECK: Block = Block {
    name: "MISC_CHECK",
    keywords: &[&[
        kw("misc_path", A),
        kw("misc_timeout", A),
        kw("misc_dynamic", A),
        kw("user", A),
        kw("retry", A),
        kw("delay_before_retry", A),
        kw("warmup", A),
        kw("delay_loop", A),
        kw("alpha", A),
        kw("log_all_failures", L),
    ]],
};

/// `BFD_CHECK { }`.
pub static BFD_CHECK: Block = Block {
    name: "BFD_CHECK",
    keywords: &[&[kw("name", L), kw("alpha", L)]],
};

/// `UDP_CHECK { }`.
pub static UDP_CHECK: Block = Block {
    name: "UDP_CHECK",
    keywords: &[
        CHECKER_COMMON,
        &[
            kw("payload", A),
            kw("require_reply", A),
            kw("min_reply_length", A),
            kw("max_reply_length", A),
        ],
    ],
};

/// `PING_CHECK { }`.
pub static PING_CHECK: Block = Block {
    name: "PING_CHECK",
    keywords: &[CHECKER_COMMON],
};

/// `FILE_CHECK { }`.
pub static FILE_CHECK: Block = Block {
    name: "FILE_CHECK",
    keywords: &[&[kw("track_file", L), kw("weight", L)]],
};

/// Every block reachable from [`ROOT`], each once, parents before children.
pub fn all_blocks() -> Vec<&'static Block> {
    let mut out: Vec<&'static Block> = vec![&ROOT];
    let mut i = 0;
    while let Some(b) = out.get(i).copied() {
        for k in b.keywords.iter().flat_map(|l| l.iter()) {
            if let Shape::Block(kid) = k.shape {
                if !out.iter().any(|seen| std::ptr::eq(*seen, kid)) {
                    out.push(kid);
                }
            }
        }
        i += 1;
    }
    out
}

/// The keyword at `path` (block keywords from the top level, then the keyword), e.g.
/// `["vrrp_instance", "auth_hmac", "key"]`.
pub fn lookup_path(path: &[&str]) -> Option<&'static Kw> {
    let (last, parents) = path.split_last()?;
    let mut block: &'static Block = &ROOT;
    for p in parents {
        match block.lookup(p)?.shape {
            Shape::Block(b) => block = b,
            Shape::Leaf | Shape::Values => return None,
        }
    }
    block.lookup(last)
}

/// Check every statement of `nodes` against `block`: unknown keywords and wrong shapes
/// are errors; keywords not active yet or without effect give one note each (not repeated
/// for the statements inside a block already noted). Recursion only follows the static
/// table, so its depth is bounded whatever the input.
pub fn check(
    nodes: &[Node],
    block: &'static Block,
    noted: bool,
    errors: &mut Vec<Diagnostic>,
    notes: &mut Vec<Diagnostic>,
) {
    for n in nodes {
        let Some(k) = block.lookup(&n.name) else {
            errors.push(n.diag(format!("unknown keyword '{}' in {}", n.name, block.name)));
            continue;
        };
        if !noted {
            match k.support {
                Support::Active => {}
                Support::Later => {
                    notes.push(n.diag(format!("'{}' parsed, not active yet", n.name)))
                }
                Support::NoEffect => {
                    notes.push(n.diag(format!("'{}' has no effect in ha-agent", n.name)))
                }
            }
        }
        let noted = noted || k.support != Support::Active;
        match (k.shape, &n.block) {
            (Shape::Leaf, Some(_)) => {
                errors.push(n.diag(format!("'{}' does not take a {{ }} block", n.name)))
            }
            (Shape::Block(_) | Shape::Values, None) => {
                errors.push(n.diag(format!("'{}' needs a {{ }} block", n.name)))
            }
            (Shape::Block(b), Some(kids)) => check(kids, b, noted, errors, notes),
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::lexer::{lex, LexOptions};
    use super::super::tree::parse;
    use super::*;
    use std::path::Path;

    fn run(text: &str) -> (Vec<String>, Vec<String>) {
        let l = lex(Path::new("k.conf"), text, LexOptions::default());
        let mut errors = l.errors;
        let mut notes = Vec::new();
        let t = parse(l.toks, &mut errors);
        check(&t, &ROOT, false, &mut errors, &mut notes);
        let s = |v: Vec<Diagnostic>| v.iter().map(ToString::to_string).collect();
        (s(errors), s(notes))
    }

    #[test]
    fn classes_give_notes_once_per_block() {
        let (e, n) = run(
            "global_defs {\n smtp_server 192.0.2.1\n router_id a\n}\nvrrp_script s {\n script x\n}\n",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            n,
            vec!["k.conf:2: 'smtp_server' has no effect in ha-agent",]
        );
    }

    #[test]
    fn unknown_keywords_and_shapes() {
        let (e, _) = run(
            "vrrp_script s {\n bogus 1\n}\nvrrp_instance A {\n priority 1 {\n }\n virtual_ipaddress\n}\n",
        );
        assert_eq!(
            e,
            vec![
                "k.conf:2: unknown keyword 'bogus' in vrrp_script",
                "k.conf:5: 'priority' does not take a { } block",
                "k.conf:7: 'virtual_ipaddress' needs a { } block",
            ]
        );
    }

    #[test]
    fn value_blocks_are_not_keyword_checked() {
        let (e, _) = run("vrrp_instance A {\n virtual_ipaddress {\n 192.0.2.1 dev eth0\n }\n}\n");
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn no_duplicate_keywords_in_a_block() {
        let blocks = all_blocks();
        assert!(blocks.len() >= 26, "{}", blocks.len());
        for b in blocks {
            let mut names: Vec<&str> = b
                .keywords
                .iter()
                .flat_map(|l| l.iter())
                .map(|k| k.name)
                .collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "duplicate keyword in {}", b.name);
        }
    }
}
