//! Comparing one split: both sides stream in key order, cut into chunks of keys; a chunk whose
//! checksums agree is dropped, and only a chunk that differs is compared row by row.
//!
//! A chunk is the next `chunk_rows` source rows (extended to the end of their first key column's
//! value) and the graph rows up to the same first-key value. Its checksum on each side is the row
//! count and the wrapping sum of a 64-bit hash of every row's canonical key and compared values,
//! so the order of rows inside a chunk does not matter. Rows of a differing chunk are matched by
//! key; those without a partner wait. When the first key column is a number, date or time, both
//! sides order it alike, so what waits behind both positions is final (missing or extra) at the
//! end of the chunk and memory stays at about two chunks. Otherwise (text keys: MySQL's collation
//! and Cypher may order them differently) rows wait until the split ends.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use etlhost_plugin_sdk::{Batch, Column, Row, Value};

use super::canonical::{self, Canon, Mapping};
use super::report::{Found, Tally};

pub type Key = Vec<Canon>;

/// One row as compared: its key and the compared columns' values.
type Item = (Key, Vec<Canon>);

/// The batch schema the indexes were found in, and the key's and compared columns' indexes.
type Indexes = (Arc<[Column]>, Vec<usize>, Vec<usize>);

/// Which side a stream reads, for canonical values and messages.
#[derive(Clone, Copy)]
pub enum Side {
    Source(Mapping),
    Graph,
}

impl Side {
    fn name(&self) -> &'static str {
        match self {
            Side::Source(_) => "the source's rows",
            Side::Graph => "the graph query's rows",
        }
    }

    fn canon(&self, v: Value) -> Canon {
        match self {
            Side::Source(m) => m.source(v),
            Side::Graph => canonical::graph(v),
        }
    }
}

/// Rows of one side in key order, as [`Item`]s.
pub struct Stream<'a> {
    next: Box<dyn FnMut() -> Result<Option<Batch>, String> + 'a>,
    side: Side,
    key: &'a [String],
    compare: &'a [String],
    rows: std::vec::IntoIter<Row>,
    index: Option<Indexes>,
    peeked: Option<Item>,
    /// Rows read (with a key), and rows skipped for a NULL key.
    pub count: u64,
    pub null_keys: u64,
    /// A key or compared column its rows lack, once found (a mistake in the `verify:` block).
    pub missing_column: Option<String>,
}

impl<'a> Stream<'a> {
    pub fn new(
        side: Side,
        key: &'a [String],
        compare: &'a [String],
        next: impl FnMut() -> Result<Option<Batch>, String> + 'a,
    ) -> Self {
        Stream {
            next: Box::new(next),
            side,
            key,
            compare,
            rows: Vec::new().into_iter(),
            index: None,
            peeked: None,
            count: 0,
            null_keys: 0,
            missing_column: None,
        }
    }

    fn indexes(&mut self, schema: &Arc<[Column]>) -> Result<(), String> {
        if self
            .index
            .as_ref()
            .is_some_and(|(s, _, _)| Arc::ptr_eq(s, schema))
        {
            return Ok(());
        }
        let missing = self
            .key
            .iter()
            .chain(self.compare)
            .find(|n| !schema.iter().any(|c| &c.name == *n));
        self.missing_column = missing.cloned();
        let find = |name: &String| {
            schema.iter().position(|c| &c.name == name).ok_or_else(|| {
                let names: Vec<&str> = schema.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "{} have no column `{name}` (they have: {})",
                    self.side.name(),
                    names.join(", ")
                )
            })
        };
        let k = self.key.iter().map(find).collect::<Result<_, _>>()?;
        let c = self.compare.iter().map(find).collect::<Result<_, _>>()?;
        self.index = Some((schema.clone(), k, c));
        Ok(())
    }

    fn read(&mut self) -> Result<Option<Item>, String> {
        loop {
            if let Some(mut row) = self.rows.next() {
                let (_, k, c) = self.index.as_ref().expect("set with the batch");
                let mut take = |i: &usize| {
                    self.side
                        .canon(std::mem::replace(&mut row[*i], Value::Null))
                };
                let key: Key = k.iter().map(&mut take).collect();
                if key.contains(&Canon::Absent) {
                    self.null_keys += 1;
                    continue;
                }
                let values = c.iter().map(&mut take).collect();
                self.count += 1;
                return Ok(Some((key, values)));
            }
            match (self.next)()? {
                None => return Ok(None),
                // An empty result may name no columns (ArcadeDB names them from its rows).
                Some(batch) if batch.rows.is_empty() => {}
                Some(batch) => {
                    self.indexes(&batch.schema)?;
                    self.rows = batch.rows.into_iter();
                }
            }
        }
    }

    pub fn peek(&mut self) -> Result<Option<&Item>, String> {
        if self.peeked.is_none() {
            self.peeked = self.read()?;
        }
        Ok(self.peeked.as_ref())
    }

    pub fn take(&mut self) -> Result<Option<Item>, String> {
        match self.peeked.take() {
            Some(item) => Ok(Some(item)),
            None => self.read(),
        }
    }
}

