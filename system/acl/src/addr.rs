//! White remote address patterns (RocketMQ's `RemoteAddressStrategyFactory`).
//!
//! | pattern | matches |
//! |---|---|
//! | `*`, `*.*.*.*`, `*:*:*:*:*:*:*:*` | every address |
//! | `192.168.0.1`, `::1` | that address |
//! | `192.168.0.1,192.168.0.2,::1` | any listed address |
//! | `192.168.0.{1,2,3}` | `192.168.0.1`, `.2`, `.3` |
//! | `192.168.1.1-5`, `192.168.1-3.*`, `192.168.*`, `10.*.*.*` | IPv4 octet by octet: a number, `lo-hi` or `*`; fewer than four octets end in `*`, which covers the rest |
//!
//! Differences from RocketMQ, all stricter: every octet of a range pattern is checked (RocketMQ
//! only checks the octets up to its one range, so `192.168.1-5.7` also matched `192.168.3.9`),
//! and IPv6 ranges (`2001:db8::1-ff`) are refused as not implemented rather than half-parsed.
//! An IPv4-mapped IPv6 peer (`::ffff:10.0.0.1`) is matched as its IPv4 address.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// A parsed white remote address pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddrPattern {
    /// Every address.
    Any,
    /// Any of these addresses (one or more).
    Set(BTreeSet<IpAddr>),
    /// IPv4, octet by octet: inclusive ranges (`*` is 0..=255).
    V4Range([(u8, u8); 4]),
}

impl AddrPattern {
    /// Parses a pattern; the error says what was expected.
    pub fn parse(pattern: &str) -> Result<AddrPattern, &'static str> {
        let p = pattern.trim();
        if p.is_empty() {
            return Err("an address pattern, not a blank");
        }
        if matches!(p, "*" | "*.*.*.*" | "*:*:*:*:*:*:*:*") {
            return Ok(AddrPattern::Any);
        }
        if let Some(body) = p.strip_suffix('}') {
            let (prefix, items) = body.split_once('{').ok_or("a `{` opening the last part, as in 192.168.0.{1,2}")?;
            if !(prefix.ends_with('.') || prefix.ends_with(':')) {
                return Err("a `{...}` list as the last part of the address, as in 192.168.0.{1,2}");
            }
            return set(items.split(',').map(|item| format!("{prefix}{}", item.trim())));
        }
        if p.contains(',') {
            return set(p.split(',').map(|s| s.trim().to_string()));
        }
        if p.contains('*') || p.contains('-') {
            if p.contains(':') {
                return Err("not implemented: IPv6 ranges (list IPv6 addresses one by one)");
            }
            return v4_range(p);
        }
        let ip = p.parse::<IpAddr>().map_err(|_| "an IPv4 or IPv6 address, a list, a {..} list or a range")?;
        Ok(AddrPattern::Set(BTreeSet::from([canonical(ip)])))
    }

    /// Whether `peer` matches.
    pub fn matches(&self, peer: IpAddr) -> bool {
        let peer = canonical(peer);
        match self {
            AddrPattern::Any => true,
            AddrPattern::Set(set) => set.contains(&peer),
            AddrPattern::V4Range(octets) => match peer {
                IpAddr::V4(v4) => v4.octets().iter().zip(octets).all(|(o, (lo, hi))| lo <= o && o <= hi),
                IpAddr::V6(_) => false,
            },
        }
    }
}

/// An IPv4-mapped IPv6 address as IPv4; anything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn set(items: impl Iterator<Item = String>) -> Result<AddrPattern, &'static str> {
    let mut out = BTreeSet::new();
    for item in items {
        let ip = item.parse::<IpAddr>().map_err(|_| "a list of complete IPv4 or IPv6 addresses")?;
        out.insert(canonical(ip));
    }
    Ok(AddrPattern::Set(out))
}

