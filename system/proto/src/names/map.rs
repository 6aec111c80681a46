//! [`NameMap`]: a table keyed by topic or group name, looked up by hash, listed in name order.
//!
//! The broker looks a topic up several times per message (topic table, statistics, the store's
//! ConsumeQueues). In a `BTreeMap<String, _>` of 10,000 topics each lookup compares the name
//! against a dozen keys, each behind its own pointer; a profile of a 10,000-topic load put 9 %
//! of the broker's samples in those comparisons. Hashing the name once and comparing it once
//! costs the same at any table size.
//!
//! Determinism: entries are held in insertion order (`indexmap`) with a fixed-key hasher, and
//! every listing is sorted by name, so nothing observable depends on hash values, insertion
//! history or the process: a listing is what the `BTreeMap` it replaces gave.

use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};

use indexmap::IndexMap;

/// Name → value; O(1) lookups by `&str`, iteration sorted by name.
#[derive(Clone)]
pub struct NameMap<V> {
    map: IndexMap<String, V, BuildHasherDefault<DefaultHasher>>,
}

impl<V> Default for NameMap<V> {
    fn default() -> Self {
        NameMap { map: IndexMap::default() }
    }
}

impl<V> NameMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value under `name`.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.map.get(name)
    }

    /// The value under `name`, mutable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        self.map.get_mut(name)
    }

    /// True when `name` has a value.
    pub fn contains_key(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// Sets `name`'s value; returns the one it replaced.
    pub fn insert(&mut self, name: String, value: V) -> Option<V> {
        self.map.insert(name, value)
    }

    /// The value under `name`, made by `make` (and the name copied) only when there is none.
    pub fn get_or_insert_with(&mut self, name: &str, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.map.get_index_of(name) {
            Some(i) => i,
            None => self.map.insert_full(name.to_string(), make()).0,
        };
        &mut self.map[i]
    }

    /// Where `name` sits: a position for [`Self::at`] / [`Self::at_mut`], which reach the
    /// value without hashing the name again. Valid until the next [`Self::remove`] (inserts
    /// append, so they keep it).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.map.get_index_of(name)
    }

    /// The value at a position from [`Self::position`]. Panics when out of range.
    pub fn at(&self, position: usize) -> &V {
        &self.map[position]
    }

    /// The value at a position from [`Self::position`], mutable. Panics when out of range.
    pub fn at_mut(&mut self, position: usize) -> &mut V {
        &mut self.map[position]
    }

    /// Removes `name`; keeps the others' order (O(n), for the rare deletes of a name table).
    pub fn remove(&mut self, name: &str) -> Option<V> {
        self.map.shift_remove(name)
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every (name, value), sorted by name.
    pub fn iter(&self) -> std::vec::IntoIter<(&String, &V)> {
        let mut all: Vec<(&String, &V)> = self.map.iter().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    /// Every (name, value), sorted by name, values mutable.
    pub fn iter_mut(&mut self) -> std::vec::IntoIter<(&String, &mut V)> {
        let mut all: Vec<(&String, &mut V)> = self.map.iter_mut().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    /// Every name, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.iter().map(|(k, _)| k)
    }

    /// Every value, in name order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Every value, in name order, mutable.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.iter_mut().map(|(_, v)| v)
    }
}

impl<V: PartialEq> PartialEq for NameMap<V> {
    /// Same names with equal values, whatever order they were inserted in.
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<V: Eq> Eq for NameMap<V> {}

impl<V: Hash> Hash for NameMap<V> {
    /// Hashes the sorted listing, so maps that are equal hash equal.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.len().hash(state);
        for (k, v) in self.iter() {
            k.hash(state);
            v.hash(state);
        }
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for NameMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> FromIterator<(String, V)> for NameMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        NameMap { map: iter.into_iter().collect() }
    }
}

impl<V> std::ops::Index<&str> for NameMap<V> {
    type Output = V;

    /// The value under `name`; panics when there is none, like `BTreeMap`'s index.
    fn index(&self, name: &str) -> &V {
        self.map.get(name).unwrap_or_else(|| panic!("no entry named {name:?}"))
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{DefaultHasher, Hash, Hasher};

    use super::NameMap;

    fn hash_of<T: Hash>(t: &T) -> u64 {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    }

    #[test]
    fn lookups_by_str_and_listings_in_name_order_whatever_the_insertion_order() {
        let mut a = NameMap::new();
        for (i, name) in ["b", "a", "ab", "c"].into_iter().enumerate() {
            assert_eq!(a.insert(name.to_string(), i), None);
        }
        assert_eq!(a.get("ab"), Some(&2));
        assert_eq!(a.get("x"), None);
        assert_eq!(a["c"], 3);
        let listed: Vec<(&str, usize)> = a.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(listed, vec![("a", 1), ("ab", 2), ("b", 0), ("c", 3)]);
        assert_eq!(a.keys().map(String::as_str).collect::<Vec<_>>(), vec!["a", "ab", "b", "c"]);

        let mut b: NameMap<usize> =
            [("c", 3), ("ab", 2), ("a", 1), ("b", 0)].map(|(k, v)| (k.to_string(), v)).into_iter().collect();
        assert_eq!(a, b);
        assert_eq!(hash_of(&a), hash_of(&b), "equal maps hash equal");
        *b.get_or_insert_with("a", || 99) += 10;
        *b.get_or_insert_with("d", || 4) += 10;
        assert_eq!(b.values().copied().collect::<Vec<_>>(), vec![11, 2, 0, 3, 14]);
        assert_ne!(a, b);

        assert_eq!(b.remove("ab"), Some(2));
        assert_eq!(b.remove("c"), Some(3));
        assert_eq!(b.remove("c"), None);
        for v in b.values_mut() {
            *v += 1;
        }
        assert_eq!(format!("{b:?}"), r#"{"a": 12, "b": 1, "d": 15}"#);
        assert_eq!(b.len(), 3);
        assert!(b.contains_key("d") && !b.contains_key("c"));
    }

    #[test]
    fn a_position_reaches_its_value_until_a_remove() {
        let mut m = NameMap::new();
        m.insert("b".to_string(), 1);
        let b = m.position("b").expect("present");
        m.insert("a".to_string(), 2);
        assert_eq!(m.position("b"), Some(b), "an insert keeps positions");
        assert_eq!(m.position("x"), None);
        *m.at_mut(b) += 10;
        assert_eq!((*m.at(b), m["b"]), (11, 11));
        let a = m.position("a").expect("present");
        assert_eq!(*m.at(a), 2);
    }
}
