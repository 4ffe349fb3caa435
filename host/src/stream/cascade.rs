//! What the source changes without writing it to its log: rows that InnoDB changes through
//! foreign keys (`ON DELETE CASCADE / SET NULL`, `ON UPDATE CASCADE / SET NULL`) and the rows a
//! `TRUNCATE` removes. Those rows are gone from MySQL by the time the log is read; the only place
//! that still has them is the graph, which equals MySQL at that point of the log. So the stream
//! asks the graph for them, through each table's `rows_query` (run by the sink's read
//! capability, the one `etlhost verify` uses), and writes them as ordinary changes of their table
//! with all of its flows ([`super::derive`]).
//!
//! The foreign keys come from the source's catalog, read at start and again when it may have
//! changed (a table's columns in the log differ from the last seen, or the catalog is older than
//! [`REFRESH`] when a change could trigger a cascade).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etlhost_plugin_sdk::split::FkRule;
use etlhost_plugin_sdk::{Batch, Catalog, QueryRequest, Row, Schema, Value};

use crate::job::Job;
use crate::plugin::{Plugin, PluginError, QueryHandle, SourceHandle};
use crate::retry::Policy;
use crate::spec::FlowRef;

/// The first wait before a failed lookup in the graph is tried again.
const LOOKUP_BACKOFF: Duration = Duration::from_millis(200);
/// How old the catalog may be when a change that could trigger a cascade arrives.
pub(super) const REFRESH: Duration = Duration::from_secs(2);
/// Maps of column values per `rows_query` call, and rows per page of a truncate.
pub(super) const PAGE: usize = 5_000;

/// A foreign key between two streamed tables whose rules change rows.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Fk {
    pub(super) name: String,
    pub(super) child: String,
    pub(super) columns: Vec<String>,
    pub(super) parent: String,
    pub(super) references: Vec<String>,
    pub(super) on_delete: FkRule,
    pub(super) on_update: FkRule,
}

/// A change of a referenced row: the referenced values before, and after (`None`: gone).
#[derive(Debug, Clone)]
pub(super) struct Trigger {
    /// Index into [`Cascades::fks`].
    pub(super) fk: usize,
    pub(super) old: Vec<Value>,
    pub(super) new: Option<Vec<Value>>,
}

/// The cascade of a delete that ended a part of a larger transaction: whether it is a delete or
/// the first half of a key change shows only in the next part.
pub(super) struct Deferred {
    pub(super) table: String,
    pub(super) row: Row,
    pub(super) triggers: Vec<Trigger>,
}

/// How to read one table's rows back from the graph.
struct Finder {
    flow: String,
    plugin: Arc<Plugin>,
    options: serde_json::Map<String, serde_json::Value>,
    query: String,
}

/// The cascade graph of a job's streamed tables and the means to find their rows in the graph.
pub(super) struct Cascades {
    pub(super) fks: Vec<Fk>,
    /// Primary key columns of every table in the catalog.
    pub(super) keys: HashMap<String, Vec<String>>,
    finders: HashMap<String, Finder>,
    streamed: BTreeSet<String>,
    source: Arc<SourceHandle>,
    read_at: Instant,
    /// Column names of each table as last seen in the log: a difference means DDL.
    seen: HashMap<String, Vec<String>>,
    /// Warnings already given, so that a refresh repeats none.
    warned: BTreeSet<String>,
    /// Changes written that the source's log did not have.
    pub(super) cascaded: u64,
    pub(super) deferred: Option<Deferred>,
    /// The catalog may have changed since it was read (DDL, or a read that failed).
    stale: bool,
    read_once: bool,
    /// The source logs what its foreign keys change (`StreamHead::logs_cascades`): nothing is
    /// derived for them.
    logged: bool,
}

