//! Re-batches rows from the readers into the sink's batches: by rows, by bytes, and by time.
//!
//! The final flush is structural: the loop ends only when the input is disconnected (every reader
//! returned), and the code after the loop sends the partial batch before the batcher drops its
//! sender, which is what lets the writers finish. See the module docs of `pipeline`.

use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use etlhost_plugin_sdk::codec::Encoded;
use etlhost_plugin_sdk::Schema;

use super::work::{Chunk, Limits, Work};
use crate::transform::Origin;

struct Pending {
    work: Work,
    bytes: usize,
    since: Instant,
}

impl Pending {
    fn new(schema: Schema, cap: usize) -> Self {
        let mut work = Work::empty(schema);
        work.batch.rows.reserve(cap);
        work.origin.reserve(cap);
        Pending {
            work,
            bytes: 0,
            since: Instant::now(),
        }
    }
}

pub fn run(input: Receiver<Chunk>, output: Sender<Work>, limits: Limits) {
    let cap = limits.rows.min(65_536);
    let mut pending: Option<Pending> = None;
    let send = |p: Pending| {
        if p.work.len() > 0 {
            output.send(p.work).expect("writers outlive the batcher");
        }
    };
    loop {
        let next = match (limits.timeout, &pending) {
            (Some(t), Some(p)) => match input.recv_timeout(t.saturating_sub(p.since.elapsed())) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => {
                    send(pending.take().expect("checked"));
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => None,
            },
            _ => input.recv().ok(),
        };
        let Some(mut chunk) = next else { break };
        // Rows of a different shape (another split's columns) never share a batch.
        if pending
            .as_ref()
            .is_some_and(|p| p.work.batch.schema != chunk.batch.schema)
        {
            send(pending.take().expect("checked"));
        }
        if let Some(rows) = chunk.encoded.take() {
            add_encoded(&mut pending, &chunk, rows, limits, cap, &send);
            continue;
        }
        for (i, row) in chunk.batch.rows.into_iter().enumerate() {
            let p = pending.get_or_insert_with(|| Pending::new(chunk.batch.schema.clone(), cap));
            if limits.bytes.is_some() {
                p.bytes += row.iter().map(|v| v.approx_size()).sum::<usize>();
            }
            p.work.batch.rows.push(row);
            let seq = Origin::of(chunk.origins.as_deref(), chunk.first, i);
            p.work.origin.push((chunk.split, seq));
            if p.work.batch.rows.len() >= limits.rows
                || limits.bytes.is_some_and(|max| p.bytes >= max)
            {
                send(pending.take().expect("just filled"));
            }
        }
    }
    if let Some(p) = pending {
        send(p);
    }
}

