//! Relationship rows in parallel without conflicts: the rows of a flow whose sink names its
//! endpoint columns (`sink.endpoints`) are ordered and grouped so that batches written at the
//! same time never touch the same node.
//!
//! Two writers that add relationships to the same node in concurrent transactions conflict in the
//! graph database (ArcadeDB: `DeadlockDetected`, "concurrent change to the same record"; Neo4j:
//! lock waits and deadlocks), and each conflict costs a rolled-back batch and a backoff. Neo4j's
//! Spark loader avoids them by partitioning, and so does this stage:
//!
//! - each endpoint key is hashed into one of `G = 2 * writers + 1` groups; a row whose start node is
//!   in group `a` and end node in group `b` belongs to the bucket of the pair `{a, b}`;
//! - the buckets are written in `G` rounds, a round-robin tournament over the groups: round `r`
//!   holds the pairs with `a + b = r (mod G)`, `writers` pairs of two groups and, since `G` is odd,
//!   the one group that sits the round out with itself (`{a, a}`, `2a = r`). No group appears twice
//!   in a round, so no two buckets of a round share a node, whether start and end nodes are the
//!   same kind (monopartite, `(:Person)-[:KNOWS]->(:Person)`) or not (bipartite);
//! - a writer holds the locks of its batch's two groups while it writes it (taken in group order,
//!   so two writers never wait for each other in a circle): batches that share a group, and so
//!   possibly a node, are never written at once. The rounds are the order batches are handed out
//!   in, one batch of each bucket of a round in turn, so that writers mostly find their groups
//!   free; there is no barrier between rounds, so a slow batch or a retry holds only its own two
//!   groups, not a whole round.
//!
//! Rows are collected into a window (`max_batch_size * G * G` rows, at most [`MAX_WINDOW`]) before
//! being scheduled, so memory stays bounded in table size; the window is also flushed when the
//! input ends (every reader returned), when the rows' shape changes, and after `batch_timeout`.
//! Each row is handed to exactly one batch, with its origin, so acknowledgements and checkpoints
//! are what they are without grouping (the progress tracker takes rows in any order).
//!
//! Only the nodes found by the endpoint columns are protected: a query that also writes to other
//! nodes can still conflict on those.
//!
//! Hashing keeps concurrent batches off each other's nodes, not off each other's pages: ArcadeDB
//! checks conflicts per page, and transactions for different nodes of one bucket still allocate
//! edge-list segments in the same pages ("Slot rebase not possible"). With a
//! [`Placement`](crate::placement::Placement) (`sink.endpoints.placement`, read from the target
//! before the flow) a node's group is the place the target stores it in (its bucket) instead of
//! its hash, so concurrent batches write only to their own groups' buckets and never share a page.
//!
//! The grouped mode's batcher is [`run`], and a writer writes its batches with [`write`].

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use etlhost_plugin_sdk::{Schema, Value};

use super::plain;
use crate::pipeline::batcher;
use crate::pipeline::seams::SinkSide;
use crate::pipeline::settings::Endpoints;
use crate::pipeline::shared::Shared;
use crate::pipeline::work::{Chunk, Lane, Limits, Work};
use crate::placement::{key_hash, Places};
use crate::transform::Origin;

/// The most rows a window holds before it is scheduled.
pub const MAX_WINDOW: usize = 1_000_000;

type Entry = (Vec<Value>, (u32, Origin));

struct Window {
    schema: Schema,
    /// The endpoint columns' positions in `schema`; `None` when one is missing (reported).
    columns: Option<(Vec<usize>, Vec<usize>)>,
    /// `[round][lower group of the pair]`: rows in the order they came.
    buckets: Vec<Vec<Vec<Entry>>>,
    rows: usize,
    since: Instant,
}

