//! Who subscribed to what on one broker connection: one broker subscription per distinct
//! filter however many services share it, each with its own subscription identifier, and a
//! [`Trie`] of the filters for dispatch.
//!
//! Exactly one copy per service: with overlapping filters an MQTT 5 broker may send one copy
//! of a publish per matching subscription (mosquitto does), each carrying the identifiers of
//! the subscriptions it answers. A service gets the copy carrying the lowest identifier among
//! its non-shared filters that match; a copy carrying a shared subscription's identifier (the
//! broker picked this node) goes to one of the services sharing it, in turn. A broker without
//! identifiers sends one copy per client for overlapping non-shared filters, and every
//! matching service gets it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use busbar_base::topic::TopicFilter;

use super::trie::Trie;

/// One subscriber of a filter, as the trie holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    id: u32,
    shared: bool,
    service: Arc<str>,
}

#[derive(Debug)]
struct Entry {
    id: u32,
    services: BTreeSet<Arc<str>>,
}

/// What a change asks of the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing: the filter was (or still is) subscribed for another service.
    None,
    /// Subscribe to the filter with this identifier.
    Subscribe(u32),
    /// Unsubscribe from the filter.
    Unsubscribe(TopicFilter),
}

/// The subscriptions of one connection.
#[derive(Debug)]
pub struct Subscriptions {
    filters: HashMap<TopicFilter, Entry>,
    by_id: HashMap<u32, TopicFilter>,
    by_service: HashMap<Arc<str>, BTreeSet<TopicFilter>>,
    trie: Trie<Target>,
    next_id: u32,
    free: Vec<u32>,
    max: usize,
    /// Whose turn it is among services sharing a shared subscription.
    turn: usize,
}

/// The largest subscription identifier MQTT 5 allows.
const MAX_ID: u32 = 268_435_455;

impl Subscriptions {
    /// None yet; at most `max` distinct filters.
    pub fn new(max: usize) -> Self {
        Self {
            filters: HashMap::new(),
            by_id: HashMap::new(),
            by_service: HashMap::new(),
            trie: Trie::new(),
            next_id: 1,
            free: Vec::new(),
            max,
            turn: 0,
        }
    }

    /// Subscribes `service` to `filter`; an error names the limit.
    pub fn add(&mut self, service: &Arc<str>, filter: &TopicFilter) -> Result<Change, String> {
        if let Some(e) = self.filters.get_mut(filter) {
            if e.services.insert(service.clone()) {
                let target = target(e.id, filter, service);
                self.trie.insert(filter.pattern(), target);
                self.by_service
                    .entry(service.clone())
                    .or_default()
                    .insert(filter.clone());
            }
            return Ok(Change::None);
        }
        if self.filters.len() >= self.max {
            return Err(format!(
                "{} distinct filters are subscribed on this connection, its limit",
                self.max
            ));
        }
        // Fresh identifiers, in increasing order: an identifier is not reused while a copy
        // of a publish may still carry it (freed ones only once all 268 million were used).
        let id = if self.next_id <= MAX_ID {
            self.next_id += 1;
            self.next_id - 1
        } else {
            self.free
                .pop()
                .ok_or_else(|| "no subscription identifier is left".to_owned())?
        };
        self.filters.insert(
            filter.clone(),
            Entry {
                id,
                services: BTreeSet::from([service.clone()]),
            },
        );
        self.by_id.insert(id, filter.clone());
        self.trie
            .insert(filter.pattern(), target(id, filter, service));
        self.by_service
            .entry(service.clone())
            .or_default()
            .insert(filter.clone());
        Ok(Change::Subscribe(id))
    }

    /// Ends `service`'s subscription to `filter`.
    pub fn remove(&mut self, service: &str, filter: &TopicFilter) -> Change {
        let Some(e) = self.filters.get_mut(filter) else {
            return Change::None;
        };
        let Some(service) = e.services.take(service) else {
            return Change::None;
        };
        let id = e.id;
        let now_unused = e.services.is_empty();
        self.trie
            .remove(filter.pattern(), &target(id, filter, &service));
        if let Some(set) = self.by_service.get_mut(&service) {
            set.remove(filter);
            if set.is_empty() {
                self.by_service.remove(&service);
            }
        }
        if !now_unused {
            return Change::None;
        }
        self.filters.remove(filter);
        self.by_id.remove(&id);
        self.free.push(id);
        Change::Unsubscribe(filter.clone())
    }

