//! The real reader/batcher/writer code driven by in-process sources and sinks: every row read is
//! delivered exactly once, or failed and dead-lettered, whatever the sizes, counts and failures.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etlhost_plugin_sdk::codec::{self, Encoded};
use etlhost_plugin_sdk::{Batch, Column, ColumnType, KeyRange, Split, Value};
use proptest::prelude::*;

use super::*;
use crate::plugin::PluginError;

/// Rows `0..rows`, one column `id`, split into contiguous ranges; each split returns batches of
/// `fetch` rows, encoded into the spare buffers it is given (counted in `spares`).
struct FakeSource {
    fetch: usize,
    spares: Arc<AtomicUsize>,
}

impl FakeSource {
    fn new(fetch: usize) -> Self {
        FakeSource {
            fetch,
            spares: Arc::default(),
        }
    }
}

struct FakeReader {
    next: i64,
    end: i64,
    fetch: usize,
    spares: Arc<AtomicUsize>,
}

impl SourceSide for FakeSource {
    fn open_split(&self, split: &Split) -> Result<Box<dyn SplitRead>, PluginError> {
        let r = split.range.as_ref().expect("fake splits have ranges");
        let int = |v: &Option<Value>| match v {
            Some(Value::Int(i)) => *i,
            _ => unreachable!(),
        };
        Ok(Box::new(FakeReader {
            next: int(&r.start),
            end: int(&r.end),
            fetch: self.fetch,
            spares: self.spares.clone(),
        }))
    }
}

impl SplitRead for FakeReader {
    fn next_batch(&mut self) -> Result<Option<Batch>, PluginError> {
        if self.next >= self.end {
            return Ok(None);
        }
        let to = (self.next + self.fetch as i64).min(self.end);
        let rows = (self.next..to).map(|i| vec![Value::Int(i)]).collect();
        self.next = to;
        let schema = vec![Column {
            name: "id".into(),
            ty: ColumnType::Int,
        }]
        .into();
        Ok(Some(Batch { schema, rows }))
    }

    fn next_encoded(&mut self, spare: Option<Encoded>) -> Result<Option<Encoded>, PluginError> {
        let Some(batch) = self.next_batch()? else {
            return Ok(None);
        };
        let bytes = codec::encode(&batch);
        Ok(Some(match spare {
            Some(e) => {
                self.spares.fetch_add(1, Ordering::SeqCst);
                e.check_into(&bytes).unwrap()
            }
            None => Encoded::check(bytes).unwrap(),
        }))
    }
}

/// Records what it wrote. Rows whose id is in `bad` fail the whole batch permanently (like a
/// constraint violation); every `flaky`-th call fails transiently (like a lost connection).
struct FakeSink {
    written: Arc<Mutex<HashMap<i64, usize>>>,
    bad: Arc<Vec<i64>>,
    calls: Arc<AtomicUsize>,
    flaky: usize,
}

impl SinkSide for FakeSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), PluginError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.flaky > 0 && call.is_multiple_of(self.flaky) {
            return Err(PluginError::Failed {
                plugin: "fake".into(),
                retryable: true,
                message: "connection reset".into(),
            });
        }
        let ids: Vec<i64> = batch
            .rows
            .iter()
            .map(|r| match r[0] {
                Value::Int(i) => i,
                _ => unreachable!(),
            })
            .collect();
        if let Some(b) = ids.iter().find(|i| self.bad.contains(i)) {
            return Err(PluginError::Failed {
                plugin: "fake".into(),
                retryable: false,
                message: format!("duplicate key {b}"),
            });
        }
        let mut w = self.written.lock().unwrap();
        for i in ids {
            *w.entry(i).or_default() += 1;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), PluginError> {
        Ok(())
    }
}

/// A sink that records what it wrote into `written` and never fails.
fn reliable_sink(written: &Arc<Mutex<HashMap<i64, usize>>>) -> Box<dyn SinkSide> {
    Box::new(FakeSink {
        written: written.clone(),
        bad: Arc::new(vec![]),
        calls: Arc::new(AtomicUsize::new(0)),
        flaky: 0,
    })
}