/// The grouping batcher: as [`batcher::run`], but batches are scheduled as the module docs say.
/// With one writer nothing can conflict, and the plain batcher runs instead.
pub fn run(
    input: Receiver<Chunk>,
    output: Sender<Work>,
    limits: Limits,
    endpoints: &Endpoints,
    writers: usize,
    shared: &Shared,
) {
    if writers <= 1 {
        return batcher::run(input, output, limits);
    }
    let groups = 2 * writers + 1;
    let locks: Arc<[Mutex<()>]> = (0..groups).map(|_| Mutex::new(())).collect();
    let window_rows = limits
        .rows
        .saturating_mul(groups * groups)
        .clamp(1, MAX_WINDOW);
    let mut window: Option<Window> = None;
    let mut reported = false;
    let (start_places, end_places) = match &endpoints.placement {
        Some(p) => (Some(&*p.start), Some(&*p.end)),
        None => (None, None),
    };
    let (mut unplaced, mut ends) = (0u64, 0u64);
    loop {
        let next = match (limits.timeout, &window) {
            (Some(t), Some(w)) => match input.recv_timeout(t.saturating_sub(w.since.elapsed())) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => {
                    flush(window.take().expect("checked"), &output, limits, &locks);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => None,
            },
            _ => input.recv().ok(),
        };
        let Some(chunk) = next else { break };
        if window
            .as_ref()
            .is_some_and(|w| w.schema != chunk.batch.schema)
        {
            flush(window.take().expect("checked"), &output, limits, &locks);
        }
        let w = window.get_or_insert_with(|| {
            let columns = positions(&chunk.batch.schema, endpoints);
            if let Err(e) = &columns {
                // Reading stops; the rows read so far are still written, in one bucket.
                if !std::mem::replace(&mut reported, true) {
                    shared.fail(e.clone());
                }
            }
            Window {
                schema: chunk.batch.schema.clone(),
                columns: columns.ok(),
                buckets: (0..groups)
                    .map(|_| (0..groups).map(|_| Vec::new()).collect())
                    .collect(),
                rows: 0,
                since: Instant::now(),
            }
        });
        for (i, row) in chunk.batch.rows.into_iter().enumerate() {
            let (a, b) = match &w.columns {
                Some((start, end)) => {
                    ends += 2;
                    (
                        group(&row, start, groups, start_places, &mut unplaced),
                        group(&row, end, groups, end_places, &mut unplaced),
                    )
                }
                None => (0, 0),
            };
            let origin = match &chunk.origins {
                Some(o) => o[i],
                None => Origin::Row(chunk.first + i as u64),
            };
            w.buckets[(a + b) % groups][a.min(b)].push((row, (chunk.split, origin)));
            w.rows += 1;
        }
        if w.rows >= window_rows {
            flush(window.take().expect("just filled"), &output, limits, &locks);
        }
    }
    if let Some(w) = window {
        flush(w, &output, limits, &locks);
    }
    if unplaced > 0 {
        tracing::info!(
            "sink.endpoints.placement: {unplaced} of {ends} relationship ends have a key the placement query did not return; they are grouped by its hash"
        );
    }
}

