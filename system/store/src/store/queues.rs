//! The store's ConsumeQueues by topic, then queue id: looked up by `&str` without building an
//! owned key, hashed by topic (a put looks its queue up twice; with `(String, i32)` keys each
//! lookup allocated, and in a `BTreeMap` of 10,000 topics compared a dozen names). A put finds
//! its queue once ([`QueueMap::locate`]) and comes back to it by position, without hashing the
//! name again.

use std::collections::BTreeMap;

use rmq_proto::names::NameMap;

/// A queue's place in a [`QueueMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueAt {
    topic: usize,
    queue_id: i32,
}

/// ConsumeQueues keyed by (topic, queue id), iterated in that order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct QueueMap<Q> {
    by_topic: NameMap<BTreeMap<i32, Q>>,
    len: usize,
}

impl<Q> Default for QueueMap<Q> {
    fn default() -> Self {
        QueueMap { by_topic: NameMap::new(), len: 0 }
    }
}

impl<Q> QueueMap<Q> {
    pub(crate) fn get(&self, topic: &str, queue_id: i32) -> Option<&Q> {
        self.by_topic.get(topic)?.get(&queue_id)
    }

    pub(crate) fn get_mut(&mut self, topic: &str, queue_id: i32) -> Option<&mut Q> {
        self.by_topic.get_mut(topic)?.get_mut(&queue_id)
    }

    /// Where the queue is, if it exists: for [`Self::at`] / [`Self::at_mut`], valid until a
    /// queue is removed.
    pub(crate) fn locate(&self, topic: &str, queue_id: i32) -> Option<QueueAt> {
        let topic = self.by_topic.position(topic)?;
        self.by_topic.at(topic).contains_key(&queue_id).then_some(QueueAt { topic, queue_id })
    }

    pub(crate) fn at(&self, at: QueueAt) -> &Q {
        &self.by_topic.at(at.topic)[&at.queue_id]
    }

    pub(crate) fn at_mut(&mut self, at: QueueAt) -> &mut Q {
        self.by_topic.at_mut(at.topic).get_mut(&at.queue_id).expect("a located queue exists")
    }

    /// Adds a queue that [`Self::locate`] did not find and returns where it is.
    pub(crate) fn insert(&mut self, topic: &str, queue_id: i32, q: Q) -> QueueAt {
        self.get_or_insert_with(topic, queue_id, || q);
        self.locate(topic, queue_id).expect("just inserted")
    }

    /// The queue, made by `make` if there is none yet.
    pub(crate) fn get_or_insert_with(&mut self, topic: &str, queue_id: i32, make: impl FnOnce() -> Q) -> &mut Q {
        let queues = self.by_topic.get_or_insert_with(topic, BTreeMap::new);
        let len = &mut self.len;
        queues.entry(queue_id).or_insert_with(|| {
            *len += 1;
            make()
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every ((topic, queue id), queue), sorted.
    pub(crate) fn iter(&self) -> impl Iterator<Item = ((&str, i32), &Q)> {
        self.by_topic.iter().flat_map(|(t, qs)| qs.iter().map(move |(id, q)| ((t.as_str(), *id), q)))
    }

    /// Every ((topic, queue id), queue), sorted.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = ((&str, i32), &mut Q)> {
        self.by_topic.iter_mut().flat_map(|(t, qs)| qs.iter_mut().map(move |(id, q)| ((t.as_str(), *id), q)))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Q> {
        self.by_topic.values().flat_map(|qs| qs.values())
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Q> {
        self.by_topic.values_mut().flat_map(|qs| qs.values_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::QueueMap;

    #[test]
    fn queues_are_found_by_name_and_listed_in_topic_then_id_order() {
        let mut m = QueueMap::default();
        for (t, id) in [("b", 1), ("a", 2), ("b", 0), ("a", 2), ("ab", 0)] {
            *m.get_or_insert_with(t, id, || 0) += 1;
        }
        assert_eq!(m.len(), 4);
        assert_eq!(m.get("a", 2), Some(&2));
        assert_eq!(m.get("a", 1), None);
        assert_eq!(m.get("c", 0), None);
        *m.get_mut("b", 0).expect("present") += 10;
        let listed: Vec<((&str, i32), &i32)> = m.iter().collect();
        assert_eq!(listed, vec![(("a", 2), &2), (("ab", 0), &1), (("b", 0), &11), (("b", 1), &1)]);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), vec![2, 1, 11, 1]);
    }

    #[test]
    fn a_located_queue_is_reached_by_position_and_inserts_keep_positions() {
        let mut m = QueueMap::default();
        assert_eq!(m.locate("a", 0), None);
        let a0 = m.insert("a", 0, 10);
        assert_eq!(m.locate("a", 0), Some(a0));
        assert_eq!(m.locate("a", 1), None, "a known topic without that queue id");
        let b3 = m.insert("b", 3, 20);
        let a1 = m.insert("a", 1, 11);
        assert_eq!((m.locate("a", 0), m.locate("b", 3), m.locate("a", 1)), (Some(a0), Some(b3), Some(a1)));
        *m.at_mut(b3) += 1;
        assert_eq!((*m.at(a0), *m.at(a1), m.get("b", 3)), (10, 11, Some(&21)));
        assert_eq!(m.len(), 3);
    }
}
