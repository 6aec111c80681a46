//! Queue allocation among a consumer group's members. Every member computes the same answer
//! from the same sorted inputs; each queue gets exactly one owner.

use rmq_proto::body::MessageQueue;

/// AllocateMessageQueueAveragely: contiguous blocks; the first `n mod c` members get one extra.
pub fn allocate_averagely(queues: &[MessageQueue], members: &[String], me: &str) -> Vec<MessageQueue> {
    let (queues, members) = sorted(queues, members);
    let Some(i) = members.iter().position(|m| m == me) else { return Vec::new() };
    let (n, c) = (queues.len(), members.len());
    if n == 0 {
        return Vec::new();
    }
    let m = n % c;
    let count = if n <= c {
        1
    } else if i < m {
        n / c + 1
    } else {
        n / c
    };
    let start = if i < m { i * count } else { i * count + m };
    (0..count).filter_map(|k| queues.get(start + k).cloned()).collect()
}

/// AllocateMessageQueueAveragelyByCircle: queue j goes to member j mod c.
pub fn allocate_by_circle(queues: &[MessageQueue], members: &[String], me: &str) -> Vec<MessageQueue> {
    let (queues, members) = sorted(queues, members);
    let Some(i) = members.iter().position(|m| m == me) else { return Vec::new() };
    queues.into_iter().enumerate().filter(|(j, _)| j % members.len() == i).map(|(_, q)| q).collect()
}

fn sorted(queues: &[MessageQueue], members: &[String]) -> (Vec<MessageQueue>, Vec<String>) {
    let mut q = queues.to_vec();
    q.sort();
    q.dedup();
    let mut m = members.to_vec();
    m.sort();
    m.dedup();
    (q, m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n).map(|q| MessageQueue { topic: "T".into(), broker_name: format!("b{}", q % 3), queue_id: q }).collect()
    }

    proptest! {
        #[test]
        fn every_queue_has_exactly_one_owner(n in 0i32..64, c in 1usize..12) {
            let qs = queues(n);
            let members: Vec<String> = (0..c).map(|i| format!("client-{i}")).collect();
            for alloc in [allocate_averagely, allocate_by_circle] {
                let mut owners: BTreeMap<MessageQueue, usize> = BTreeMap::new();
                for m in &members {
                    for q in alloc(&qs, &members, m) {
                        *owners.entry(q).or_default() += 1;
                    }
                }
                prop_assert_eq!(owners.len(), qs.len());
                prop_assert!(owners.values().all(|&k| k == 1));
            }
        }
    }

    #[test]
    fn averagely_matches_rocketmq_blocks() {
        let members: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let ids =
            |me: &str| allocate_averagely(&queues(8), &members, me).iter().map(|q| q.queue_id).collect::<Vec<_>>();
        // Sorted by (topic, broker, id): b0 has 0,3,6; b1 has 1,4,7; b2 has 2,5.
        assert_eq!(ids("a"), vec![0, 3, 6]);
        assert_eq!(ids("b"), vec![1, 4, 7]);
        assert_eq!(ids("c"), vec![2, 5]);
        assert!(allocate_averagely(&queues(8), &members, "stranger").is_empty());
    }
}