/// Where the endpoint columns are in rows of `schema`.
fn positions(schema: &Schema, e: &Endpoints) -> Result<(Vec<usize>, Vec<usize>), String> {
    let find = |key: &str, names: &[String]| {
        names
            .iter()
            .map(|n| {
                schema.iter().position(|c| &c.name == n).ok_or_else(|| {
                    let have: Vec<&str> = schema.iter().map(|c| c.name.as_str()).collect();
                    format!(
                        "sink.endpoints.{key}: column `{n}` is not in the source's rows (they have {})",
                        have.join(", ")
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok((find("start", &e.start)?, find("end", &e.end)?))
}

/// The group of the node the values at `columns` of `row` find: its place's, or its hash's when
/// it has none (counted in `unplaced`).
fn group(
    row: &[Value],
    columns: &[usize],
    groups: usize,
    places: Option<&Places>,
    unplaced: &mut u64,
) -> usize {
    let h = key_hash(columns.iter().map(|&c| &row[c]));
    match places.map(|p| p.rank(h)) {
        Some(Some(rank)) => rank % groups,
        Some(None) => {
            *unplaced += 1;
            (h % groups as u64) as usize
        }
        None => (h % groups as u64) as usize,
    }
}

/// Hands a window's batches out round after round, one batch of each bucket of a round in turn.
fn flush(w: Window, output: &Sender<Work>, limits: Limits, locks: &Arc<[Mutex<()>]>) {
    let groups = locks.len();
    for (r, round) in w.buckets.into_iter().enumerate() {
        let mut lanes: Vec<((usize, usize), std::vec::IntoIter<Work>)> = round
            .into_iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(lower, b)| {
                let upper = (r + groups - lower) % groups;
                ((lower, upper), batches(&w.schema, b, limits).into_iter())
            })
            .collect();
        while !lanes.is_empty() {
            lanes.retain_mut(|(pair, batches)| match batches.next() {
                Some(mut work) => {
                    work.lane = Some(Lane::new(locks.clone(), *pair));
                    output.send(work).expect("writers outlive the batcher");
                    true
                }
                None => false,
            });
        }
    }
}

/// A bucket's rows cut into batches by the flow's rows and bytes limits.
fn batches(schema: &Schema, rows: Vec<Entry>, limits: Limits) -> Vec<Work> {
    let mut out = Vec::new();
    let mut current: Option<(Work, usize)> = None;
    for (row, origin) in rows {
        let (work, bytes) = current.get_or_insert_with(|| (Work::empty(schema.clone()), 0));
        if limits.bytes.is_some() {
            *bytes += row.iter().map(|v| v.approx_size()).sum::<usize>();
        }
        work.batch.rows.push(row);
        work.origin.push(origin);
        if work.batch.rows.len() >= limits.rows || limits.bytes.is_some_and(|max| *bytes >= max) {
            out.push(current.take().expect("just filled").0);
        }
    }
    out.extend(current.map(|(w, _)| w));
    out
}

/// Writes a batch as the plain mode does, once no other writer holds its groups.
pub fn write(sink: &mut dyn SinkSide, work: &Work, shared: &Shared) {
    let _held = work.lane.as_ref().map(Lane::hold);
    plain::write(sink, work, shared);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{execute, Control, SinkSide, SourceSide, SplitRead};
    use crate::placement::{Placement, PlacesBuilder};
    use crate::plugin::PluginError;
    use crate::stats::Counters;
    use etlhost_plugin_sdk::Batch;
    use etlhost_plugin_sdk::{Column, ColumnType, KeyRange, Split};
    use std::collections::{HashMap, HashSet};
    use std::time::Duration;

    /// Relationship rows `(id, a, b)` between `nodes` nodes, ids `0..rows`, one split per reader.
    struct Edges {
        nodes: i64,
    }

    struct EdgeReader {
        next: i64,
        end: i64,
        nodes: i64,
    }

    impl SourceSide for Edges {
        fn open_split(&self, split: &Split) -> Result<Box<dyn SplitRead>, PluginError> {
            let r = split.range.as_ref().expect("ranges");
            let int = |v: &Option<Value>| match v {
                Some(Value::Int(i)) => *i,
                _ => unreachable!(),
            };
            Ok(Box::new(EdgeReader {
                next: int(&r.start),
                end: int(&r.end),
                nodes: self.nodes,
            }))
        }
    }

    impl SplitRead for EdgeReader {
        fn next_batch(&mut self) -> Result<Option<Batch>, PluginError> {
            if self.next >= self.end {
                return Ok(None);
            }
            let to = (self.next + 97).min(self.end);
            let n = self.nodes;
            let rows = (self.next..to)
                .map(|i| {
                    vec![
                        Value::Int(i),
                        Value::Int(i % n),
                        Value::Int((i * 7 + i / n) % n),
                    ]
                })
                .collect();
            self.next = to;
            let col = |name: &str| Column {
                name: name.into(),
                ty: ColumnType::Int,
            };
            let schema = vec![col("id"), col("a"), col("b")].into();
            Ok(Some(Batch { schema, rows }))
        }
    }

    /// Marks the nodes of the batch it writes as busy, and counts a conflict when another writer
    /// holds one of them at that moment.
    struct Graph {
        busy: Arc<Mutex<HashSet<i64>>>,
        conflicts: Arc<Mutex<usize>>,
        written: Arc<Mutex<HashMap<i64, usize>>>,
    }

    impl SinkSide for Graph {
        fn write_batch(&mut self, batch: &Batch) -> Result<(), PluginError> {
            let int = |v: &Value| match v {
                Value::Int(i) => *i,
                _ => unreachable!(),
            };
            let nodes: HashSet<i64> = batch
                .rows
                .iter()
                .flat_map(|r| [int(&r[1]), int(&r[2])])
                .collect();
            {
                let mut busy = self.busy.lock().unwrap();
                if nodes.iter().any(|n| busy.contains(n)) {
                    *self.conflicts.lock().unwrap() += 1;
                }
                busy.extend(&nodes);
            }
            // The "transaction": long enough for the other writers to start theirs.
            for _ in 0..50 {
                std::thread::yield_now();
            }
            let mut w = self.written.lock().unwrap();
            for r in &batch.rows {
                *w.entry(int(&r[0])).or_default() += 1;
            }
            drop(w);
            let mut busy = self.busy.lock().unwrap();
            for n in &nodes {
                busy.remove(n);
            }
            Ok(())
        }

        fn finish(&mut self) -> Result<(), PluginError> {
            Ok(())
        }
    }

    fn run_edges(rows: i64, writers: usize, batch: usize) -> (u64, usize, HashMap<i64, usize>) {
        run_edges_placed(rows, writers, batch, None)
    }

    fn run_edges_placed(
        rows: i64,
        writers: usize,
        batch: usize,
        placement: Option<Placement>,
    ) -> (u64, usize, HashMap<i64, usize>) {
        let busy: Arc<Mutex<HashSet<i64>>> = Default::default();
        let conflicts: Arc<Mutex<usize>> = Default::default();
        let written: Arc<Mutex<HashMap<i64, usize>>> = Default::default();
        let sinks = (0..writers)
            .map(|_| {
                Box::new(Graph {
                    busy: busy.clone(),
                    conflicts: conflicts.clone(),
                    written: written.clone(),
                }) as Box<dyn SinkSide>
            })
            .collect();
        let readers = 2;
        let splits = (0..readers as i64)
            .map(|i| Split {
                cursor: None,
                id: i as u32,
                range: Some(KeyRange {
                    column: "id".into(),
                    start: Some(Value::Int(rows * i / 2)),
                    end: Some(Value::Int(rows * (i + 1) / 2)),
                    nulls: false,
                    after: None,
                    columns: Vec::new(),
                }),
                stream: None,
            })
            .collect();
        let settings = crate::pipeline::Settings {
            job: "grouped".into(),
            flow: None,
            readers,
            max_batch_rows: batch,
            max_batch_bytes: None,
            batch_timeout: None,
            max_retries: 0,
            retry_backoff: Duration::ZERO,
            max_failed_rows: 0,
            endpoints: Some(Endpoints {
                start: vec!["a".into()],
                end: vec!["b".into()],
                placement,
            }),
            dead_letter: std::env::temp_dir().join("etlhost-grouping-never.jsonl"),
            checkpoint: None,
            progress: None,
        };
        let summary = execute(
            Arc::new(Edges { nodes: 101 }),
            sinks,
            splits,
            settings,
            Arc::new(Control::default()),
            Arc::new(Counters::new(readers)),
            None,
        );
        assert_eq!(summary.read, rows as u64);
        let conflicts = *conflicts.lock().unwrap();
        let written = written.lock().unwrap().clone();
        (summary.written, conflicts, written)
    }

    #[test]
    fn grouped_rows_are_written_once_and_concurrent_batches_share_no_node() {
        for (rows, writers, batch) in [(10_000, 4, 100), (5_003, 3, 7), (1, 2, 10), (0, 4, 10)] {
            let (written, conflicts, per_row) = run_edges(rows, writers, batch);
            assert_eq!(written, rows as u64, "{rows} rows, {writers} writers");
            assert_eq!(conflicts, 0, "{rows} rows, {writers} writers");
            assert_eq!(per_row.len(), rows as usize);
            assert!(per_row.values().all(|n| *n == 1), "a row written twice");
        }
    }

    /// ArcadeDB-like places for the test graph's 101 nodes: node `n` in bucket `#(3 + n % 9)`,
    /// except the nodes of `missing`.
    fn buckets(missing: &[i64]) -> Places {
        let mut b = PlacesBuilder::default();
        for n in (0..101).filter(|n| !missing.contains(n)) {
            let place = Value::String(format!("#{}:{}", 3 + n % 9, n / 9));
            b.add([&Value::Int(n)], &place).unwrap();
        }
        b.finish()
    }

    #[test]
    fn placed_rows_are_written_once_and_concurrent_batches_share_no_node() {
        // Four writers, nine groups, nine places; some nodes unplaced (grouped by hash).
        let places = Arc::new(buckets(&[0, 5, 50]));
        assert_eq!((places.places(), places.len()), (9, 98));
        for (rows, writers, batch) in [(10_000, 4, 100), (5_003, 3, 7)] {
            let placement = Placement {
                start: places.clone(),
                end: places.clone(),
            };
            let (written, conflicts, per_row) =
                run_edges_placed(rows, writers, batch, Some(placement));
            assert_eq!(written, rows as u64, "{rows} rows, {writers} writers");
            assert_eq!(conflicts, 0, "{rows} rows, {writers} writers");
            assert_eq!(per_row.len(), rows as usize);
            assert!(per_row.values().all(|n| *n == 1), "a row written twice");
        }
    }

    #[test]
    fn a_placed_node_is_in_its_places_group_and_an_unplaced_one_in_its_hashs() {
        let places = buckets(&[7]);
        let mut unplaced = 0;
        let g =
            |n: i64, unplaced: &mut u64| group(&[Value::Int(n)], &[0], 9, Some(&places), unplaced);
        // Buckets #3..#11 rank 0..8 (as numbers: #10 after #9).
        for n in [1, 9, 10, 100] {
            assert_eq!(g(n, &mut unplaced), (n % 9) as usize, "node {n}");
        }
        assert_eq!(unplaced, 0);
        let hashed = (key_hash([&Value::Int(7)]) % 9) as usize;
        assert_eq!(g(7, &mut unplaced), hashed);
        assert_eq!(unplaced, 1);
        // The key as the target returns it may be another number type.
        let mut b = PlacesBuilder::default();
        b.add([&Value::Float(5.0)], &Value::String("#4:0".into()))
            .unwrap();
        b.add([&Value::Int(6)], &Value::String("#3:0".into()))
            .unwrap();
        let p = b.finish();
        assert_eq!(p.rank(key_hash([&Value::UInt(5)])), Some(1));
        assert_eq!(p.rank(key_hash([&Value::Int(6)])), Some(0));
    }

    #[test]
    fn no_two_buckets_of_a_round_share_a_group_and_every_pair_has_one_round() {
        for writers in 1..=8 {
            let g = 2 * writers + 1;
            let mut seen = HashSet::new();
            for r in 0..g {
                let mut used = vec![false; g];
                for a in 0..g {
                    let b = (r + g - a) % g;
                    if a > b {
                        continue;
                    }
                    assert!(seen.insert((a, b)), "pair {a},{b} twice");
                    let pair: HashSet<usize> = [a, b].into();
                    for x in pair {
                        assert!(!used[x], "group {x} twice in round {r}");
                        used[x] = true;
                    }
                }
                assert!(used.iter().all(|u| *u), "every group plays every round");
            }
            assert_eq!(seen.len(), g * (g + 1) / 2);
        }
    }

    #[test]
    fn equal_keys_hash_alike() {
        let g = |v: Value| group(&[v], &[0], 1_000_003, None, &mut 0);
        assert_eq!(g(Value::Int(5)), g(Value::UInt(5)));
        assert_eq!(g(Value::Int(5)), g(Value::Float(5.0)));
        assert_ne!(g(Value::Int(5)), g(Value::Int(6)));
    }
}
