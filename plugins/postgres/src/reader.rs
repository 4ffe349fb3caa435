//! A split's rows by binary COPY, decoded on a thread of the split's own and handed to the host
//! encoded, through a small channel (the COPY is not read further while the host is behind, so
//! memory stays flat however large the split).

use bytes::Bytes;
use etlhost_plugin_sdk::codec;
use etlhost_plugin_sdk::{Batch, Column, Error, SplitReader};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::types::ColumnPlan;

/// A batch as it crosses the plugin boundary, encoded on the thread that read its rows.
pub(crate) type Sent = Result<Vec<u8>, Error>;

/// The 11-byte signature that starts binary COPY output.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Parses binary COPY output (its header, then rows of length-prefixed fields, then a -1
/// trailer) from chunks cut anywhere, and encodes the rows into batches.
pub(crate) struct CopyDecoder<'a> {
    plans: &'a [ColumnPlan],
    schema: &'a [Column],
    /// Bytes of an incomplete row (or header) carried over to the next chunk.
    carry: Vec<u8>,
    header_done: bool,
    ended: bool,
    /// Where each field of the current row starts and ends in the buffer parsed (-1: NULL).
    fields: Vec<(usize, isize)>,
}

impl<'a> CopyDecoder<'a> {
    pub(crate) fn new(plans: &'a [ColumnPlan], schema: &'a [Column]) -> Self {
        CopyDecoder {
            plans,
            schema,
            carry: Vec::new(),
            header_done: false,
            ended: false,
            fields: Vec::with_capacity(plans.len()),
        }
    }

    /// Adds the complete rows of `chunk` (and of what was carried over) to `out`; whenever it
    /// holds `fetch_size` rows, its encoding moves to `ready`.
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        out: &mut codec::Builder,
        fetch_size: usize,
        ready: &mut Vec<Vec<u8>>,
    ) -> Result<(), String> {
        let owned;
        let buf: &[u8] = if self.carry.is_empty() {
            chunk
        } else {
            self.carry.extend_from_slice(chunk);
            owned = std::mem::take(&mut self.carry);
            &owned
        };
        let mut at = 0;
        if !self.header_done {
            match header_len(buf)? {
                Some(n) => at = n,
                None => {
                    self.carry = buf.to_vec();
                    return Ok(());
                }
            }
            self.header_done = true;
        }
        while !self.ended {
            match self.row(&buf[at..])? {
                Row::Incomplete => break,
                Row::End(n) => {
                    at += n;
                    self.ended = true;
                }
                Row::Fields(n) => {
                    let row = &buf[at..at + n];
                    for (plan, &(start, len)) in self.plans.iter().zip(&self.fields) {
                        let raw = (len >= 0).then(|| &row[start..start + len as usize]);
                        // The common types go from the COPY's bytes into the batch without a
                        // value between (no allocation per text cell).
                        plan.decode
                            .push(raw, out)
                            .map_err(|e| format!("column `{}`: {e}", plan.column.name))?;
                    }
                    out.end_row();
                    at += n;
                    if out.rows() >= fetch_size {
                        // The next batch is likely the size of this one: room for it at once.
                        let next = codec::Builder::new(self.schema, out.len());
                        ready.push(std::mem::replace(out, next).finish());
                    }
                }
            }
        }
        if at < buf.len() && !self.ended {
            self.carry = buf[at..].to_vec();
        }
        Ok(())
    }

    /// Whether the trailer was seen (the output is complete).
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// The row at the start of `buf`: its fields' places recorded in `self.fields`.
    fn row(&mut self, buf: &[u8]) -> Result<Row, String> {
        let Some(count) = buf.get(..2) else {
            return Ok(Row::Incomplete);
        };
        let count = i16::from_be_bytes([count[0], count[1]]);
        if count == -1 {
            return Ok(Row::End(2));
        }
        if count as usize != self.plans.len() {
            return Err(format!(
                "COPY sent a row of {count} fields for {} columns",
                self.plans.len()
            ));
        }
        self.fields.clear();
        let mut at = 2;
        for _ in 0..count {
            let Some(len) = buf.get(at..at + 4) else {
                return Ok(Row::Incomplete);
            };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            at += 4;
            if len < 0 {
                self.fields.push((at, -1));
                continue;
            }
            if buf.len() < at + len as usize {
                return Ok(Row::Incomplete);
            }
            self.fields.push((at, len as isize));
            at += len as usize;
        }
        Ok(Row::Fields(at))
    }
}

enum Row {
    Incomplete,
    End(usize),
    Fields(usize),
}

/// The header's length, or `None` when `buf` does not hold all of it yet.
fn header_len(buf: &[u8]) -> Result<Option<usize>, String> {
    if buf.len() < SIGNATURE.len() + 8 {
        return Ok(None);
    }
    if &buf[..SIGNATURE.len()] != SIGNATURE {
        return Err("COPY output does not start with the binary signature".into());
    }
    let ext = &buf[SIGNATURE.len() + 4..SIGNATURE.len() + 8];
    let ext = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]) as usize;
    let n = SIGNATURE.len() + 8 + ext;
    Ok((buf.len() >= n).then_some(n))
}