fn splits(rows: i64, n: usize) -> Vec<Split> {
    let n = n as i64;
    (0..n)
        .map(|i| Split {
            cursor: None,
            stream: None,
            id: i as u32,
            range: Some(KeyRange {
                column: "id".into(),
                start: Some(Value::Int(rows * i / n)),
                end: Some(Value::Int(rows * (i + 1) / n)),
                nulls: false,
                after: None,
                columns: Vec::new(),
            }),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn run_fake(
    rows: i64,
    nsplits: usize,
    readers: usize,
    writers: usize,
    batch: usize,
    fetch: usize,
    bad: Vec<i64>,
    flaky: usize,
    dead_letter: PathBuf,
) -> (Summary, HashMap<i64, usize>) {
    let written = Arc::new(Mutex::new(HashMap::new()));
    let bad = Arc::new(bad);
    let calls = Arc::new(AtomicUsize::new(0));
    let sinks = (0..writers)
        .map(|_| {
            Box::new(FakeSink {
                written: written.clone(),
                bad: bad.clone(),
                calls: calls.clone(),
                flaky,
            }) as Box<dyn SinkSide>
        })
        .collect();
    let summary = execute(
        Arc::new(FakeSource::new(fetch)),
        sinks,
        splits(rows, nsplits),
        settings(readers, batch, dead_letter),
        Arc::new(Control::default()),
        Arc::new(Counters::new(readers)),
        None,
    );
    let w = written.lock().unwrap().clone();
    (summary, w)
}

fn settings(readers: usize, batch: usize, dead_letter: PathBuf) -> Settings {
    Settings {
        job: "prop".into(),
        flow: None,
        readers,
        max_batch_rows: batch,
        max_batch_bytes: None,
        batch_timeout: None,
        max_retries: 3,
        retry_backoff: Duration::ZERO,
        max_failed_rows: u64::MAX,
        dead_letter,
        checkpoint: None,
        progress: None,
        endpoints: None,
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("etlhost-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_row_is_delivered_exactly_once(
        rows in 0i64..3000,
        nsplits in 1usize..12,
        readers in 1usize..5,
        writers in 1usize..5,
        batch in 1usize..400,
        fetch in 1usize..150,
        flaky in prop_oneof![Just(0usize), 2usize..7],
    ) {
        let (summary, written) =
            run_fake(rows, nsplits, readers, writers, batch, fetch, vec![], flaky, scratch("never.jsonl"));
        prop_assert_eq!(summary.read, rows as u64);
        prop_assert_eq!(summary.written, rows as u64);
        prop_assert_eq!(summary.failed, 0);
        prop_assert!(summary.balances());
        prop_assert_eq!(written.len() as i64, rows);
        prop_assert!(written.values().all(|n| *n == 1), "a row was written twice");
    }

    #[test]
    fn bad_rows_are_isolated_and_everything_else_written(
        rows in 1i64..2000,
        readers in 1usize..4,
        writers in 1usize..4,
        batch in 1usize..300,
        picks in proptest::collection::vec(0.0f64..1.0, 0..6),
    ) {
        let mut bad: Vec<i64> = picks.iter().map(|p| (p * rows as f64) as i64).collect();
        bad.sort();
        bad.dedup();
        let dl = scratch(&format!("dl-{rows}-{batch}-{}.jsonl", bad.len()));
        let (summary, written) = run_fake(rows, 4, readers, writers, batch, 64, bad.clone(), 0, dl.clone());
        prop_assert_eq!(summary.failed, bad.len() as u64);
        prop_assert_eq!(summary.written, rows as u64 - bad.len() as u64);
        prop_assert!(summary.balances());
        prop_assert!(written.values().all(|n| *n == 1));
        prop_assert!(bad.iter().all(|b| !written.contains_key(b)));
        let lines = std::fs::read_to_string(&dl).unwrap_or_default();
        let mut dead: Vec<i64> = lines
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["row"]["id"].as_i64().unwrap())
            .collect();
        dead.sort();
        prop_assert_eq!(dead, bad);
    }
}

#[test]
fn interrupting_stops_reading_but_writes_what_was_read() {
    let control = Arc::new(Control::default());
    control.stop(StopReason::Interrupted);
    let written = Arc::new(Mutex::new(HashMap::new()));
    let sink = reliable_sink(&written);
    let settings = Settings {
        job: "stop".into(),
        max_retries: 0,
        max_failed_rows: 0,
        ..settings(2, 10, scratch("stop.jsonl"))
    };
    let s = execute(
        Arc::new(FakeSource::new(7)),
        vec![sink],
        splits(1000, 5),
        settings,
        control,
        Arc::new(Counters::new(2)),
        None,
    );
    assert_eq!(s.status, crate::stats::Status::Interrupted);
    assert_eq!(s.read, 0, "nothing is read once stopped");
    assert!(s.balances());
}

#[test]
fn written_buffers_are_read_into_again() {
    // 100 source batches, each a sink batch as it is. At most 7 buffers are ever in flight (one
    // per stage, two per queue), so every read after those finds one a writer gave back.
    let source = Arc::new(FakeSource::new(10));
    let written = Arc::new(Mutex::new(HashMap::new()));
    let sink = reliable_sink(&written);
    let s = execute(
        source.clone(),
        vec![sink],
        splits(1000, 1),
        settings(1, 10, scratch("spares.jsonl")),
        Arc::new(Control::default()),
        Arc::new(Counters::new(1)),
        None,
    );
    assert_eq!(s.written, 1000);
    assert!(written.lock().unwrap().values().all(|n| *n == 1));
    let reused = source.spares.load(Ordering::SeqCst);
    assert!(
        reused >= 100 - 8,
        "{reused} of 100 batches read into a spare buffer"
    );
}

#[test]
fn the_key_column_a_resumable_read_decoded_is_handed_on_once() {
    // Tracking the safe key of encoded rows decodes their key column; the reader takes those
    // values instead of decoding the column again, and only for the piece they came from.
    let source = FakeSource::new(4);
    let control = Control::default();
    let split = &splits(10, 1)[0];
    let mut r = resume::Resuming::open(
        &source,
        split,
        crate::retry::Policy::new(Duration::ZERO, 0),
        &control,
    )
    .unwrap();
    let first = r.next_encoded(None).unwrap().unwrap();
    assert_eq!(first.rows(), 4);
    assert_eq!(r.take_keys(), Some((0..4).map(Value::Int).collect()));
    assert_eq!(r.take_keys(), None, "taken once");
    r.next_encoded(None).unwrap().unwrap();
    assert_eq!(r.take_keys(), Some((4..8).map(Value::Int).collect()));
    // Decoded rows are the reader's own: nothing was decoded for them.
    r.next_batch().unwrap().unwrap();
    assert_eq!(r.take_keys(), None);
}

#[test]
fn ordered_batches_keep_the_origins_transforms_gave_encoded_rows() {
    use super::work::Chunk;
    use super::work::Limits;
    use crate::transform::Origin;

    let mut s = settings(1, 4, scratch("ordered-origins.jsonl"));
    s.progress = Some(ProgressSettings {
        job: "prop".into(),
        flow: "f".into(),
        run: "r".into(),
        shard: 0,
        base: HashMap::new(),
    });
    let dead_letter = DeadLetter::new(s.dead_letter.clone(), "prop", None, SystemTime::now());
    let counters = Arc::new(Counters::new(1));
    let shared = Shared::new(
        s,
        Mode::Ordered { encoded: true },
        Arc::default(),
        counters,
        None,
        dead_letter,
        None,
    );
    let schema: etlhost_plugin_sdk::Schema = vec![Column {
        name: "id".into(),
        ty: ColumnType::Int,
    }]
    .into();
    let rows = Batch {
        schema: schema.clone(),
        rows: (0..6).map(|i| vec![Value::Int(i)]).collect(),
    };
    // As a transform of the encoded world would hand them on that made two rows of each of
    // input rows 0, 1 and 2.
    let doubled = [0, 0, 1, 1, 2, 2].map(Origin::Row);
    let chunk = |encoded, origins, end| Chunk {
        split: 0,
        first: 0,
        batch: Batch::new(schema.clone()),
        encoded,
        origins,
        keys: None,
        end,
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let encoded = Encoded::of(&rows);
    tx.send(chunk(Some(encoded), Some(doubled.to_vec()), false))
        .unwrap();
    tx.send(chunk(None, None, true)).unwrap();
    drop(tx);
    let (work_tx, work_rx) = crossbeam_channel::unbounded();
    let limits = Limits {
        rows: 4,
        bytes: None,
        timeout: None,
    };
    super::delivery::ordered::run(rx, vec![work_tx], limits, &shared);
    let origins: Vec<Origin> = work_rx
        .iter()
        .flat_map(|w| w.origin.into_iter().map(|(_, o)| o))
        .collect();
    assert_eq!(origins, doubled);
}

/// Fails every write, with one error text whatever the rows: a read-only database, a full disk.
/// Rows whose id is in `bad` fail the same way when the sink works (`fail_all` false): rows with
/// an error that does not name them. Counts its calls, and keeps the progress it recorded.
struct SameErrorSink {
    fail_all: bool,
    bad: Vec<i64>,
    calls: Arc<AtomicUsize>,
    written: Arc<Mutex<HashMap<i64, usize>>>,
    progress: Arc<Mutex<Vec<etlhost_plugin_sdk::Progress>>>,
}

impl SameErrorSink {
    fn new(fail_all: bool, bad: Vec<i64>) -> Self {
        SameErrorSink {
            fail_all,
            bad,
            calls: Arc::default(),
            written: Arc::default(),
            progress: Arc::default(),
        }
    }

    fn share(&self) -> Self {
        SameErrorSink {
            fail_all: self.fail_all,
            bad: self.bad.clone(),
            calls: self.calls.clone(),
            written: self.written.clone(),
            progress: self.progress.clone(),
        }
    }
}

const DISK_FULL: &str = "write failed: No space left on device (os error 28)";

impl SinkSide for SameErrorSink {
    fn write_batch(&mut self, batch: &Batch) -> Result<(), PluginError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let ids: Vec<i64> = batch
            .rows
            .iter()
            .map(|r| match r[0] {
                Value::Int(i) => i,
                _ => unreachable!(),
            })
            .collect();
        if self.fail_all || ids.iter().any(|i| self.bad.contains(i)) {
            return Err(PluginError::Failed {
                plugin: "same".into(),
                retryable: false,
                message: DISK_FULL.into(),
            });
        }
        let mut w = self.written.lock().unwrap();
        for i in ids {
            *w.entry(i).or_default() += 1;
        }
        Ok(())
    }

    fn write_with_progress(
        &mut self,
        batch: &Batch,
        progress: &etlhost_plugin_sdk::Progress,
    ) -> Result<bool, PluginError> {
        self.write_batch(batch)?;
        self.progress.lock().unwrap().push(progress.clone());
        Ok(true)
    }

    fn finish(&mut self) -> Result<(), PluginError> {
        Ok(())
    }
}

fn sink_failure_message(rows: usize) -> String {
    format!(
        "the sink is failing, not the rows: {rows} rows written one by one all failed with the \
         same error, and no part of their batch could be written: plugin same: {DISK_FULL}"
    )
}

fn dead_ids(path: &PathBuf) -> Vec<i64> {
    let lines = std::fs::read_to_string(path).unwrap_or_default();
    let mut dead: Vec<i64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["row"]["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    dead.sort();
    dead
}

/// Runs `rows` rows (one split per 1000) through `writers` sinks that fail every write; returns
/// the summary, how the job stopped, the sink calls made and the dead-letter file's ids.
fn run_failing_sink(
    rows: i64,
    writers: usize,
    batch: usize,
    endpoints: bool,
    name: &str,
) -> (Summary, StopReason, usize, Vec<i64>) {
    let sink = SameErrorSink::new(true, vec![]);
    let sinks = (0..writers)
        .map(|_| Box::new(sink.share()) as Box<dyn SinkSide>)
        .collect();
    let dl = scratch(name);
    let mut s = settings(2, batch, dl.clone());
    s.max_failed_rows = 0;
    s.endpoints = endpoints.then(|| Endpoints {
        start: vec!["id".into()],
        end: vec!["id".into()],
        placement: None,
    });
    let control = Arc::new(Control::default());
    let summary = execute(
        Arc::new(FakeSource::new(100)),
        sinks,
        splits(rows, (rows as usize / 1000).max(1)),
        s,
        control.clone(),
        Arc::new(Counters::new(2)),
        None,
    );
    let calls = sink.calls.load(Ordering::SeqCst);
    (summary, control.reason(), calls, dead_ids(&dl))
}

#[test]
fn a_sink_that_fails_every_row_fails_the_job_as_a_sink_error() {
    // Pass-through batches (no transform) and grouped batches (endpoints: decoded rows).
    for (endpoints, name) in [
        (false, "sink-fails.jsonl"),
        (true, "sink-fails-grouped.jsonl"),
    ] {
        let (s, reason, calls, dead) = run_failing_sink(20_000, 2, 1000, endpoints, name);
        assert_eq!(s.status, crate::stats::Status::Failed, "{name}");
        assert_eq!(
            s.error.as_deref(),
            Some(sink_failure_message(3).as_str()),
            "{name}"
        );
        assert_eq!(
            reason,
            StopReason::Error,
            "a sink error, not too many failed rows"
        );
        assert!(
            dead.is_empty(),
            "rows of a failing sink are not the rows' fault: {dead:?}"
        );
        assert_eq!((s.written, s.failed), (0, 0), "{name}");
        assert!(s.balances(), "{s:?}");
        // Per writer: the batch, the halves down to row 0 (log2 1000 = 10), rows 1 and 2 and
        // the half between. Batches taken after that are not tried.
        assert!(calls <= 2 * 14, "{calls} sink calls for {name}");
    }
}

#[test]
fn the_rows_of_a_failing_sink_are_not_acknowledged() {
    let dl = scratch("sink-fails-acks.jsonl");
    let shared = Shared::new(
        settings(1, 100, dl.clone()),
        Mode::Plain,
        Arc::default(),
        Arc::new(Counters::new(1)),
        None,
        DeadLetter::new(dl.clone(), "prop", None, SystemTime::now()),
        None,
    );
    let schema: etlhost_plugin_sdk::Schema = vec![Column {
        name: "id".into(),
        ty: ColumnType::Int,
    }]
    .into();
    let (tx, rx) = crossbeam_channel::unbounded();
    for b in 0..3u64 {
        let mut work = super::work::Work::empty(schema.clone());
        for i in b * 10..(b + 1) * 10 {
            work.batch.rows.push(vec![Value::Int(i as i64)]);
            work.origin.push((0, crate::transform::Origin::Row(i)));
            shared.acks.chunk_read(0, i + 1, Some(Value::Int(i as i64)));
        }
        Counters::add(&shared.counters.read, 10);
        tx.send(work).unwrap();
    }
    drop(tx);
    let sink = SameErrorSink::new(true, vec![]);
    super::writer::run(Box::new(sink.share()), rx, &shared);
    assert_eq!(shared.error(), Some(sink_failure_message(3)));
    let snap = shared.acks.snapshot();
    assert!(
        snap.watermarks.is_empty() && snap.done.is_empty(),
        "progress past rows not written: {snap:?}"
    );
    assert_eq!(shared.counters.read.load(Ordering::SeqCst), 0, "given back");
    assert_eq!(shared.counters.failed.load(Ordering::SeqCst), 0);
    // The first batch: itself, [0, 5), [0, 2), rows 0 and 1, [2, 5), row 2. None of the others.
    assert_eq!(sink.calls.load(Ordering::SeqCst), 7);
    assert!(dead_ids(&dl).is_empty());
}

#[test]
fn a_failing_sink_records_no_progress_in_the_target() {
    let dl = scratch("sink-fails-ordered.jsonl");
    let mut s = settings(1, 8, dl.clone());
    s.progress = Some(ProgressSettings {
        job: "prop".into(),
        flow: "f".into(),
        run: "r".into(),
        shard: 0,
        base: HashMap::new(),
    });
    let counters = Arc::new(Counters::new(1));
    let dead_letter = DeadLetter::new(dl.clone(), "prop", None, SystemTime::now());
    let shared = Shared::new(
        s,
        Mode::Ordered { encoded: false },
        Arc::default(),
        counters,
        None,
        dead_letter,
        None,
    );
    let schema: etlhost_plugin_sdk::Schema = vec![Column {
        name: "id".into(),
        ty: ColumnType::Int,
    }]
    .into();
    let progress = |rows: u64, done| etlhost_plugin_sdk::Progress {
        job: "prop".into(),
        flow: "f".into(),
        run: "r".into(),
        split: 0,
        after: Some(Value::Int(rows as i64 - 1)),
        rows,
        from: rows - 8,
        check: false,
        done,
        shard: 0,
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    for b in 0..2u64 {
        let mut work = super::work::Work::empty(schema.clone());
        for i in b * 8..(b + 1) * 8 {
            work.batch.rows.push(vec![Value::Int(i as i64)]);
            work.origin.push((0, crate::transform::Origin::Row(i)));
            work.keys.push(Value::Int(i as i64));
        }
        work.progress = Some(progress((b + 1) * 8, b == 1));
        Counters::add(&shared.counters.read, 8);
        tx.send(work).unwrap();
    }
    drop(tx);
    let sink = SameErrorSink::new(true, vec![]);
    super::writer::run(Box::new(sink.share()), rx, &shared);
    assert_eq!(shared.error(), Some(sink_failure_message(3)));
    assert!(sink.progress.lock().unwrap().is_empty());
    assert_eq!(shared.counters.read.load(Ordering::SeqCst), 0, "given back");
    assert!(dead_ids(&dl).is_empty());

    // Two bad rows first, then good ones: the bad rows are held until a part is written, then
    // failed; the progress of the batch is recorded only once they are in the dead-letter file.
    let dl = scratch("ordered-two-bad.jsonl");
    let mut s = settings(1, 8, dl.clone());
    s.progress = shared.settings.progress.clone();
    let dead_letter = DeadLetter::new(dl.clone(), "prop", None, SystemTime::now());
    let shared = Shared::new(
        s,
        Mode::Ordered { encoded: false },
        Arc::default(),
        Arc::new(Counters::new(1)),
        None,
        dead_letter,
        None,
    );
    let mut work = super::work::Work::empty(schema.clone());
    for i in 0..8 {
        work.batch.rows.push(vec![Value::Int(i)]);
        work.origin
            .push((0, crate::transform::Origin::Row(i as u64)));
        work.keys.push(Value::Int(i));
    }
    work.progress = Some(progress(8, true));
    Counters::add(&shared.counters.read, 8);
    let (tx, rx) = crossbeam_channel::unbounded();
    tx.send(work).unwrap();
    drop(tx);
    let sink = SameErrorSink::new(false, vec![0, 1]);
    super::writer::run(Box::new(sink.share()), rx, &shared);
    assert_eq!(shared.error(), None);
    assert_eq!(dead_ids(&dl), [0, 1]);
    assert_eq!(shared.counters.written.load(Ordering::SeqCst), 6);
    let recorded = sink.progress.lock().unwrap().clone();
    assert_eq!(
        recorded.last().map(|p| (p.rows, p.done)),
        Some((8, true)),
        "{recorded:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Rows whose errors all read the same are still isolated one by one when the rest of their
    /// batch can be written: odd ids only, so no batch starts with three bad rows.
    #[test]
    fn bad_rows_sharing_one_error_text_are_isolated(
        rows in 1i64..2000,
        writers in 1usize..4,
        batch in 1usize..300,
        picks in proptest::collection::vec(0.0f64..1.0, 0..40),
    ) {
        let mut bad: Vec<i64> = picks.iter().map(|p| (p * rows as f64) as i64 | 1).filter(|b| *b < rows).collect();
        bad.sort();
        bad.dedup();
        let dl = scratch(&format!("same-{rows}-{batch}-{writers}-{}.jsonl", bad.len()));
        let sink = SameErrorSink::new(false, bad.clone());
        let sinks = (0..writers).map(|_| Box::new(sink.share()) as Box<dyn SinkSide>).collect();
        let summary = execute(
            Arc::new(FakeSource::new(64)),
            sinks,
            splits(rows, 1),
            settings(1, batch, dl.clone()),
            Arc::new(Control::default()),
            Arc::new(Counters::new(1)),
            None,
        );
        prop_assert_eq!(summary.error.as_deref(), None);
        prop_assert_eq!(summary.failed, bad.len() as u64);
        prop_assert_eq!(summary.written, rows as u64 - bad.len() as u64);
        prop_assert!(summary.balances());
        let written = sink.written.lock().unwrap().clone();
        prop_assert!(written.values().all(|n| *n == 1));
        prop_assert_eq!(dead_ids(&dl), bad);
    }
}
