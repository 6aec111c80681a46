//! `plain_acl.yml`: RocketMQ's ACL 1.0 file, parsed into a [`PlainAcl`].
//!
//! ```yaml
//! globalWhiteRemoteAddresses:      # peers that need no signature at all
//!   - 10.10.103.*
//! accounts:
//!   - accessKey: RocketMQ          # at least 7 characters (RocketMQ's rule)
//!     secretKey: 12345678          # at least 7 characters
//!     whiteRemoteAddress:          # optional: from here, this account needs no signature
//!     admin: false                 # admin requests (create/delete topics, ...) need true
//!     defaultTopicPerm: DENY       # topics not listed below; unset = DENY
//!     defaultGroupPerm: SUB        # groups not listed below; unset = DENY
//!     topicPerms: [topicA=DENY, topicB=PUB|SUB, topicC=SUB]
//!     groupPerms: [groupA=DENY, groupB=PUB|SUB, groupC=SUB]
//! ```
//!
//! Unlike RocketMQ, nothing wrong is skipped or guessed: an unknown key, a bad permission, a
//! malformed address pattern, a duplicated access key or resource, a short key or an invalid
//! topic or group name is an error naming the line and the key. `dataVersion` (a stamp
//! RocketMQ writes when its admin API rewrites the file) is accepted and has no effect.

use std::collections::BTreeMap;
use std::path::Path;

use rmq_proto::names;
use serde::Deserialize;

use crate::addr::AddrPattern;
use crate::perm::Perm;

/// The `aclFile` used when `aclEnable=true` names none: this name in the config file's
/// directory (RocketMQ reads `$ROCKETMQ_HOME/conf/plain_acl.yml`).
pub const DEFAULT_FILE_NAME: &str = "plain_acl.yml";

/// RocketMQ refuses access and secret keys of 6 characters or fewer (`AclConstants`).
pub const KEY_MIN_CHARS: usize = 7;
/// Most accounts in one file.
pub const ACCOUNTS_MAX: usize = 10_000;

/// The ACL in force: global white addresses and accounts by access key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PlainAcl {
    /// Peers matching any of these need no signature and no permission.
    pub global_white: Vec<AddrPattern>,
    /// Accounts by access key.
    pub accounts: BTreeMap<String, Account>,
}

/// One account of `plain_acl.yml`. Its `Debug` never prints the secret key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Account {
    /// accessKey.
    pub access_key: String,
    /// secretKey.
    pub secret_key: String,
    /// whiteRemoteAddress: requests naming this account from a matching peer need no signature
    /// (their permissions are still checked).
    pub white: Option<AddrPattern>,
    /// admin: may send admin requests; with no topicPerms and no groupPerms, may use every
    /// topic and group.
    pub admin: bool,
    /// defaultTopicPerm.
    pub default_topic: Perm,
    /// defaultGroupPerm.
    pub default_group: Perm,
    /// topicPerms.
    pub topics: BTreeMap<String, Perm>,
    /// groupPerms.
    pub groups: BTreeMap<String, Perm>,
}

/// A server setting that cannot be honoured: the key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct AclSettingError {
    /// `aclEnable` or `aclFile`.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

/// The ACL that a server's `aclEnable` and `aclFile` values ask for: `None` unless
/// `aclEnable=true`; then the file `aclFile` names (or [`DEFAULT_FILE_NAME`]), a relative
/// path taken from `base` (the config file's directory; the working directory when `None`).
/// An `aclFile` without `aclEnable=true` is refused: it would look like it protects something.
pub fn from_settings(
    acl_enable: Option<&str>,
    acl_file: Option<&str>,
    base: Option<&Path>,
) -> Result<Option<PlainAcl>, AclSettingError> {
    match acl_enable.map(str::trim) {
        None | Some("false") => match acl_file {
            Some(_) => Err(AclSettingError {
                key: "aclFile",
                reason: "has no effect unless aclEnable=true; set both or neither".into(),
            }),
            None => Ok(None),
        },
        Some("true") => {
            let (key, name) = match acl_file.map(str::trim) {
                Some("") => return Err(AclSettingError { key: "aclFile", reason: "empty path".into() }),
                Some(f) => ("aclFile", f),
                None => ("aclEnable", DEFAULT_FILE_NAME),
            };
            let path = match base {
                Some(dir) if Path::new(name).is_relative() => dir.join(name),
                _ => Path::new(name).to_path_buf(),
            };
            PlainAcl::load(&path).map(Some).map_err(|e| AclSettingError { key, reason: e.to_string() })
        }
        Some(_) => Err(AclSettingError { key: "aclEnable", reason: "expected true or false".into() }),
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("white", &self.white)
            .field("admin", &self.admin)
            .field("default_topic", &self.default_topic)
            .field("default_group", &self.default_group)
            .field("topics", &self.topics)
            .field("groups", &self.groups)
            .finish()
    }
}

