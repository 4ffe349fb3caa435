//! Where the target stores each node of a relationship flow's endpoints
//! (`sink.endpoints.placement`): the grouping stage then groups nodes by their places instead of
//! their keys' hashes (`pipeline::delivery::grouped`), and [`read`] asks the target before the
//! flow.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use etlhost_plugin_sdk::Value;

mod read;

pub use read::read;

/// The places of the start and the end nodes (the same for a query that returns both kinds).
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub start: Arc<Places>,
    pub end: Arc<Places>,
}

/// Each node's place, by the hash of its key ([`key_hash`]): the rank of its place among the
/// distinct places the target returned, so that `places` places fill `places` groups one each.
///
/// Keys are kept as their 64-bit hashes in a sorted vector (12 bytes a node, searched by
/// bisection) rather than as values: two keys with one hash share one place, which only moves a
/// node to another group; every key still has exactly one group, which is all the locks need.
#[derive(Debug, Default, PartialEq)]
pub struct Places {
    hashes: Vec<u64>,
    ranks: Vec<u32>,
    places: usize,
}

impl Places {
    /// How many distinct places the nodes are in.
    pub fn places(&self) -> usize {
        self.places
    }

    /// How many keys have a place.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The rank of the place of the key whose hash is `hash`, if the target returned it.
    pub fn rank(&self, hash: u64) -> Option<usize> {
        self.hashes
            .binary_search(&hash)
            .ok()
            .map(|i| self.ranks[i] as usize)
    }
}

/// Collects `(key, place)` pairs as a placement query returns them.
#[derive(Default)]
pub struct PlacesBuilder {
    nodes: Vec<(u64, u32)>,
    names: std::collections::HashMap<String, u32>,
}

/// More distinct places than [`MAX_PLACES`]: the target does not store nodes in a few places.
#[derive(Debug)]
pub struct TooManyPlaces;

/// The most distinct places a placement may name. Buckets are few (tens); a query that returns a
/// place per node (Neo4j's element ids) places nothing and would only cost memory.
pub const MAX_PLACES: usize = 65_536;

impl PlacesBuilder {
    /// Records that the node with key `key` (its values in the endpoint columns' order) is stored
    /// at `place`. A null place is no place.
    pub fn add<'a>(
        &mut self,
        key: impl IntoIterator<Item = &'a Value>,
        place: &Value,
    ) -> Result<(), TooManyPlaces> {
        let Some(name) = place_name(place) else {
            return Ok(());
        };
        let next = self.names.len() as u32;
        let id = match self.names.get(&name) {
            Some(id) => *id,
            None if self.names.len() >= MAX_PLACES => return Err(TooManyPlaces),
            None => *self.names.entry(name).or_insert(next),
        };
        self.nodes.push((key_hash(key), id));
        Ok(())
    }

    /// The places, ranked in the order of their names (numbers as numbers), so the same target
    /// gives the same groups whatever order the query returned its rows in.
    pub fn finish(self) -> Places {
        let mut names: Vec<(String, u32)> = self.names.into_iter().collect();
        names.sort_by(|(a, _), (b, _)| place_order(a).cmp(&place_order(b)));
        let mut rank = vec![0u32; names.len()];
        for (r, (_, id)) in names.iter().enumerate() {
            rank[*id as usize] = r as u32;
        }
        let mut nodes = self.nodes;
        for n in &mut nodes {
            n.1 = rank[n.1 as usize];
        }
        // A key returned twice (two nodes, or a hash shared) keeps its lowest place.
        nodes.sort_unstable();
        nodes.dedup_by_key(|n| n.0);
        let (hashes, ranks) = nodes.into_iter().unzip();
        Places {
            hashes,
            ranks,
            places: names.len(),
        }
    }
}

/// The place part of what a placement query returns: an ArcadeDB record id `#bucket:position`
/// names its bucket, anything else is taken whole.
fn place_name(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(match (s.strip_prefix('#'), s.find(':')) {
            (Some(_), Some(colon)) => s[..colon].to_string(),
            _ => s.clone(),
        }),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn place_order(name: &str) -> (Option<i128>, &str) {
    (name.trim_start_matches('#').parse().ok(), name)
}

/// The hash of a node's key, its values in the endpoint columns' order.
pub fn key_hash<'a>(values: impl IntoIterator<Item = &'a Value>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for v in values {
        hash_value(v, &mut h);
    }
    h.finish()
}

/// Hashes a key value so that values a Cypher `{key: value}` pattern finds the same node by hash
/// alike: 5, 5u and 5.0 are one key.
fn hash_value(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Int(i) => (0u8, *i).hash(h),
        Value::UInt(u) if *u <= i64::MAX as u64 => (0u8, *u as i64).hash(h),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => (0u8, *f as i64).hash(h),
        Value::Float(f) => (1u8, f.to_bits()).hash(h),
        Value::String(s) => (2u8, s.as_str()).hash(h),
        Value::Decimal(s) => (3u8, s.as_str()).hash(h),
        Value::Bytes(b) => (4u8, b.as_slice()).hash(h),
        Value::Null => 5u8.hash(h),
        other => (6u8, format!("{other:?}")).hash(h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_ranked_by_name_whatever_the_order_they_came_in() {
        let build = |order: &[i64]| {
            let mut b = PlacesBuilder::default();
            for &n in order {
                let key = [Value::String("t".into()), Value::Int(n)];
                b.add(&key, &Value::String(format!("#{n}:1"))).unwrap();
            }
            b.finish()
        };
        assert_eq!(build(&[10, 2, 9]), build(&[9, 10, 2]));
        let p = build(&[10, 2, 9]);
        let key = |n: i64| key_hash(&[Value::String("t".into()), Value::Int(n)]);
        assert_eq!(
            [key(2), key(9), key(10)].map(|k| p.rank(k)),
            [Some(0), Some(1), Some(2)]
        );
        // Not a record id: the whole value is the place; a null place is none.
        assert_eq!(
            place_name(&Value::String("4:ab:7".into())).as_deref(),
            Some("4:ab:7")
        );
        assert_eq!(place_name(&Value::Int(3)).as_deref(), Some("3"));
        assert_eq!(place_name(&Value::Null), None);
    }

    #[test]
    fn a_place_per_node_is_too_many() {
        let mut b = PlacesBuilder::default();
        let mut result = Ok(());
        for n in 0..=MAX_PLACES as i64 {
            result = b.add([&Value::Int(n)], &Value::Int(n));
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err());
    }
}
