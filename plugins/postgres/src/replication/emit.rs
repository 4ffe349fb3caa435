//! A transaction's changes written straight into the SDK's change-batch codec as they are read:
//! each column from pgoutput's binary form with the snapshot's type plans (`Decode::push`, as
//! the binary COPY does), with no `Value` per column, no `Change` per row and no second pass to
//! encode them. The bytes are the ones `ChangeBatch::encode` gives for the same changes (a test
//! holds them equal), so the host reads them as any source's.
//!
//! What is known only at the commit (the position every change carries, which change is the
//! last) is written as zeros first and set in place when the chunks are handed on: the fields
//! are fixed-size in the codec, so the bytes before and after them do not move.

use etlhost_plugin_sdk::codec::Builder;
use etlhost_plugin_sdk::{ChangeBatch, ChangeKind, Column, Position, Schema, Value};

use crate::types::ColumnPlan;

use super::pgoutput::Datum;

/// A table's change-batch columns (the reserved ones, its own, its own again as the old row),
/// made once per description of the table rather than once per batch.
pub(super) struct Layout {
    table: String,
    key: String,
    columns: Schema,
    /// The table's own columns.
    n: usize,
}

impl Layout {
    pub(super) fn new(table: &str, schema: Vec<Column>, key: &[usize]) -> Layout {
        let n = schema.len();
        // The SDK's own layout, so the two never differ.
        let columns = ChangeBatch {
            table: table.to_string(),
            schema: schema.into(),
            key: key.to_vec(),
            changes: Vec::new(),
        }
        .into_batch()
        .schema;
        Layout {
            table: table.to_string(),
            key: key
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(","),
            columns,
            n,
        }
    }

    pub(super) fn width(&self) -> usize {
        self.n
    }
}

/// Where in a chunk's bytes a change's position (`_etl_pos`) starts; its `_etl_last` and
/// `_etl_skip` follow at fixed distances (see [`head`]).
type Head = usize;

/// The bytes from `_etl_pos` (tag and u64) to `_etl_last`'s byte: `_etl_pos`, then `_etl_gtid`
/// (NULL: one tag byte), then `_etl_last`'s tag.
const LAST_AT: usize = 9 + 1 + 1;
/// From `_etl_pos` to `_etl_skip`'s u64: to `_etl_last`'s end, `_etl_ts` (tag and i64), then
/// `_etl_skip`'s tag.
const SKIP_AT: usize = LAST_AT + 1 + 9 + 1;

/// A chunk of one table's consecutive changes.
struct Chunk {
    /// Which table (relation OID) and which of its descriptions.
    rel: (u32, u64),
    out: Builder,
    heads: Vec<Head>,
}

/// A transaction's changes so far, as chunks of one table (and one description of it) each.
#[derive(Default)]
pub(super) struct Chunks {
    done: Vec<(Vec<u8>, Vec<Head>)>,
    open: Option<Chunk>,
    /// Changes in them.
    count: usize,
}

impl Chunks {
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Starts a change of table `rel` (described as `layout`, its `generation`th description):
    /// its reserved columns; the caller pushes the row's and the old row's values (a value per
    /// column of the table each) and ends it with [`Builder::end_row`].
    pub(super) fn start(
        &mut self,
        rel: (u32, u64),
        layout: &Layout,
        kind: ChangeKind,
        ts: u32,
    ) -> &mut Builder {
        if self.open.as_ref().is_some_and(|c| c.rel != rel) {
            self.close();
        }
        let chunk = self.open.get_or_insert_with(|| Chunk {
            rel,
            out: Builder::new(&layout.columns, 4096),
            heads: Vec::new(),
        });
        let at = head(&mut chunk.out, layout, kind, ts);
        chunk.heads.push(at);
        self.count += 1;
        &mut chunk.out
    }

    fn close(&mut self) {
        if let Some(c) = self.open.take() {
            self.done.push((c.out.finish(), c.heads));
        }
    }

    /// Every chunk, each change given `at` as its position and the very last change marked
    /// last; the transaction (or its part) is then empty.
    pub(super) fn take(&mut self, at: &Position) -> Vec<Vec<u8>> {
        self.close();
        self.count = 0;
        let chunks = std::mem::take(&mut self.done);
        let n = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, (mut bytes, heads))| {
                for (j, &h) in heads.iter().enumerate() {
                    let last = i + 1 == n && j + 1 == heads.len();
                    set(&mut bytes, h, at, last);
                }
                bytes
            })
            .collect()
    }
}

