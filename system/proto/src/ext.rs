//! [`ExtFields`]: the `extFields` of a remoting command, a small map of string to string.
//!
//! A send request carries about 14 fields and its response 4 to 6; every message sent pays
//! for building the map, encoding it, decoding it on the other side and reading the typed
//! header back out. A `BTreeMap<String, String>` made each of those steps allocate a node
//! per few entries and a key string per entry. This map is one vector kept sorted by key:
//! - keys are `Cow<'static, str>`, so a typed header's keys (all `&'static str`) and the
//!   keys decoded from the wire that the protocol knows ([`intern`]) cost no allocation;
//! - inserting in key order (how every encoder writes them) is a push;
//! - lookups are a binary search over a handful of short keys.
//!
//! Iteration is in key order, exactly as the `BTreeMap` it replaces, so the encoded bytes,
//! the JSON text and the `Debug` output are unchanged.

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A key of [`ExtFields`]: borrowed when it is a known protocol key, owned otherwise.
pub type ExtKey = Cow<'static, str>;

/// The ext fields of a command: string keys to string values, iterated in key order.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtFields {
    /// Sorted by key; keys are unique.
    entries: Vec<(ExtKey, String)>,
}

impl ExtFields {
    /// An empty map.
    pub fn new() -> Self {
        ExtFields { entries: Vec::new() }
    }

    /// An empty map with room for `n` fields.
    pub fn with_capacity(n: usize) -> Self {
        ExtFields { entries: Vec::with_capacity(n) }
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every field.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_ref().cmp(key))
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.position(key).ok().map(|i| &self.entries[i].1)
    }

    /// Sets `key` to `value`; returns the value it replaces.
    pub fn insert(&mut self, key: ExtKey, value: String) -> Option<String> {
        // Encoders write keys in order: appending is the common case.
        if self.entries.last().is_none_or(|(last, _)| last.as_ref() < key.as_ref()) {
            self.entries.push((key, value));
            return None;
        }
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.position(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// The fields in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter { inner: self.entries.iter() }
    }
}

/// The key as a `&'static str` when the protocol knows it, so decoding it allocates nothing.
///
/// Covers the one-letter keys of SEND_MESSAGE_V2 and the keys of the send response and the
/// common request headers; any other key is copied.
pub fn intern(key: &str) -> ExtKey {
    const LETTERS: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v",
        "w", "x", "y", "z",
    ];
    const KNOWN: &[&str] = &[
        "MSG_REGION",
        "TRACE_ON",
        "brokerName",
        "bname",
        "consumerGroup",
        "msgId",
        "queueId",
        "queueOffset",
        "topic",
        "transactionId",
    ];
    match key.as_bytes() {
        [c @ b'a'..=b'z'] => Cow::Borrowed(LETTERS[usize::from(c - b'a')]),
        _ => match KNOWN.iter().find(|k| **k == key) {
            Some(k) => Cow::Borrowed(k),
            None => Cow::Owned(key.to_owned()),
        },
    }
}

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<ExtKey>, V: Into<String>> Extend<(K, V)> for ExtFields {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k.into(), v.into());
        }
    }
}

impl<K: Into<ExtKey>, V: Into<String>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = ExtFields::new();
        m.extend(iter);
        m
    }
}

/// The fields of an [`ExtFields`] in key order.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    inner: std::slice::Iter<'a, (ExtKey, String)>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a String);
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|(k, v)| (k.as_ref(), v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<'a> IntoIterator for &'a ExtFields {
    type Item = (&'a str, &'a String);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for ExtFields {
    type Item = (ExtKey, String);
    type IntoIter = std::vec::IntoIter<(ExtKey, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl Serialize for ExtFields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// Reads a JSON `extFields` object. Strings are taken as they are, `null` drops the field and
/// any other value (a number, a boolean) is kept as its JSON text, as RocketMQ's own decoder
/// reads them into `HashMap<String, String>`.
impl<'de> Deserialize<'de> for ExtFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = ExtFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of ext fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExtFields, A::Error> {
                let mut out = ExtFields::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value = match map.next_value::<serde_json::Value>()? {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => continue,
                        other => other.to_string(),
                    };
                    out.insert(intern(&key), value);
                }
                Ok(out)
            }
        }
        d.deserialize_map(Fields)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_keys_are_borrowed_and_others_owned() {
        assert!(matches!(intern("b"), Cow::Borrowed("b")));
        assert!(matches!(intern("queueOffset"), Cow::Borrowed("queueOffset")));
        assert!(matches!(intern("somethingElse"), Cow::Owned(ref s) if s == "somethingElse"));
        assert!(matches!(intern("B"), Cow::Owned(_)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, String),
        Remove(String),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![("[a-e]{1,2}", "[a-z]{0,3}").prop_map(|(k, v)| Op::Insert(k, v)), "[a-e]{1,2}".prop_map(Op::Remove),]
    }

    proptest! {
        /// Any sequence of inserts and removes leaves the same contents, in the same order, as
        /// a `BTreeMap` given the same sequence; each call returns what the `BTreeMap` returns.
        #[test]
        fn behaves_as_a_btree_map(ops in proptest::collection::vec(op(), 0..40)) {
            let (mut ours, mut model) = (ExtFields::new(), BTreeMap::new());
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(ours.insert(k.clone().into(), v.clone()), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(ours.remove(&k), model.remove(&k)),
                }
                let got: Vec<(&str, &String)> = ours.iter().collect();
                let want: Vec<(&str, &String)> = model.iter().map(|(k, v)| (k.as_str(), v)).collect();
                prop_assert_eq!(got, want);
                for k in ["a", "b", "ab", "e", "z"] {
                    prop_assert_eq!(ours.get(k), model.get(k));
                }
                prop_assert_eq!(format!("{ours:?}"), format!("{model:?}"));
                prop_assert_eq!(serde_json::to_string(&ours).unwrap(), serde_json::to_string(&model).unwrap());
            }
        }
    }

    #[test]
    fn json_values_of_other_types_are_kept_as_text_and_null_dropped() {
        let m: ExtFields = serde_json::from_str(r#"{"b":"T","queueId":3,"x":null,"ok":true}"#).unwrap();
        let got: Vec<(&str, &String)> = m.iter().collect();
        assert_eq!(got, vec![("b", &"T".to_string()), ("ok", &"true".to_string()), ("queueId", &"3".to_string())]);
    }
}