/// Why a `plain_acl.yml` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclParseError {
    /// Not YAML, or not the expected shape (the message has the line and column).
    #[error("{0}")]
    Yaml(String),
    /// A value is not acceptable.
    #[error("{}{key}: invalid value {value:?} ({expected})", at_line(*line))]
    Invalid {
        /// 1-based line where the value appears (0 when it cannot be located).
        line: usize,
        /// Where in the file, e.g. `accounts[1].topicPerms[0]`.
        key: String,
        /// The value.
        value: String,
        /// What was expected.
        expected: String,
    },
}

/// Why a `plain_acl.yml` file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AclFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file was read and refused.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The cause, with its line.
        source: AclParseError,
    },
}

fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileModel {
    #[serde(default)]
    global_white_remote_addresses: Option<Vec<Scalar>>,
    #[serde(default)]
    accounts: Option<Vec<AccountModel>>,
    #[serde(default)]
    #[allow(dead_code)] // Read so that RocketMQ-written files load; it has no effect.
    data_version: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AccountModel {
    access_key: Scalar,
    secret_key: Scalar,
    #[serde(default)]
    white_remote_address: Option<Scalar>,
    #[serde(default)]
    admin: Option<bool>,
    #[serde(default)]
    default_topic_perm: Option<Scalar>,
    #[serde(default)]
    default_group_perm: Option<Scalar>,
    #[serde(default)]
    topic_perms: Option<Vec<Scalar>>,
    #[serde(default)]
    group_perms: Option<Vec<Scalar>>,
}

/// A YAML scalar read as text: RocketMQ's stock file has `secretKey: 12345678`, a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(x) => x.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

impl PlainAcl {
    /// Reads and parses a `plain_acl.yml` file.
    pub fn load(path: &Path) -> Result<PlainAcl, AclFileError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| AclFileError::Read { path: shown.clone(), source })?;
        PlainAcl::parse(&text).map_err(|source| AclFileError::Parse { path: shown, source })
    }

    /// Parses the text of a `plain_acl.yml`.
    pub fn parse(text: &str) -> Result<PlainAcl, AclParseError> {
        let model: Option<FileModel> = serde_yaml_ng::from_str(text).map_err(|e| AclParseError::Yaml(e.to_string()))?;
        // An empty file is an ACL with no account and no white address: everything is refused.
        let Some(model) = model else { return Ok(PlainAcl::default()) };
        let lines = Lines(text);
        let mut acl = PlainAcl::default();
        for (i, s) in model.global_white_remote_addresses.unwrap_or_default().iter().enumerate() {
            let key = format!("globalWhiteRemoteAddresses[{i}]");
            acl.global_white.push(lines.pattern(&key, &s.text())?);
        }
        let accounts = model.accounts.unwrap_or_default();
        if accounts.len() > ACCOUNTS_MAX {
            return Err(lines.invalid(
                "accounts",
                &accounts.len().to_string(),
                format!("at most {ACCOUNTS_MAX} accounts"),
            ));
        }
        for (i, a) in accounts.into_iter().enumerate() {
            let account = lines.account(i, a)?;
            let key = format!("accounts[{i}].accessKey");
            if acl.accounts.contains_key(&account.access_key) {
                return Err(lines.invalid(&key, &account.access_key, "an access key no other account has".into()));
            }
            acl.accounts.insert(account.access_key.clone(), account);
        }
        Ok(acl)
    }
}

