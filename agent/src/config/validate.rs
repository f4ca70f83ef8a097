//! Cross-field validation of VRRP instances, collecting every error (never stopping at
//! the first). Each message names the field and sits on the line that carries it, e.g.
//! `keepalived.conf:12: virtual_router_id 300 out of range 1-255`.
//!
//! Rules: VRID 1-255; priority 1-255 (255 = address owner); advert_int per version (v2
//! whole seconds 1-255, RFC 3768 §5.3.7; v3 0.01-40.95 s, RFC 5798 §5.2.7); duplicate VRID
//! on one interface and address family (as keepalived); VIP family vs version (IPv6 needs
//! v3) and one family per instance (mixing only via virtual_ipaddress_excluded);
//! nopreempt needs state BACKUP; an empty unicast_peer block; interface and
//! virtual_router_id present; track references name something defined.

use std::collections::HashMap;

use super::build::{effective_version, InstanceDraft};
use super::model::{Config, Family, GlobalDefs, HmacMode, InitialState};
use super::Diagnostic;
use crate::units::Version;

/// Check every instance draft, pushing one error per problem.
pub(super) fn instances(drafts: &[InstanceDraft], g: &GlobalDefs, errors: &mut Vec<Diagnostic>) {
    let mut names: HashMap<&str, &InstanceDraft> = HashMap::new();
    // (interface, family, vrid) -> first instance using it.
    let mut vrids: HashMap<(&str, Family, i64), &InstanceDraft> = HashMap::new();
    for d in drafts {
        let at = |m: String| d.loc.diag(m);
        if let Some(first) = names.insert(d.name.as_str(), d) {
            errors.push(at(format!(
                "vrrp_instance {} already defined at {}:{}",
                d.name,
                first.loc.file.display(),
                first.loc.line
            )));
        }
        match &d.vrid {
            None => errors.push(at(format!(
                "vrrp_instance {}: missing virtual_router_id",
                d.name
            ))),
            Some((v, loc)) if !(1..=255).contains(v) => {
                errors.push(loc.diag(format!("virtual_router_id {v} out of range 1-255")))
            }
            Some(_) => {}
        }
        if d.interface.is_none() {
            errors.push(at(format!("vrrp_instance {}: missing interface", d.name)));
        }
        if let Some((p, loc)) = &d.priority {
            if !(1..=255).contains(p) {
                errors.push(loc.diag(format!("priority {p} out of range 1-255")));
            }
        }
        let version = effective_version(d, g);
        if let Some((us, text, loc)) = &d.advert {
            match version {
                // RFC 3768 §5.3.7: 8-bit whole seconds.
                Version::V2 => {
                    if !us.is_multiple_of(1_000_000) || !(1..=255).contains(&(us / 1_000_000)) {
                        errors.push(loc.diag(format!(
                            "advert_int {text} out of range for version 2: whole seconds 1-255"
                        )));
                    }
                }
                // RFC 5798 §5.2.7: 12-bit centiseconds.
                Version::V3 => {
                    if !us.is_multiple_of(10_000) || !(1..=4095).contains(&(us / 10_000)) {
                        errors.push(loc.diag(format!(
                            "advert_int {text} out of range for version 3: 0.01-40.95 seconds in steps of 0.01"
                        )));
                    }
                }
            }
        }
        // VIP families: all virtual_ipaddress entries share the first one's family.
        let family = if d.native_ipv6 {
            Some(Family::V6)
        } else {
            d.vips.first().map(|v| Family::of(&v.addr))
        };
        if let Some(fam) = family {
            for v in &d.vips {
                if Family::of(&v.addr) != fam {
                    errors.push(v.origin_diag(format!(
                        "virtual_ipaddress {}: {} address in an {fam} instance (mixed families only in virtual_ipaddress_excluded)",
                        v.addr,
                        Family::of(&v.addr)
                    )));
                }
            }
            if fam == Family::V6 && d.version == Some(Version::V2) {
                let line = d.vips.first().map(|v| v.origin.line).unwrap_or(d.loc.line);
                errors.push(Diagnostic {
                    file: d.loc.file.to_path_buf(),
                    line,
                    message: format!(
                        "vrrp_instance {}: IPv6 virtual_ipaddress needs version 3, not 2",
                        d.name
                    ),
                });
            }
            if let Some((src, loc)) = &d.unicast_src_ip {
                if Family::of(src) != fam {
                    errors.push(loc.diag(format!(
                        "unicast_src_ip {src}: not the instance's family ({fam})"
                    )));
                }
            }
            for p in &d.unicast_peers {
                if Family::of(&p.addr) != fam {
                    errors.push(p.origin_diag(format!(
                        "unicast_peer {}: not the instance's family ({fam})",
                        p.addr
                    )));
                }
            }
        }
        if d.auth.is_some() && version == Version::V3 {
            errors.push(at(format!(
                "vrrp_instance {}: authentication needs version 2 (VRRPv3 has none)",
                d.name
            )));
        }
        let strict = d.strict_mode.unwrap_or(g.vrrp_strict);
        if let Some(h) = &d.auth_hmac {
            if d.auth.is_some() {
                errors.push(h.loc.diag(format!(
                    "vrrp_instance {}: auth_hmac cannot be combined with authentication",
                    d.name
                )));
            }
            if strict && h.hmac.mode != HmacMode::Enforce {
                errors.push(h.loc.diag(format!(
                    "vrrp_instance {}: strict mode requires auth_hmac mode enforce",
                    d.name
                )));
            }
        }
        // keepalived: VRRPv3 and strict mode need a VIP unless `no_virtual_ipaddress`
        // says none is intended (strict.rs cleared it in strict mode); v2 only warns.
        if d.vips.is_empty() && (strict || (version == Version::V3 && d.no_vips.is_none())) {
            errors.push(at(format!(
                "vrrp_instance {}: no virtual_ipaddress; at least one is required {}",
                d.name,
                if strict {
                    "in strict mode"
                } else {
                    "with version 3 (or say no_virtual_ipaddress)"
                }
            )));
        }
        if let Some(loc) = &d.nopreempt {
            if d.state == InitialState::Master {
                errors.push(loc.diag("nopreempt needs state BACKUP"));
            }
        }
        for (loc, count) in &d.unicast_peer_blocks {
            if *count == 0 {
                errors.push(loc.diag("unicast_peer block is empty"));
            }
        }
        if let (Some(ifname), Some((vrid, loc))) = (&d.interface, &d.vrid) {
            let fam = family.unwrap_or_default();
            // keepalived allows a duplicate with unicast peers that do not overlap; we
            // keep the strict rule and ask for distinct VRIDs.
            if let Some(first) = vrids.insert((ifname.as_str(), fam, *vrid), d) {
                errors.push(loc.diag(format!(
                    "virtual_router_id {vrid} already used on interface {ifname} ({fam}) by vrrp_instance {} at {}:{}",
                    first.name,
                    first.loc.file.display(),
                    first.loc.line
                )));
            }
        }
    }
}