/// The pass-through path: the chunk's rows join the pending batch as encoded bytes. A chunk that
/// starts a batch becomes that batch's buffer as it is, so with the source's batches as large as
/// the sink's (`fetch_size` and `max_batch_size` are both 1,000 by default) no byte is copied.
fn add_encoded(
    pending: &mut Option<Pending>,
    chunk: &Chunk,
    rows: Encoded,
    limits: Limits,
    cap: usize,
    send: &impl Fn(Pending),
) {
    let n = rows.rows();
    let mut rows = Some(rows);
    let mut at = 0;
    while at < n {
        let source = rows.as_ref().expect("taken only for the last part");
        let p = pending.get_or_insert_with(|| Pending::new(source.schema().clone(), cap));
        let mut end = n.min(at + limits.rows - p.work.len());
        if let Some(max) = limits.bytes {
            // As with decoded rows: the row that reaches the limit is the batch's last.
            let mut k = at;
            while k < end {
                p.bytes += source.size(k..k + 1);
                k += 1;
                if p.bytes >= max {
                    break;
                }
            }
            end = k;
        }
        let origins = chunk.origins.as_deref();
        p.work
            .origin
            .extend((at..end).map(|i| (chunk.split, Origin::of(origins, chunk.first, i))));
        match &mut p.work.encoded {
            None if at == 0 && end == n => p.work.encoded = rows.take(),
            None => {
                let mut e = Encoded::empty(source.schema().clone(), 0);
                e.extend(source, at..end);
                p.work.encoded = Some(e);
            }
            Some(e) => e.extend(source, at..end),
        }
        at = end;
        if p.work.len() >= limits.rows || limits.bytes.is_some_and(|max| p.bytes >= max) {
            send(pending.take().expect("just filled"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etlhost_plugin_sdk::Batch;
    use etlhost_plugin_sdk::{Column, ColumnType, Value};
    use std::time::Duration;

    fn schema() -> Schema {
        vec![Column {
            name: "id".into(),
            ty: ColumnType::Int,
        }]
        .into()
    }

    fn feed(sizes: &[usize]) -> Receiver<Chunk> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut id = 0;
        for &size in sizes {
            let rows = (0..size)
                .map(|_| {
                    id += 1;
                    vec![Value::Int(id)]
                })
                .collect();
            tx.send(Chunk {
                split: 0,
                first: (id - size as i64) as u64,
                origins: None,
                keys: None,
                end: false,
                encoded: None,
                batch: Batch {
                    schema: schema(),
                    rows,
                },
            })
            .unwrap();
        }
        rx
    }

    /// The same chunks as `feed`, as the pass-through path carries them.
    fn feed_encoded(sizes: &[usize]) -> Receiver<Chunk> {
        let (tx, rx) = crossbeam_channel::unbounded();
        for mut chunk in feed(sizes) {
            let rows = Encoded::of(&chunk.batch);
            chunk.batch.rows.clear();
            chunk.encoded = Some(rows);
            tx.send(chunk).unwrap();
        }
        rx
    }

    /// Each batch's ids, and its origins as row numbers of split 0.
    fn contents(out: Receiver<Work>) -> Vec<(Vec<Value>, Vec<u64>)> {
        out.iter()
            .map(|mut w| {
                let origins = w
                    .origin
                    .iter()
                    .map(|(split, o)| match (split, o) {
                        (0, Origin::Row(n)) => *n,
                        other => panic!("unexpected origin {other:?}"),
                    })
                    .collect();
                let ids = w.decoded().rows.iter().map(|r| r[0].clone()).collect();
                (ids, origins)
            })
            .collect()
    }

    #[test]
    fn encoded_rows_are_batched_as_decoded_ones_are() {
        for limits in [(10, None), (3, None), (100, Some(30)), (4, Some(20))] {
            let limits = Limits {
                rows: limits.0,
                bytes: limits.1,
                timeout: None,
            };
            let sizes = [7, 1, 0, 25, 3, 10];
            let (tx, rx) = crossbeam_channel::unbounded();
            run(feed(&sizes), tx, limits);
            let decoded = contents(rx);
            let (tx, rx) = crossbeam_channel::unbounded();
            run(feed_encoded(&sizes), tx, limits);
            assert_eq!(contents(rx), decoded, "{limits:?}");
            let ids: Vec<Value> = decoded.iter().flat_map(|(ids, _)| ids.clone()).collect();
            assert_eq!(ids, (1..=46).map(Value::Int).collect::<Vec<_>>());
        }
    }

    #[test]
    fn rows_keep_the_origins_transforms_gave_them_encoded_or_not() {
        let limits = Limits {
            rows: 4,
            bytes: None,
            timeout: None,
        };
        // As a transform would hand them on that made two rows of every input row.
        let doubled = |chunks: Receiver<Chunk>| {
            let (tx, rx) = crossbeam_channel::unbounded();
            for mut c in chunks.try_iter() {
                let first = c.first;
                let seqs = (0..c.len()).map(|i| Origin::Row(first + i as u64 / 2));
                c.origins = Some(seqs.collect());
                tx.send(c).unwrap();
            }
            rx
        };
        let origins = |chunks| {
            let (tx, rx) = crossbeam_channel::unbounded();
            run(chunks, tx, limits);
            let batches = contents(rx);
            batches
                .into_iter()
                .flat_map(|(_, o)| o)
                .collect::<Vec<u64>>()
        };
        let expected = [0, 0, 1, 1, 2, 2, 6, 6, 7];
        assert_eq!(origins(doubled(feed(&[6, 3]))), expected);
        assert_eq!(origins(doubled(feed_encoded(&[6, 3]))), expected);
    }

    #[test]
    fn a_chunk_as_large_as_a_batch_is_not_copied() {
        let (in_tx, in_rx) = crossbeam_channel::unbounded();
        let mut sent = Vec::new();
        for c in feed_encoded(&[10, 10]).try_iter() {
            sent.push(c.encoded.as_ref().unwrap().as_bytes().as_ptr());
            in_tx.send(c).unwrap();
        }
        drop(in_tx);
        let (tx, rx) = crossbeam_channel::unbounded();
        let limits = Limits {
            rows: 10,
            bytes: None,
            timeout: None,
        };
        run(in_rx, tx, limits);
        let got: Vec<*const u8> = rx
            .iter()
            .map(|w| w.encoded.as_ref().unwrap().as_bytes().as_ptr())
            .collect();
        assert_eq!(got, sent, "each chunk became its batch's buffer as it was");
    }

    #[test]
    fn full_batches_then_the_tail() {
        let (out_tx, out_rx) = crossbeam_channel::unbounded();
        let limits = Limits {
            rows: 10,
            bytes: None,
            timeout: None,
        };
        run(feed(&[7, 1, 0, 25, 3]), out_tx, limits);
        let sizes: Vec<usize> = out_rx.iter().map(|w| w.batch.len()).collect();
        assert_eq!(sizes, [10, 10, 10, 6]);
    }

    #[test]
    fn bytes_close_a_batch_early() {
        let (out_tx, out_rx) = crossbeam_channel::unbounded();
        // Each Int row is about 9 bytes.
        let limits = Limits {
            rows: 100,
            bytes: Some(30),
            timeout: None,
        };
        run(feed(&[10]), out_tx, limits);
        let sizes: Vec<usize> = out_rx.iter().map(|w| w.batch.len()).collect();
        assert_eq!(sizes, [4, 4, 2]);
    }

    #[test]
    fn a_partial_batch_is_sent_after_the_timeout_while_the_input_stays_open() {
        let (in_tx, in_rx) = crossbeam_channel::unbounded();
        let (out_tx, out_rx) = crossbeam_channel::unbounded();
        let limits = Limits {
            rows: 1000,
            bytes: None,
            timeout: Some(Duration::from_millis(20)),
        };
        let batcher = std::thread::spawn(move || run(in_rx, out_tx, limits));
        in_tx
            .send(Chunk {
                split: 0,
                first: 0,
                origins: None,
                keys: None,
                end: false,
                encoded: None,
                batch: Batch {
                    schema: schema(),
                    rows: vec![vec![Value::Int(1)]],
                },
            })
            .unwrap();
        // Blocks until the batcher gives the partial batch up on its own: the input is still open.
        let w = out_rx.recv().unwrap();
        assert_eq!(w.batch.len(), 1);
        drop(in_tx);
        batcher.join().unwrap();
        assert!(out_rx.try_recv().is_err());
    }
}