impl Cascades {
    /// Reads the catalog and builds the cascade graph; refuses a cascading foreign key whose
    /// child table is streamed without a `rows_query` (its rows could not be found: the graph
    /// would drift), and warns of those it cannot follow.
    pub(super) fn start(
        job: &Job,
        flows: &[FlowRef<'_>],
        source: Arc<SourceHandle>,
        logged: bool,
    ) -> Result<Cascades, String> {
        let mut finders = HashMap::new();
        let mut streamed = BTreeSet::new();
        for f in flows {
            let table = table_of(f);
            streamed.insert(table.clone());
            if let Some(q) = &f.flow.rows_query {
                finders.entry(table).or_insert_with(|| Finder {
                    flow: f.flow.name.clone(),
                    plugin: job.plugins[f.index].sink.clone(),
                    options: f.flow.sink.options.clone(),
                    query: q.clone(),
                });
            }
        }
        let mut c = Cascades {
            fks: Vec::new(),
            keys: HashMap::new(),
            finders,
            streamed,
            source,
            read_at: Instant::now(),
            seen: HashMap::new(),
            warned: BTreeSet::new(),
            cascaded: 0,
            deferred: None,
            stale: false,
            read_once: false,
            logged,
        };
        c.refresh()?;
        Ok(c)
    }

    /// Reads the catalog again and rebuilds the cascade graph.
    pub(super) fn refresh(&mut self) -> Result<(), String> {
        self.read_at = Instant::now();
        let catalog = match self.source.describe() {
            Ok(c) => c,
            // MySQL is out of reach (a restart): no DDL can happen meanwhile, so the foreign keys
            // read last still hold; they are read again at the next chance.
            Err(e) if e.is_retryable() && self.read_once => {
                self.stale = true;
                tracing::warn!("cannot read the source's foreign keys again for cascades: {e}; keeping those read before");
                return Ok(());
            }
            Err(e) => {
                return Err(format!(
                    "cannot read the source's foreign keys for cascades: {e}"
                ))
            }
        };
        self.read_once = true;
        self.stale = false;
        let before = self.fks.clone();
        self.build(&catalog)?;
        if !before.is_empty() && before != self.fks {
            tracing::info!(
                "the source's foreign keys changed: {} cascading between streamed tables now",
                self.fks.len()
            );
        }
        Ok(())
    }

    fn build(&mut self, catalog: &Catalog) -> Result<(), String> {
        self.keys = catalog
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.primary_key.clone()))
            .collect();
        if self.logged {
            // The source's log has the rows its foreign keys change: deriving them too would
            // apply each twice.
            self.fks.clear();
            return Ok(());
        }
        let mut fks = Vec::new();
        for t in &catalog.tables {
            for f in &t.foreign_keys {
                if !f.on_delete.changes_rows() && !f.on_update.changes_rows() {
                    continue;
                }
                let (child, parent) = (&t.name, &f.table);
                let rules = format!(
                    "ON DELETE {}, ON UPDATE {}",
                    rule(f.on_delete),
                    rule(f.on_update)
                );
                if !self.streamed.contains(parent) {
                    if self.streamed.contains(child) {
                        self.warn(format!(
                            "foreign key `{}` of streamed table `{child}` ({rules}) refers to `{parent}`, which no flow of this job streams: the rows it changes in `{child}` are not seen, so the graph's `{child}` may differ from MySQL; stream `{parent}` too",
                            f.name
                        ));
                    }
                    continue;
                }
                if !self.streamed.contains(child) {
                    self.warn(format!(
                        "foreign key `{}` of `{child}` ({rules}) changes rows of `{child}` when rows of streamed table `{parent}` change, but no flow of this job streams `{child}`: those changes are not followed",
                        f.name
                    ));
                    continue;
                }
                if !self.finders.contains_key(child) {
                    return Err(format!(
                        "foreign key `{}` of `{child}` ({rules}) changes rows of `{child}` that MySQL does not write to its binlog, and no flow of table `{child}` has a `rows_query` to find them in the graph: add `rows_query` to its node flow (`etlhost init --mode stream` writes one), or change the foreign key to RESTRICT",
                        f.name
                    ));
                }
                fks.push(Fk {
                    name: f.name.clone(),
                    child: child.clone(),
                    columns: f.columns.clone(),
                    parent: parent.clone(),
                    references: f.references.clone(),
                    on_delete: f.on_delete,
                    on_update: f.on_update,
                });
            }
        }
        self.fks = fks;
        Ok(())
    }

    fn warn(&mut self, text: String) {
        if self.warned.insert(text.clone()) {
            tracing::warn!("{text}");
        }
    }

    /// Reads the catalog again when a table's columns in the log changed (DDL) or, when
    /// `may_trigger`, when it is older than [`REFRESH`].
    pub(super) fn maybe_refresh(
        &mut self,
        table: &str,
        schema: &Schema,
        may_trigger: bool,
    ) -> Result<(), String> {
        let names: Vec<String> = schema.iter().map(|c| c.name.clone()).collect();
        let changed = self
            .seen
            .insert(table.to_string(), names.clone())
            .is_some_and(|old| old != names);
        self.stale |= changed;
        if self.stale || (may_trigger && self.read_at.elapsed() > REFRESH) {
            self.refresh()?;
        }
        Ok(())
    }

    /// Whether changes of `table` can change rows of other tables.
    pub(super) fn is_parent(&self, table: &str) -> bool {
        self.fks.iter().any(|f| f.parent == table)
    }

    /// The name of the flow whose `rows_query` reads `table`, when one has.
    pub(super) fn finder_flow(&self, table: &str) -> Option<&str> {
        self.finders.get(table).map(|f| f.flow.as_str())
    }

    /// The rows of `table` in the graph matching any of `maps` (column name to value; an empty
    /// map matches every row), with the columns `rows_query` returns; at most `limit` rows. A
    /// transient failure (a Bolt server restart) is retried until it passes, as writes are.
    pub(super) fn find(
        &self,
        table: &str,
        maps: &[Vec<(String, Value)>],
        limit: usize,
    ) -> Result<(Schema, Vec<Row>), String> {
        let f = self.finders.get(table).ok_or_else(|| {
            format!("no flow of table `{table}` has a `rows_query` to find its rows in the graph")
        })?;
        let mut backoff = Policy::forever(LOOKUP_BACKOFF).start();
        loop {
            match read_rows(f, maps, limit) {
                Ok(found) => return Ok(found),
                Err(e) if e.is_retryable() => {
                    let wait = backoff.next_wait().expect("retries without limit");
                    tracing::warn!(
                        flow = f.flow,
                        "rows_query of table `{table}` failed: {e}; retrying in {wait:?}"
                    );
                    std::thread::sleep(wait);
                }
                Err(e) => {
                    return Err(format!(
                        "flow `{}`: rows_query of table `{table}` failed: {e}",
                        f.flow
                    ))
                }
            }
        }
    }

    /// Positions in `schema` of `table`'s primary key, or why the rows cannot be written.
    pub(super) fn key_in(&self, table: &str, schema: &Schema) -> Result<Vec<usize>, String> {
        let flow = self.finder_flow(table).unwrap_or("?");
        let key = self.keys.get(table).filter(|k| !k.is_empty()).ok_or_else(|| {
            format!("table `{table}` has no primary key: its rows found by flow `{flow}`'s rows_query cannot be matched to their nodes")
        })?;
        key.iter()
            .map(|k| {
                schema.iter().position(|c| &c.name == k).ok_or_else(|| {
                    format!("flow `{flow}`: rows_query does not return column `{k}` of table `{table}`'s primary key: return every column of the table, named like it")
                })
            })
            .collect()
    }
}