fn checksum(items: &[Item]) -> u64 {
    items.iter().fold(0u64, |sum, item| {
        let mut h = std::hash::DefaultHasher::new();
        item.hash(&mut h);
        sum.wrapping_add(h.finish())
    })
}

/// Compares one split's two sides into `tally`.
pub fn split(
    source: &mut Stream<'_>,
    graph: &mut Stream<'_>,
    chunk_rows: usize,
    compare: &[String],
    ordered: bool,
    tally: &mut Tally,
) -> Result<(), String> {
    let mut waiting_source: BTreeMap<Key, Vec<Canon>> = BTreeMap::new();
    let mut waiting_graph: BTreeMap<Key, Vec<Canon>> = BTreeMap::new();
    // Whether the first key column orders alike on both sides (decided by the source's values).
    let mut alike: Option<bool> = None;
    let mut high: Option<Canon> = None;
    loop {
        let mut s_chunk: Vec<Item> = Vec::with_capacity(chunk_rows.min(65_536));
        while let Some(p) = source.peek()? {
            if s_chunk.len() >= chunk_rows && s_chunk.last().map(|l| &l.0[0]) != Some(&p.0[0]) {
                break;
            }
            let item = source.take()?.expect("peeked");
            let first = &item.0[0];
            alike = Some(alike.unwrap_or(ordered) && first.orders_alike());
            if high.as_ref().is_none_or(|h| first > h) {
                high = Some(first.clone());
            }
            s_chunk.push(item);
        }
        let source_done = source.peek()?.is_none();
        // A split without source rows: every graph row is extra, whatever the order.
        let ordered = alike.unwrap_or(ordered);
        let low = s_chunk.first().map(|i| i.0[0].clone());
        let mut g_chunk: Vec<Item> = Vec::new();
        while let Some(p) = graph.peek()? {
            let first = &p.0[0];
            if !source_done && high.as_ref().is_none_or(|h| first > h) {
                break;
            }
            let item = graph.take()?.expect("peeked");
            // Ordered alike and below this chunk (or past the source's end): no source row can
            // meet it any more, so it is not kept.
            let below = match &low {
                Some(l) => &item.0[0] < l,
                None => source_done,
            };
            if ordered && below && waiting_source.is_empty() {
                tally.extra.add(&item.0, None);
                continue;
            }
            g_chunk.push(item);
        }
        if s_chunk.is_empty() && g_chunk.is_empty() && source_done {
            break;
        }
        tally.chunks += 1;
        let quiet = waiting_source.is_empty() && waiting_graph.is_empty();
        if quiet && s_chunk.len() == g_chunk.len() && checksum(&s_chunk) == checksum(&g_chunk) {
            continue;
        }
        tally.chunks_differing += 1;
        for (k, v) in s_chunk {
            match waiting_graph.remove(&k) {
                Some(g) => different(tally, compare, &k, &v, &g),
                None if waiting_source.contains_key(&k) => tally.duplicate_source_keys += 1,
                None => {
                    waiting_source.insert(k, v);
                }
            }
        }
        for (k, v) in g_chunk {
            match waiting_source.remove(&k) {
                Some(s) => different(tally, compare, &k, &s, &v),
                // A second graph entity with the same key: one too many.
                None if waiting_graph.contains_key(&k) => tally.extra.add(&k, None),
                None => {
                    waiting_graph.insert(k, v);
                }
            }
        }
        if ordered {
            settle(tally, &mut waiting_source, &mut waiting_graph);
        }
    }
    settle(tally, &mut waiting_source, &mut waiting_graph);
    Ok(())
}

/// What still waits has no partner: missing in the graph, or extra there.
fn settle(
    tally: &mut Tally,
    source: &mut BTreeMap<Key, Vec<Canon>>,
    graph: &mut BTreeMap<Key, Vec<Canon>>,
) {
    for k in std::mem::take(source).into_keys() {
        tally.missing.add(&k, None);
    }
    for k in std::mem::take(graph).into_keys() {
        tally.extra.add(&k, None);
    }
}

