//! Re-batches rows from the readers into batches of the sink's size.
//!
//! The final flush is structural, not a call someone must remember: the batcher's loop only ends
//! when its input channel is disconnected (every reader finished and dropped its sender), and the
//! code after that loop sends whatever is buffered before the batcher drops its own sender. The
//! writers in turn only finish when that sender is gone and the channel is empty, and the job only
//! reports success after joining every writer. So no row that entered the batcher can be left
//! behind in a buffer when the job ends.

use crossbeam_channel::{Receiver, Sender};
use etlhost_plugin_sdk::Batch;

pub fn run(input: Receiver<Batch>, output: Sender<Batch>, max_rows: usize) {
    let mut pending: Option<Batch> = None;
    for chunk in input {
        // Rows of a different shape (another split's columns) never share a batch.
        if let Some(p) = &pending {
            if p.schema != chunk.schema && !p.is_empty() {
                let _ = output.send(pending.take().expect("checked"));
            }
        }
        let mut rows = chunk.rows.into_iter();
        loop {
            let p = pending.get_or_insert_with(|| Batch {
                schema: chunk.schema.clone(),
                rows: Vec::with_capacity(max_rows),
            });
            let room = max_rows - p.rows.len();
            p.rows.extend(rows.by_ref().take(room));
            if p.rows.len() < max_rows {
                break;
            }
            if output.send(pending.take().expect("just filled")).is_err() {
                return; // every writer is gone: the job is failing and counts what is left
            }
        }
    }
    if let Some(p) = pending {
        if !p.is_empty() {
            let _ = output.send(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etlhost_plugin_sdk::{Column, ColumnType, Value};

    #[test]
    fn every_row_arrives_in_full_batches_then_the_tail() {
        let schema: etlhost_plugin_sdk::Schema = vec![Column {
            name: "id".into(),
            ty: ColumnType::Int,
        }]
        .into();
        let (in_tx, in_rx) = crossbeam_channel::bounded(4);
        let (out_tx, out_rx) = crossbeam_channel::unbounded();
        let feeder = std::thread::spawn(move || {
            let mut id = 0;
            for size in [7, 1, 0, 25, 3] {
                let rows = (0..size)
                    .map(|_| {
                        id += 1;
                        vec![Value::Int(id)]
                    })
                    .collect();
                in_tx
                    .send(Batch {
                        schema: schema.clone(),
                        rows,
                    })
                    .unwrap();
            }
        });
        run(in_rx, out_tx, 10);
        feeder.join().unwrap();
        let sizes: Vec<usize> = out_rx.iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [10, 10, 10, 6]);
    }
}