/// Writes a change's reserved columns as `ChangeBatch::encode` does, its position, `last` and
/// `skip` as zeros (set by [`set`] at the commit): where its position starts.
fn head(out: &mut Builder, layout: &Layout, kind: ChangeKind, ts: u32) -> Head {
    out.push_int(tag(kind));
    out.push_string(&layout.table);
    out.push_string(&layout.key);
    // A PostgreSQL position is an LSN alone: no file, no GTID.
    out.push_string("");
    let at = out.len();
    out.push_uint(0);
    out.push_null();
    out.push_value(&Value::Bool(false));
    out.push_int(ts as i64);
    out.push_uint(0);
    // pgoutput logs every row its foreign-key actions changed: they were on.
    out.push_value(&Value::Bool(false));
    at
}

/// A kind's number in `_etl_kind`, as the SDK writes it (its own function is private; the test
/// that compares these bytes with `ChangeBatch::encode`'s holds the two equal).
fn tag(kind: ChangeKind) -> i64 {
    match kind {
        ChangeKind::Mark => 0,
        ChangeKind::Insert => 1,
        ChangeKind::Update => 2,
        ChangeKind::Delete => 3,
        ChangeKind::Truncate => 4,
    }
}

fn set(bytes: &mut [u8], at: Head, position: &Position, last: bool) {
    bytes[at + 1..at + 9].copy_from_slice(&position.pos.to_le_bytes());
    bytes[at + LAST_AT] = u8::from(last);
    bytes[at + SKIP_AT..at + SKIP_AT + 8].copy_from_slice(&position.skip.to_le_bytes());
}