/// The table a streaming flow follows.
pub(super) fn table_of(flow: &FlowRef<'_>) -> String {
    match flow.flow.source.options.get("table") {
        Some(serde_json::Value::String(t)) => t.clone(),
        _ => String::new(),
    }
}

/// One try of [`Cascades::find`].
fn read_rows(
    f: &Finder,
    maps: &[Vec<(String, Value)>],
    limit: usize,
) -> Result<(Schema, Vec<Row>), PluginError> {
    let mut schema: Option<Schema> = None;
    let mut rows = Vec::new();
    for part in maps.chunks(PAGE) {
        let batch = Value::List(part.iter().map(|m| Value::Map(m.clone())).collect());
        let request = QueryRequest {
            query: f.query.clone(),
            params: vec![("batch".into(), batch)],
            fetch_size: limit.min(PAGE),
        };
        let mut h =
            QueryHandle::open(f.plugin.clone(), &f.options, &request).unwrap_or_else(|| {
                Err(PluginError::Failed {
                    plugin: f.plugin.name.clone(),
                    message: "the sink plugin cannot read the graph".into(),
                    retryable: false,
                })
            })?;
        while let Some(Batch { schema: s, rows: r }) = h.next_batch()? {
            schema.get_or_insert(s);
            rows.extend(r);
            if rows.len() >= limit {
                rows.truncate(limit);
                return Ok((schema.expect("set above"), rows));
            }
        }
    }
    Ok((schema.unwrap_or_else(|| Vec::new().into()), rows))
}

fn rule(r: FkRule) -> &'static str {
    match r {
        FkRule::Cascade => "CASCADE",
        FkRule::SetNull => "SET NULL",
        FkRule::Restrict => "RESTRICT",
        FkRule::NoAction => "NO ACTION",
        FkRule::SetDefault => "SET DEFAULT",
        FkRule::Unknown => "(unknown)",
    }
}