/// Track references must name a defined script / file.
pub(super) fn references(drafts: &[InstanceDraft], cfg: &Config, errors: &mut Vec<Diagnostic>) {
    for d in drafts {
        for r in &d.track_scripts {
            if !cfg.vrrp_scripts.iter().any(|s| s.name == r.name) {
                errors.push(
                    r.origin_diag(format!("track_script: no vrrp_script named '{}'", r.name)),
                );
            }
        }
        for r in &d.track_files {
            if !cfg.track_files.iter().any(|s| s.name == r.name) {
                errors.push(r.origin_diag(format!("track_file: no track_file named '{}'", r.name)));
            }
        }
    }
}

/// Diagnostics at a model item's origin.
trait OriginDiag {
    fn origin_diag(&self, message: String) -> Diagnostic;
}

macro_rules! origin_diag {
    ($($t:ty),*) => {$(
        impl OriginDiag for $t {
            fn origin_diag(&self, message: String) -> Diagnostic {
                Diagnostic { file: self.origin.file.to_path_buf(), line: self.origin.line, message }
            }
        }
    )*};
}
origin_diag!(
    super::model::VipSpec,
    super::model::UnicastPeer,
    super::model::TrackRef
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{parse_with, Options};
    use std::path::Path;

    fn errors(text: &str) -> Vec<String> {
        let opts = Options {
            config_id: None,
            follow_includes: false,
        };
        match parse_with(Path::new("k.conf"), text, &opts) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    fn inst(body: &str) -> String {
        format!("vrrp_instance A {{\n{body}\n}}\n")
    }

    #[test]
    fn all_errors_are_collected() {
        let e = errors(&inst("virtual_router_id 0\npriority 300\nadvert_int 0"));
        assert_eq!(
            e,
            vec![
                "k.conf:1: vrrp_instance A: missing interface",
                "k.conf:2: virtual_router_id 0 out of range 1-255",
                "k.conf:3: priority 300 out of range 1-255",
                "k.conf:4: advert_int 0 out of range for version 2: whole seconds 1-255",
            ]
        );
    }

    #[test]
    fn advert_int_bounds_per_version() {
        let ok = |v: &str, a: &str| {
            errors(&inst(&format!(
                "interface eth0\nvirtual_router_id 1\nversion {v}\nadvert_int {a}\nvirtual_ipaddress {{\n192.0.2.1\n}}"
            )))
            .is_empty()
        };
        assert!(ok("2", "1") && ok("2", "255"));
        assert!(!ok("2", "256") && !ok("2", "0.5"));
        assert!(ok("3", "0.01") && ok("3", "40.95"));
        assert!(!ok("3", "40.96") && !ok("3", "0.005") && !ok("3", "0"));
    }

    #[test]
    fn duplicate_vrid_is_per_interface_and_family() {
        let two = |a: &str, b: &str| {
            errors(&format!(
                "vrrp_instance A {{\ninterface eth0\nvirtual_router_id 1\nvirtual_ipaddress {{\n{a}\n}}\n}}\nvrrp_instance B {{\ninterface eth0\nvirtual_router_id 1\nvirtual_ipaddress {{\n{b}\n}}\n}}\n"
            ))
        };
        assert_eq!(two("192.0.2.1", "192.0.2.2").len(), 1);
        assert!(two("192.0.2.1", "2001:db8::1").is_empty());
        let e = errors("vrrp_instance A {\ninterface eth0\nvirtual_router_id 1\n}\nvrrp_instance B {\ninterface eth1\nvirtual_router_id 1\n}\n");
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn auth_needs_v2_and_track_refs_must_exist() {
        let e = errors(&inst(
            "interface eth0\nvirtual_router_id 1\nversion 3\nauthentication {\nauth_type PASS\nauth_pass x\n}\ntrack_script {\nnope\n}\nno_virtual_ipaddress",
        ));
        assert_eq!(
            e,
            vec![
                "k.conf:1: vrrp_instance A: authentication needs version 2 (VRRPv3 has none)",
                "k.conf:10: track_script: no vrrp_script named 'nope'",
            ]
        );
    }

    #[test]
    fn no_virtual_ipaddress_as_keepalived() {
        let base = "interface eth0\nvirtual_router_id 1\n";
        // v2: allowed (a note); v3: an error unless no_virtual_ipaddress says so.
        assert!(errors(&inst(base)).is_empty());
        assert_eq!(
            errors(&inst(&format!("{base}version 3"))),
            vec!["k.conf:1: vrrp_instance A: no virtual_ipaddress; at least one is required with version 3 (or say no_virtual_ipaddress)"]
        );
        assert!(errors(&inst(&format!("{base}version 3\nno_virtual_ipaddress"))).is_empty());
        // Strict mode needs a VIP whatever is said.
        assert_eq!(
            errors(&inst(&format!("{base}strict_mode\nno_virtual_ipaddress"))),
            vec!["k.conf:1: vrrp_instance A: no virtual_ipaddress; at least one is required in strict mode"]
        );
        let note = |text: &str| {
            crate::config::parse_str(std::path::Path::new("k.conf"), &inst(text)).map(|l| {
                l.notes
                    .iter()
                    .any(|n| n.message.contains("at least one is sensible"))
            })
        };
        assert_eq!(note(base), Ok(true));
        assert_eq!(note(&format!("{base}no_virtual_ipaddress")), Ok(false));
    }

    #[test]
    fn duplicate_instance_name() {
        let e = errors("vrrp_instance A {\ninterface eth0\nvirtual_router_id 1\n}\nvrrp_instance A {\ninterface eth0\nvirtual_router_id 2\n}\n");
        assert_eq!(
            e,
            vec!["k.conf:5: vrrp_instance A already defined at k.conf:1"]
        );
    }

    #[test]
    fn hostile_input_never_panics() {
        let samples = [
            "", "{", "}", "{{}}", "a {", "\"", "'", "\\", "vrrp_instance", "vrrp_instance {",
            "vrrp_instance A { virtual_router_id 99999999999999999999999 }",
            "vrrp_instance A { advert_int 99999999999.999999 }",
            "vrrp_instance A { advert_int .}", "global_defs { vrrp_garp_interval 1e99 }",
            "vrrp_instance A { virtual_ipaddress { 192.0.2.1/999 dev } }",
            "vrrp_instance A { virtual_ipaddress { ::/129 } unicast_peer { x min_ttl } }",
            "@", "@^", "$", "~SEQ(", "include", "include ", "virtual_server { real_server { HTTP_GET { url { } } } }",
            "vrrp_instance A { track_interface { e weight } track_script { s weight 99999999999 } }",
            "\u{0}\u{ffff}\r\n\t{}", "\"\\x\\777\\c",
        ];
        for s in samples {
            let _ = errors(s);
        }
    }
}
