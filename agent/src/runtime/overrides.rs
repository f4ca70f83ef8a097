//! Override sets pushed by the manager: validated as a whole against the running
//! instances, then turned into what each instance gets (priority, installed VIPs).
//! Pure: a rejected set changes nothing and names every problem.
//!
//! VIP overrides change the addresses a master installs, not the address list in its
//! adverts: a peer that was not told would otherwise drop our v2 adverts (address list
//! mismatch) and both would become master. They behave like
//! `virtual_ipaddress_excluded`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::link::bridge::OverrideSet;
use crate::units::Priority;

/// What validation needs to know about one running instance.
#[derive(Debug, Clone)]
pub struct Target {
    /// Instance name.
    pub name: String,
    /// Addresses installed from the config, with prefix lengths.
    pub base_vips: Vec<(IpAddr, u8)>,
}

/// The validated effect of a set on one instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effect {
    /// Priority override (None: back to the configured priority).
    pub priority: Option<Priority>,
    /// Addresses to install as master.
    pub vips: Vec<(IpAddr, u8)>,
}

/// Check `set` against `targets`; on success the effect for every target (by name).
pub fn validate(
    set: &OverrideSet,
    targets: &[Target],
) -> Result<BTreeMap<String, Effect>, Vec<String>> {
    let mut errors = Vec::new();
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    let unknown = |n: &str| format!("unknown instance '{n}' (instances: {})", names.join(", "));
    let mut out: BTreeMap<String, Effect> = targets
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                Effect {
                    priority: None,
                    vips: t.base_vips.clone(),
                },
            )
        })
        .collect();
    for (inst, p) in &set.priorities {
        match out.get_mut(inst) {
            None => errors.push(unknown(inst)),
            Some(_) if p.get() == 0 => {
                errors.push(format!("{inst}: priority 0 is reserved (1-255)"))
            }
            Some(e) => e.priority = Some(*p),
        }
    }
    for v in &set.vips {
        let Some(e) = out.get_mut(&v.instance) else {
            errors.push(unknown(&v.instance));
            continue;
        };
        let max = if v.addr.is_ipv4() { 32 } else { 128 };
        if v.prefix_len > max {
            errors.push(format!(
                "{}: prefix length /{} too long for {}",
                v.instance, v.prefix_len, v.addr
            ));
            continue;
        }
        let present = e.vips.iter().position(|(a, _)| *a == v.addr);
        match (v.add, present) {
            (true, None) => e.vips.push((v.addr, v.prefix_len)),
            (true, Some(_)) => errors.push(format!("{}: {} is already a VIP", v.instance, v.addr)),
            (false, Some(i)) => {
                e.vips.remove(i);
            }
            (false, None) => errors.push(format!("{}: {} is not a VIP", v.instance, v.addr)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::bridge::VipChange;

    fn targets() -> Vec<Target> {
        vec![
            Target {
                name: "VI_1".into(),
                base_vips: vec![("192.0.2.10".parse().unwrap(), 24)],
            },
            Target {
                name: "VI_2".into(),
                base_vips: vec![],
            },
        ]
    }

    #[test]
    fn priority_and_vips_apply() {
        let mut set = OverrideSet::default();
        set.priorities.insert("VI_2".into(), Priority(90));
        set.vips.push(VipChange {
            instance: "VI_1".into(),
            addr: "192.0.2.20".parse().unwrap(),
            prefix_len: 24,
            add: true,
        });
        set.vips.push(VipChange {
            instance: "VI_1".into(),
            addr: "192.0.2.10".parse().unwrap(),
            prefix_len: 24,
            add: false,
        });
        let eff = validate(&set, &targets()).unwrap();
        assert_eq!(eff["VI_2"].priority, Some(Priority(90)));
        assert_eq!(eff["VI_1"].priority, None);
        assert_eq!(eff["VI_1"].vips, vec![("192.0.2.20".parse().unwrap(), 24)]);
    }

    #[test]
    fn every_error_is_reported_and_nothing_applies() {
        let mut set = OverrideSet::default();
        set.priorities.insert("VI_9".into(), Priority(90));
        set.priorities.insert("VI_1".into(), Priority(0));
        set.vips.push(VipChange {
            instance: "VI_2".into(),
            addr: "192.0.2.10".parse().unwrap(),
            prefix_len: 40,
            add: true,
        });
        set.vips.push(VipChange {
            instance: "VI_1".into(),
            addr: "192.0.2.99".parse().unwrap(),
            prefix_len: 24,
            add: false,
        });
        let errs = validate(&set, &targets()).unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e.contains("unknown instance 'VI_9'") && e.contains("VI_1, VI_2")),
            "{errs:?}"
        );
    }
}