/// Locates values in the file text for error messages.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    /// The first line holding `value` (0 if none does).
    fn line_of(&self, value: &str) -> usize {
        if value.is_empty() {
            return 0;
        }
        self.0.lines().position(|l| l.contains(value)).map_or(0, |i| i + 1)
    }

    fn invalid(&self, key: &str, value: &str, expected: String) -> AclParseError {
        AclParseError::Invalid { line: self.line_of(value), key: key.into(), value: value.into(), expected }
    }

    fn pattern(&self, key: &str, value: &str) -> Result<AddrPattern, AclParseError> {
        AddrPattern::parse(value).map_err(|e| self.invalid(key, value, e.into()))
    }

    fn perm(&self, key: &str, value: Option<&Scalar>) -> Result<Perm, AclParseError> {
        match value {
            None => Ok(Perm::DENY),
            Some(v) => {
                let v = v.text();
                Perm::parse(&v).ok_or_else(|| self.invalid(key, &v, "DENY, PUB, SUB or PUB|SUB".into()))
            }
        }
    }

    fn account(&self, i: usize, a: AccountModel) -> Result<Account, AclParseError> {
        let (access_key, secret_key) = (a.access_key.text(), a.secret_key.text());
        for (field, v) in [("accessKey", &access_key), ("secretKey", &secret_key)] {
            if v.chars().count() < KEY_MIN_CHARS {
                let shown = if field == "secretKey" { "<hidden>" } else { v.as_str() };
                return Err(AclParseError::Invalid {
                    line: self.line_of(v),
                    key: format!("accounts[{i}].{field}"),
                    value: shown.into(),
                    expected: format!("at least {KEY_MIN_CHARS} characters"),
                });
            }
        }
        let white = match a.white_remote_address.map(|s| s.text()) {
            Some(w) if !w.trim().is_empty() => Some(self.pattern(&format!("accounts[{i}].whiteRemoteAddress"), &w)?),
            _ => None,
        };
        Ok(Account {
            default_topic: self.perm(&format!("accounts[{i}].defaultTopicPerm"), a.default_topic_perm.as_ref())?,
            default_group: self.perm(&format!("accounts[{i}].defaultGroupPerm"), a.default_group_perm.as_ref())?,
            topics: self.resources(&format!("accounts[{i}].topicPerms"), a.topic_perms, names::validate_topic)?,
            groups: self.resources(&format!("accounts[{i}].groupPerms"), a.group_perms, names::validate_group)?,
            access_key,
            secret_key,
            white,
            admin: a.admin.unwrap_or(false),
        })
    }

    fn resources(
        &self,
        key: &str,
        items: Option<Vec<Scalar>>,
        valid_name: fn(&str) -> Result<(), names::NameError>,
    ) -> Result<BTreeMap<String, Perm>, AclParseError> {
        let mut out = BTreeMap::new();
        for (j, item) in items.unwrap_or_default().iter().enumerate() {
            let (item, key) = (item.text(), format!("{key}[{j}]"));
            let Some((name, perm)) = item.split_once('=') else {
                return Err(self.invalid(&key, &item, "name=PERM, e.g. topicA=PUB|SUB".into()));
            };
            let name = name.trim();
            if let Err(e) = valid_name(name) {
                return Err(self.invalid(&key, &item, format!("a valid name before `=`: {e}")));
            }
            let perm = Perm::parse(perm)
                .ok_or_else(|| self.invalid(&key, &item, "DENY, PUB, SUB or PUB|SUB after `=`".into()))?;
            if out.insert(name.to_string(), perm).is_some() {
                return Err(self.invalid(&key, &item, format!("{name} listed once (it is listed twice)")));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RocketMQ's stock `conf/plain_acl.yml` (4.x), as shipped.
    pub(crate) const STOCK: &str = "
globalWhiteRemoteAddresses:
  - 10.10.103.*
  - 192.168.0.*

accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      # the group should convert to retry topic
      - groupA=DENY
      - groupB=PUB|SUB
      - groupC=SUB

  - accessKey: rocketmq2
    secretKey: 12345678
    whiteRemoteAddress: 192.168.1.*
    # if it is admin, it could access all resources
    admin: true
";

    #[test]
    fn the_stock_file_parses() {
        let acl = PlainAcl::parse(STOCK).unwrap();
        assert_eq!(acl.global_white.len(), 2);
        let a = &acl.accounts["RocketMQ"];
        assert_eq!((a.secret_key.as_str(), a.admin, a.white.is_none()), ("12345678", false, true));
        assert_eq!((a.default_topic, a.default_group), (Perm::DENY, Perm::SUB));
        assert_eq!(a.topics["topicB"], Perm::PUB_SUB);
        assert_eq!(a.groups["groupC"], Perm::SUB);
        let b = &acl.accounts["rocketmq2"];
        assert!(b.admin && b.white.is_some() && b.topics.is_empty());
        assert_eq!(b.default_topic, Perm::DENY, "an unset default is DENY, as in RocketMQ");
        assert_eq!(PlainAcl::parse("").unwrap(), PlainAcl::default());
        assert!(!format!("{acl:?}").contains("12345678"), "Debug hides secret keys");
    }

    fn refused(text: &str) -> String {
        PlainAcl::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn mistakes_are_refused_naming_line_and_key() {
        let acct = "accounts:\n  - accessKey: RocketMQ\n    secretKey: 12345678\n";
        for (extra, expect) in [
            ("    topicPerms: [topicA=PUB SUB]\n", "line 4: accounts[0].topicPerms[0]"),
            ("    groupPerms:\n      - groupA\n", "line 5: accounts[0].groupPerms[0]"),
            ("    defaultTopicPerm: ALL\n", "line 4: accounts[0].defaultTopicPerm"),
            ("    whiteRemoteAddress: 300.1.1.1\n", "line 4: accounts[0].whiteRemoteAddress"),
            ("    topicPerms: [../etc=PUB]\n", "accounts[0].topicPerms[0]"),
            ("    topicPerms: [t1=PUB, t1=SUB]\n", "listed twice"),
            ("    admn: true\n", "unknown field `admn`"),
            ("  - accessKey: RocketMQ\n    secretKey: 87654321\n", "accounts[1].accessKey"),
            ("  - accessKey: short\n    secretKey: 87654321\n", "at least 7 characters"),
            ("  - accessKey: longenough\n    secretKey: 123\n", "accounts[1].secretKey: invalid value \"<hidden>\""),
        ] {
            let err = refused(&format!("{acct}{extra}"));
            assert!(err.contains(expect), "{extra:?}: {err}");
        }
        assert!(refused("globalWhiteRemoteAddresses: [1.2.3]\n").contains("line 1: globalWhiteRemoteAddresses[0]"));
        assert!(refused("globalWhiteRemoteAdresses: ['*']\n").contains("unknown field"));
        assert!(refused("accounts: [\n").contains("line"), "a YAML syntax error names its line");
        assert!(refused("accounts:\n  - secretKey: 12345678\n").contains("accessKey"));
    }

    #[test]
    fn settings_load_the_named_or_default_file_or_refuse() {
        let dir = std::env::temp_dir().join(format!("rmq-acl-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(DEFAULT_FILE_NAME), STOCK).unwrap();
        std::fs::write(
            dir.join("bad.yml"),
            "accounts:\n  - accessKey: RocketMQ\n    secretKey: 12345678\n    admin: maybe\n",
        )
        .unwrap();
        assert_eq!(from_settings(None, None, Some(&dir)), Ok(None));
        assert_eq!(from_settings(Some("false"), None, Some(&dir)), Ok(None));
        assert!(from_settings(Some("true"), None, Some(&dir)).unwrap().is_some());
        assert!(from_settings(Some("true"), Some("plain_acl.yml"), Some(&dir)).unwrap().is_some());
        let err = from_settings(Some("true"), Some("bad.yml"), Some(&dir)).unwrap_err();
        assert_eq!(err.key, "aclFile");
        assert!(err.reason.contains("bad.yml") && err.reason.contains("line 4"), "{err}");
        let err = from_settings(Some("true"), Some("missing.yml"), Some(&dir)).unwrap_err();
        assert!(err.reason.contains("missing.yml"), "{err}");
        assert_eq!(from_settings(None, Some("x.yml"), None).unwrap_err().key, "aclFile");
        assert_eq!(from_settings(Some("yes"), None, None).unwrap_err().key, "aclEnable");
        let err = from_settings(Some("true"), None, Some(&dir.join("nowhere"))).unwrap_err();
        assert_eq!(err.key, "aclEnable");
        assert!(err.reason.contains(DEFAULT_FILE_NAME), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "[a-zA-Z:\\-\\[\\]{}=|*.,0-9 \n#']{0,200}") {
            let _ = PlainAcl::parse(&text);
        }
    }
}