fn different(tally: &mut Tally, compare: &[String], key: &Key, s: &[Canon], g: &[Canon]) {
    let columns: Vec<String> = compare
        .iter()
        .zip(s.iter().zip(g))
        .filter(|(_, (a, b))| a != b)
        .map(|(c, _)| c.clone())
        .collect();
    if !columns.is_empty() {
        tally.different.add(key, Some(columns));
    }
}

impl Found {
    fn add(&mut self, key: &Key, columns: Option<Vec<String>>) {
        self.count += 1;
        if self.first.len() < super::report::FIRST {
            self.first.push((key.clone(), columns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etlhost_plugin_sdk::ColumnType;

    /// Batches of `(id, v)` rows, `per` rows each.
    fn batches(rows: &[(Value, i64)], per: usize) -> Vec<Batch> {
        let schema: Arc<[Column]> = ["id", "v"]
            .map(|n| Column {
                name: n.into(),
                ty: ColumnType::Any,
            })
            .to_vec()
            .into();
        rows.chunks(per)
            .map(|c| {
                let mut b = Batch::new(schema.clone());
                b.rows = c
                    .iter()
                    .map(|(k, v)| vec![k.clone(), Value::Int(*v)])
                    .collect();
                b
            })
            .collect()
    }

    fn run(source: &[(Value, i64)], graph: &[(Value, i64)], chunk: usize) -> Tally {
        let key = vec!["id".to_string()];
        let cmp = vec!["v".to_string()];
        let (mut s, mut g) = (
            batches(source, 3).into_iter(),
            batches(graph, 2).into_iter(),
        );
        let mut ss = Stream::new(Side::Source(Mapping::default()), &key, &cmp, move || {
            Ok(s.next())
        });
        let mut gs = Stream::new(Side::Graph, &key, &cmp, move || Ok(g.next()));
        let mut t = Tally::default();
        split(&mut ss, &mut gs, chunk, &cmp, true, &mut t).unwrap();
        t.source_rows = ss.count;
        t.graph_rows = gs.count;
        t
    }

    fn keys(f: &Found) -> Vec<String> {
        f.first.iter().map(|(k, _)| k[0].show()).collect()
    }

    #[test]
    fn ordered_keys_find_each_difference_across_chunks() {
        let ints = |r: std::ops::Range<i64>| -> Vec<(Value, i64)> {
            r.map(|i| (Value::Int(i), i * 10)).collect()
        };
        let source = ints(0..40);
        let t = run(&source, &source, 4);
        assert!(t.matches());
        assert_eq!((t.chunks, t.chunks_differing), (10, 0));

        let mut graph: Vec<(Value, i64)> = ints(-3..40)
            .into_iter()
            .filter(|(k, _)| *k != Value::Int(17))
            .collect();
        graph[25].1 = 0; // id 23
        graph.push((Value::Int(41), 0));
        let mut source = source;
        source.push((Value::Int(45), 1));
        let t = run(&source, &graph, 4);
        assert_eq!(keys(&t.missing), ["17", "45"]);
        assert_eq!(keys(&t.extra), ["-3", "-2", "-1", "41"]);
        assert_eq!(keys(&t.different), ["23"]);
        assert_eq!((t.source_rows, t.graph_rows), (41, 43));
    }

    #[test]
    fn text_keys_out_of_order_still_match() {
        let s = |k: &str, v| (Value::String(k.into()), v);
        // MySQL's case-insensitive order against Cypher's code point order.
        let source = [s("a", 1), s("B", 2), s("c", 3), s("D", 4)];
        let graph = [s("B", 2), s("D", 4), s("a", 1), s("c", 9), s("e", 5)];
        let t = run(&source, &graph, 1);
        assert_eq!(t.missing.count, 0);
        assert_eq!(keys(&t.extra), ["\"e\""]);
        assert_eq!(keys(&t.different), ["\"c\""]);
    }

    #[test]
    fn a_second_entity_with_the_same_key_is_extra() {
        let i = |k, v| (Value::Int(k), v);
        let t = run(&[i(1, 1), i(2, 2)], &[i(1, 1), i(2, 2), i(2, 2)], 10);
        assert_eq!(keys(&t.extra), ["2"]);
        assert_eq!(t.missing.count + t.different.count, 0);
    }
}
