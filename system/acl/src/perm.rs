//! Resource permissions: `DENY`, `PUB`, `SUB`, `PUB|SUB` (RocketMQ's `Permission`).

use std::fmt;

/// What an account may do with a topic or a consumer group.
///
/// Bits as in RocketMQ (`DENY` 1, `PUB` 4, `SUB` 8); a set `DENY` bit wins over the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Perm(u8);

impl Perm {
    /// Nothing is allowed.
    pub const DENY: Perm = Perm(1);
    /// Publish (send) only.
    pub const PUB: Perm = Perm(4);
    /// Subscribe (pull, commit offsets, send back) only.
    pub const SUB: Perm = Perm(8);
    /// Both.
    pub const PUB_SUB: Perm = Perm(4 | 8);

    /// Parses `DENY`, `PUB`, `SUB`, `PUB|SUB` or `SUB|PUB` (surrounding spaces ignored).
    ///
    /// RocketMQ maps any other string to DENY silently; here it is an error, so a typo such as
    /// `PUB SUB` cannot quietly lock an account out (or be believed to grant something).
    pub fn parse(s: &str) -> Option<Perm> {
        match s.trim() {
            "DENY" => Some(Perm::DENY),
            "PUB" => Some(Perm::PUB),
            "SUB" => Some(Perm::SUB),
            "PUB|SUB" | "SUB|PUB" => Some(Perm::PUB_SUB),
            _ => None,
        }
    }

    /// Whether holding `self` grants `needed` (`Permission.checkPermission`): a DENY bit
    /// refuses everything; otherwise any shared bit grants.
    pub fn grants(self, needed: Perm) -> bool {
        self.0 & Perm::DENY.0 == 0 && self.0 & needed.0 != 0
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match *self {
            Perm::DENY => "DENY",
            Perm::PUB => "PUB",
            Perm::SUB => "SUB",
            Perm::PUB_SUB => "PUB|SUB",
            _ => "DENY",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_rocketmq_spellings_only() {
        assert_eq!(Perm::parse(" PUB|SUB "), Some(Perm::PUB_SUB));
        assert_eq!(Perm::parse("SUB|PUB"), Some(Perm::PUB_SUB));
        assert_eq!(Perm::parse("DENY"), Some(Perm::DENY));
        for bad in ["", "pub", "PUB SUB", "PUB|", "ANY", "PUB|SUB|DENY"] {
            assert_eq!(Perm::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn grants_follows_the_bits() {
        for (owned, needed, ok) in [
            (Perm::PUB, Perm::PUB, true),
            (Perm::PUB, Perm::SUB, false),
            (Perm::SUB, Perm::SUB, true),
            (Perm::PUB_SUB, Perm::SUB, true),
            (Perm::PUB_SUB, Perm::PUB, true),
            (Perm::DENY, Perm::PUB, false),
            (Perm::DENY, Perm::SUB, false),
        ] {
            assert_eq!(owned.grants(needed), ok, "{owned} grants {needed}");
        }
        for p in [Perm::DENY, Perm::PUB, Perm::SUB, Perm::PUB_SUB] {
            assert_eq!(Perm::parse(&p.to_string()), Some(p));
        }
    }
}