fn v4_range(p: &str) -> Result<AddrPattern, &'static str> {
    const EXPECTED: &str =
        "an IPv4 range: four parts, each a number 0-255, `lo-hi` or `*` (a shorter pattern ends in `*`)";
    let parts: Vec<&str> = p.split('.').map(str::trim).collect();
    if parts.len() > 4 || (parts.len() < 4 && parts.last() != Some(&"*")) {
        return Err(EXPECTED);
    }
    let mut octets = [(0u8, 255u8); 4];
    for (slot, part) in octets.iter_mut().zip(&parts) {
        *slot = match *part {
            "*" => (0, 255),
            range if range.contains('-') => {
                let (lo, hi) = range.split_once('-').ok_or(EXPECTED)?;
                let (lo, hi) =
                    (lo.trim().parse::<u8>().map_err(|_| EXPECTED)?, hi.trim().parse::<u8>().map_err(|_| EXPECTED)?);
                if lo > hi {
                    return Err("an IPv4 range whose `lo-hi` parts have lo <= hi");
                }
                (lo, hi)
            }
            n => {
                let n = n.parse::<u8>().map_err(|_| EXPECTED)?;
                (n, n)
            }
        };
    }
    Ok(AddrPattern::V4Range(octets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn m(pattern: &str, addr: &str) -> bool {
        AddrPattern::parse(pattern).unwrap().matches(ip(addr))
    }

    #[test]
    fn rocketmq_pattern_forms_match() {
        assert!(m("*", "10.1.2.3") && m("*.*.*.*", "::1") && m("*:*:*:*:*:*:*:*", "127.0.0.1"));
        assert!(m("127.0.0.1", "127.0.0.1") && !m("127.0.0.1", "127.0.0.2"));
        assert!(m("192.168.0.{1,2}", "192.168.0.2") && !m("192.168.0.{1,2}", "192.168.0.3"));
        assert!(m("192.168.1.1-5", "192.168.1.5") && !m("192.168.1.1-5", "192.168.1.6"));
        assert!(m("192.168.*", "192.168.200.7") && !m("192.168.*", "192.169.0.1"));
        assert!(m("192.168.1-3.*", "192.168.3.255") && !m("192.168.1-3.*", "192.168.4.0"));
        assert!(m("10.0.0.1,10.0.0.2", "10.0.0.2") && !m("10.0.0.1,10.0.0.2", "10.0.0.3"));
        assert!(m("::1", "::1") && m("2001:db8::{1,2}", "2001:db8::2"));
        assert!(m("127.0.0.1", "::ffff:127.0.0.1"), "IPv4-mapped peers match as IPv4");
        assert!(!m("10.*", "::1"));
        // Stricter than RocketMQ: the octets after the range are checked too.
        assert!(!m("192.168.1-5.7", "192.168.3.9") && m("192.168.1-5.7", "192.168.3.7"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "",
            "  ",
            "300.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.*.4.5",
            "1.2.3.5-1",
            "1.2.3.-5",
            "1.2.3.{1,x}",
            "1.2.3{1}",
            "2001:db8::1-ff",
            "a.b.c.d",
            "1.2.3.4,",
            "192.168.0.256-300",
            "1.2.*.x",
        ] {
            assert!(AddrPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "[0-9.*,{}:\\- a-f]{0,40}") {
            let _ = AddrPattern::parse(&s);
        }

        #[test]
        fn range_matches_exactly_its_box(a: [u8; 4], lo: u8, width: u8, probe: u8) {
            let hi = lo.saturating_add(width);
            let pattern = format!("{}.{}.{}.{lo}-{hi}", a[0], a[1], a[2]);
            let p = AddrPattern::parse(&pattern).unwrap();
            let addr = IpAddr::from([a[0], a[1], a[2], probe]);
            prop_assert_eq!(p.matches(addr), lo <= probe && probe <= hi);
            let other = IpAddr::from([a[0].wrapping_add(1), a[1], a[2], lo]);
            prop_assert!(!p.matches(other));
        }

        #[test]
        fn a_literal_matches_only_itself(a: [u8; 4], b: [u8; 4]) {
            let p = AddrPattern::parse(&IpAddr::from(a).to_string()).unwrap();
            prop_assert_eq!(p.matches(IpAddr::from(b)), a == b);
        }
    }
}