/// Pushes a tuple's columns from the log: NULL, an unchanged TOASTed value or a column read
/// elsewhere (`skip`) as NULL (the caller has made sure that is what the row holds), a binary
/// value through its plan, a text one as text.
pub(super) fn push_tuple(
    out: &mut Builder,
    table: &str,
    plans: &[ColumnPlan],
    skip: &[bool],
    tuple: &[Datum<'_>],
) -> Result<(), String> {
    for (i, plan) in plans.iter().enumerate() {
        match tuple.get(i).copied().unwrap_or(Datum::Null) {
            Datum::Null | Datum::Unchanged => out.push_null(),
            _ if skip[i] => out.push_null(),
            Datum::Binary(b) => plan
                .decode
                .push(Some(b), out)
                .map_err(|e| format!("table `{table}` column `{}`: {e}", plan.column.name))?,
            // A type the server sends as text even in binary mode (it has no send function).
            Datum::Text(b) => out.push_value(&Value::String(String::from_utf8_lossy(b).into())),
        }
    }
    Ok(())
}

/// `n` NULLs: the old row of a change that has none.
pub(super) fn push_nulls(out: &mut Builder, n: usize) {
    for _ in 0..n {
        out.push_null();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{plan, Typing};
    use etlhost_plugin_sdk::Change;
    use tokio_postgres::types::Type;

    fn plans() -> Vec<ColumnPlan> {
        ["id", "name", "bio", "tags"]
            .iter()
            .zip([Type::INT4, Type::TEXT, Type::TEXT, Type::TEXT])
            .map(|(n, t)| plan(n, &t, &Typing::default()))
            .collect()
    }

    fn change(kind: ChangeKind, row: Vec<Value>, at: &Position, last: bool) -> Change {
        Change {
            kind,
            row,
            old: None,
            commit: at.clone(),
            last,
            timestamp: 1_700_000_000,
            no_fk_actions: false,
        }
    }

    /// Every pgoutput column kind (binary, text, NULL, unchanged TOAST; a column read elsewhere)
    /// and every kind of change with a row or none, written as the SDK's `ChangeBatch::encode`
    /// writes the same changes, byte for byte, and read back by `ChangeBatch::decode`.
    #[test]
    fn chunks_are_the_bytes_the_sdk_encodes() {
        let plans = plans();
        let schema: Vec<Column> = plans.iter().map(|p| p.column.clone()).collect();
        let layout = Layout::new("person", schema.clone(), &[0]);
        let seven = 7i32.to_be_bytes();
        let tuple = [
            Datum::Binary(&seven),
            Datum::Binary("Ada ✓".as_bytes()),
            Datum::Unchanged,
            Datum::Text(b"{a,b}"),
        ];
        let nulls = [Datum::Binary(&seven), Datum::Null, Datum::Null, Datum::Null];
        // `tags` is read elsewhere (a type read as text): NULL here, whatever the log has.
        let skip = [false, false, false, true];
        let ts = 1_700_000_000;
        let mut chunks = Chunks::default();
        for (kind, t) in [
            (ChangeKind::Insert, &tuple[..]),
            (ChangeKind::Update, &nulls[..]),
            (ChangeKind::Delete, &tuple[..]),
        ] {
            let out = chunks.start((1, 0), &layout, kind, ts);
            push_tuple(out, "person", &plans, &skip, t).unwrap();
            push_nulls(out, layout.width());
            out.end_row();
        }
        let out = chunks.start((1, 0), &layout, ChangeKind::Truncate, ts);
        push_nulls(out, 2 * layout.width());
        out.end_row();
        assert_eq!(chunks.len(), 4);
        let at = Position {
            file: String::new(),
            pos: 0x1_6B37_4D48,
            gtid: None,
            skip: 3,
        };
        let got = chunks.take(&at);
        assert_eq!(chunks.len(), 0);

        let name = Value::String("Ada ✓".into());
        let row = vec![Value::Int(7), name, Value::Null, Value::Null];
        let sparse = vec![Value::Int(7), Value::Null, Value::Null, Value::Null];
        let want = ChangeBatch {
            table: "person".into(),
            schema: schema.into(),
            key: vec![0],
            changes: vec![
                change(ChangeKind::Insert, row.clone(), &at, false),
                // An update's old row decodes as NULLs when it has none (as the SDK reads it).
                Change {
                    old: Some(vec![Value::Null; 4]),
                    ..change(ChangeKind::Update, sparse, &at, false)
                },
                change(ChangeKind::Delete, row, &at, false),
                change(ChangeKind::Truncate, Vec::new(), &at, true),
            ],
        };
        assert_eq!(got, vec![want.encode()]);
        assert_eq!(ChangeBatch::decode(&got[0]).unwrap(), want);
    }

    /// A chunk per run of one table (and one description of it), the last change of the last
    /// chunk marked; a text column with bytes that are not UTF-8 is refused with its table and
    /// column named.
    #[test]
    fn chunks_follow_tables_and_bad_text_names_its_column() {
        let plans = plans();
        let schema: Vec<Column> = plans.iter().map(|p| p.column.clone()).collect();
        let layout = Layout::new("person", schema, &[0]);
        let one = 1i32.to_be_bytes();
        let row = [Datum::Binary(&one), Datum::Null, Datum::Null, Datum::Null];
        let mut chunks = Chunks::default();
        for rel in [(1, 0), (1, 0), (2, 0), (1, 0), (1, 1)] {
            let out = chunks.start(rel, &layout, ChangeKind::Insert, 0);
            push_tuple(out, "person", &plans, &[false; 4], &row).unwrap();
            push_nulls(out, 4);
            out.end_row();
        }
        let got = chunks.take(&Position::default());
        let batches: Vec<ChangeBatch> = got
            .iter()
            .map(|b| ChangeBatch::decode(b).unwrap())
            .collect();
        let sizes: Vec<usize> = batches.iter().map(|b| b.changes.len()).collect();
        assert_eq!(sizes, [2, 1, 1, 1]);
        let lasts: Vec<bool> = batches
            .iter()
            .flat_map(|b| &b.changes)
            .map(|c| c.last)
            .collect();
        assert_eq!(lasts, [false, false, false, false, true]);

        let bad = [
            Datum::Binary(&one),
            Datum::Binary(b"\xff\xfe"),
            Datum::Null,
            Datum::Null,
        ];
        let out = chunks.start((1, 0), &layout, ChangeKind::Insert, 0);
        let e = push_tuple(out, "person", &plans, &[false; 4], &bad).unwrap_err();
        assert!(
            e.starts_with("table `person` column `name`: not UTF-8"),
            "{e}"
        );
    }
}