/// Reads a COPY's output stream into batches sent on `tx`, until it ends or the host stops
/// reading. `fail` words the stream's errors; `what` names the relation in a value's error, as a
/// job may read several.
pub(crate) async fn copy_rows(
    stream: tokio_postgres::CopyOutStream,
    plans: &[ColumnPlan],
    fetch_size: usize,
    tx: &mpsc::Sender<Sent>,
    fail: impl Fn(&tokio_postgres::Error) -> Error,
    what: &str,
) -> Result<(), Error> {
    let schema: Vec<Column> = plans.iter().map(|p| p.column.clone()).collect();
    let mut decoder = CopyDecoder::new(plans, &schema);
    let mut batch = codec::Builder::new(&schema, 0);
    let mut ready = Vec::new();
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes = chunk.map_err(|e| fail(&e))?;
        decoder
            .feed(&chunk, &mut batch, fetch_size, &mut ready)
            .map_err(|e| Error::permanent(format!("reading {what} failed: {e}")))?;
        for full in ready.drain(..) {
            if tx.send(Ok(full)).await.is_err() {
                return Ok(()); // the host stopped reading this split
            }
        }
    }
    if !decoder.ended() {
        return Err(Error::retryable(
            "reading failed: the COPY output ended before its trailer",
        ));
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch.finish())).await;
    }
    Ok(())
}

/// Runs `read` on a thread of the split's own, whose batches arrive on `rx`.
pub(crate) fn spawn_reader(
    split: u32,
    rx: mpsc::Receiver<Sent>,
    report: mpsc::Sender<Sent>,
    read: impl FnOnce() + Send + 'static,
) -> Result<PgReader, Error> {
    etlhost_plugin_sdk::runtime::spawn_split_thread(
        format!("postgres-split-{split}"),
        read,
        move |e| {
            let _ = report.blocking_send(Err(e));
        },
    )?;
    Ok(PgReader { rx })
}

pub struct PgReader {
    pub(crate) rx: mpsc::Receiver<Sent>,
}

impl SplitReader for PgReader {
    fn next_batch(&mut self) -> Result<Option<Batch>, Error> {
        self.next_encoded()?
            .map(|b| codec::decode(&b).map_err(|e| Error::permanent(e.to_string())))
            .transpose()
    }

    fn next_encoded(&mut self) -> Result<Option<Vec<u8>>, Error> {
        self.rx.blocking_recv().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{plan, Typing};
    use etlhost_plugin_sdk::Value;
    use tokio_postgres::types::Type;

    /// Binary COPY output of rows of (int4, text), NULL as `None`.
    fn copy_bytes(rows: &[(i32, Option<&str>)]) -> Vec<u8> {
        let mut b = SIGNATURE.to_vec();
        b.extend(0i32.to_be_bytes()); // flags
        b.extend(0i32.to_be_bytes()); // header extension
        for (n, t) in rows {
            b.extend(2i16.to_be_bytes());
            b.extend(4i32.to_be_bytes());
            b.extend(n.to_be_bytes());
            match t {
                Some(t) => {
                    b.extend((t.len() as i32).to_be_bytes());
                    b.extend(t.as_bytes());
                }
                None => b.extend((-1i32).to_be_bytes()),
            }
        }
        b.extend((-1i16).to_be_bytes());
        b
    }

    fn decode_in_chunks(bytes: &[u8], chunk: usize, fetch_size: usize) -> Vec<Vec<Value>> {
        let plans = vec![
            plan("n", &Type::INT4, &Typing::default()),
            plan("t", &Type::TEXT, &Typing::default()),
        ];
        let schema: Vec<Column> = plans.iter().map(|p| p.column.clone()).collect();
        let mut decoder = CopyDecoder::new(&plans, &schema);
        let mut batch = codec::Builder::new(&schema, 0);
        let mut ready = Vec::new();
        for piece in bytes.chunks(chunk) {
            decoder
                .feed(piece, &mut batch, fetch_size, &mut ready)
                .unwrap();
        }
        assert!(decoder.ended());
        if !batch.is_empty() {
            ready.push(batch.finish());
        }
        let mut rows = Vec::new();
        for b in ready {
            let b = codec::decode(&b).unwrap();
            assert!(b.rows.len() <= fetch_size);
            rows.extend(b.rows);
        }
        rows
    }

    #[test]
    fn copy_rows_decode_however_the_stream_is_cut() {
        let rows = [(1, Some("a")), (-2, None), (3, Some("größe"))];
        let bytes = copy_bytes(&rows);
        let want: Vec<Vec<Value>> = rows
            .iter()
            .map(|(n, t)| {
                vec![
                    Value::Int(*n as i64),
                    t.map_or(Value::Null, |t| Value::String(t.into())),
                ]
            })
            .collect();
        for chunk in [1, 2, 5, 7, bytes.len()] {
            assert_eq!(
                decode_in_chunks(&bytes, chunk, 2),
                want,
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn a_row_of_the_wrong_width_is_an_error() {
        let plans = vec![plan("n", &Type::INT4, &Typing::default())];
        let schema: Vec<Column> = plans.iter().map(|p| p.column.clone()).collect();
        let mut decoder = CopyDecoder::new(&plans, &schema);
        let mut batch = codec::Builder::new(&schema, 0);
        let e = decoder
            .feed(&copy_bytes(&[(1, None)]), &mut batch, 10, &mut Vec::new())
            .unwrap_err();
        assert_eq!(e, "COPY sent a row of 2 fields for 1 columns");
    }
}