    /// Ends `service`'s subscriptions that no filter of `keep` covers (with none: all of
    /// them): the filters no one holds any more.
    pub fn prune(&mut self, service: &str, keep: &[TopicFilter]) -> Vec<TopicFilter> {
        let outside: Vec<TopicFilter> = self
            .by_service
            .get(service)
            .map(|s| {
                s.iter()
                    .filter(|f| !keep.iter().any(|k| k.covers(f)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        outside
            .iter()
            .filter_map(|f| match self.remove(service, f) {
                Change::Unsubscribe(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    /// Ends the subscription to `filter` of every service (the broker refused it).
    pub fn drop_filter(&mut self, filter: &TopicFilter) -> Vec<Arc<str>> {
        let services: Vec<Arc<str>> = self
            .filters
            .get(filter)
            .map(|e| e.services.iter().cloned().collect())
            .unwrap_or_default();
        for s in &services {
            let _ = self.remove(s, filter);
        }
        services
    }

    /// Whether `service` holds any subscription here.
    pub fn holds(&self, service: &str) -> bool {
        self.by_service.contains_key(service)
    }

    /// The filter with identifier `id`.
    pub fn filter(&self, id: u32) -> Option<&TopicFilter> {
        self.by_id.get(&id)
    }

    /// The identifier of `filter`, if subscribed.
    pub fn id_of(&self, filter: &TopicFilter) -> Option<u32> {
        self.filters.get(filter).map(|e| e.id)
    }

    /// Every distinct filter's identifier, in order.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.by_id.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Distinct filters.
    pub fn len(&self) -> usize {
        self.filters.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The services that get this copy of a publish on `topic` carrying subscription
    /// identifiers `ids` (empty: the broker sends none). Services of this node sharing one
    /// shared subscription take its publishes in turn.
    pub fn recipients(&mut self, topic: &str, ids: &[usize]) -> Vec<Arc<str>> {
        let carried = |id: u32| ids.is_empty() || ids.contains(&(id as usize));
        // service → lowest matching non-shared id; shared id → its services
        let mut lowest: BTreeMap<Arc<str>, u32> = BTreeMap::new();
        let mut shared: BTreeMap<u32, Vec<Arc<str>>> = BTreeMap::new();
        self.trie.for_each_match(topic, |t| {
            if t.shared {
                shared.entry(t.id).or_default().push(t.service.clone());
            } else {
                let id = lowest.entry(t.service.clone()).or_insert(t.id);
                *id = (*id).min(t.id);
            }
        });
        let mut out: BTreeSet<Arc<str>> = lowest
            .into_iter()
            .filter(|(_, id)| carried(*id))
            .map(|(service, _)| service)
            .collect();
        for (id, services) in shared {
            if carried(id) {
                self.turn = self.turn.wrapping_add(1);
                if let Some(s) = services.get(self.turn % services.len()) {
                    out.insert(s.clone());
                }
            }
        }
        out.into_iter().collect()
    }
}

fn target(id: u32, filter: &TopicFilter, service: &Arc<str>) -> Target {
    Target {
        id,
        shared: filter.share_group().is_some(),
        service: service.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> TopicFilter {
        TopicFilter::parse(s).unwrap()
    }

    #[test]
    fn one_broker_subscription_per_filter_however_many_services_share_it() {
        let mut subs = Subscriptions::new(10);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        assert_eq!(subs.add(&a, &f("x/+")).unwrap(), Change::Subscribe(1));
        assert_eq!(subs.add(&b, &f("x/+")).unwrap(), Change::None);
        assert_eq!(subs.add(&a, &f("x/+")).unwrap(), Change::None);
        assert_eq!(subs.recipients("x/1", &[1]), vec![a.clone(), b.clone()]);
        assert_eq!(subs.remove("a", &f("x/+")), Change::None);
        assert_eq!(subs.recipients("x/1", &[1]), vec![b.clone()]);
        assert_eq!(subs.prune("b", &[]), vec![f("x/+")]);
        assert!(subs.is_empty() && subs.recipients("x/1", &[]).is_empty());
        // Identifiers are not reused while fresh ones are left.
        assert_eq!(subs.add(&a, &f("y")).unwrap(), Change::Subscribe(2));
        // Narrower grants: what they do not cover ends.
        subs.add(&a, &f("z/1")).unwrap();
        assert_eq!(subs.prune("a", &[f("z/#")]), vec![f("y")]);
        assert!(subs.holds("a"));
        assert_eq!(subs.drop_filter(&f("z/1")), vec![a.clone()]);
        assert!(!subs.holds("a"));
    }

    #[test]
    fn overlapping_filters_give_each_service_one_copy() {
        let mut subs = Subscriptions::new(10);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        subs.add(&a, &f("x/#")).unwrap(); // 1
        subs.add(&a, &f("x/+")).unwrap(); // 2
        subs.add(&b, &f("x/+")).unwrap(); // 2
        // One copy per subscription (mosquitto): a takes the copy of 1, b the copy of 2.
        assert_eq!(subs.recipients("x/y", &[1]), vec![a.clone()]);
        assert_eq!(subs.recipients("x/y", &[2]), vec![b.clone()]);
        // One copy with every identifier.
        assert_eq!(subs.recipients("x/y", &[1, 2]), vec![a.clone(), b.clone()]);
        // No identifiers: everyone matching.
        assert_eq!(subs.recipients("x/y", &[]), vec![a.clone(), b.clone()]);
        assert!(subs.recipients("z", &[1, 2]).is_empty());
    }

    #[test]
    fn shared_subscriptions_deliver_only_the_copies_the_broker_picked_this_node_for() {
        let mut subs = Subscriptions::new(10);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        subs.add(&a, &f("$share/g/jobs/+")).unwrap(); // 1
        subs.add(&b, &f("jobs/#")).unwrap(); // 2
        assert_eq!(subs.recipients("jobs/1", &[2]), vec![b.clone()]);
        assert_eq!(subs.recipients("jobs/1", &[1]), vec![a.clone()]);
        assert_eq!(
            subs.recipients("jobs/1", &[1, 2]),
            vec![a.clone(), b.clone()]
        );
    }

    #[test]
    fn the_limit_is_on_distinct_filters() {
        let mut subs = Subscriptions::new(2);
        let a: Arc<str> = Arc::from("a");
        subs.add(&a, &f("1")).unwrap();
        subs.add(&a, &f("2")).unwrap();
        let e = subs.add(&a, &f("3")).unwrap_err();
        assert!(e.contains("its limit"), "{e}");
        subs.add(&Arc::from("b"), &f("2")).unwrap();
    }
}
