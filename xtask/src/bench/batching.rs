//! Batching pays: one row per transaction against batches of 100, 1,000 and 10,000.

use anyhow::Result;

use super::compare::{bolt_spec, into_graph};
use super::{alternate, etlhost_sample, plain, report, seed, Case, Opts};

const ROWS: u64 = 100_000;
/// one_by_one runs at a few thousand rows/s: a slice keeps it to seconds.
const SLICE: u64 = 10_000;

pub fn run(opts: &Opts) -> Result<()> {
    seed("person_100k", ROWS)?;
    let mut cases = Vec::new();
    for (mode, batch) in [
        ("one_by_one", 1),
        ("batch", 100),
        ("batch", 1000),
        ("batch", 10_000),
    ] {
        let (name, rows) = if mode == "one_by_one" {
            ("mysql -> bolt, one_by_one (10,000 rows)".to_string(), SLICE)
        } else {
            (format!("mysql -> bolt, batches of {batch}"), ROWS)
        };
        let mut spec = bolt_spec("person_100k", mode, batch);
        if rows != ROWS {
            spec = spec.replace(
                "    table: person_100k\n",
                &format!("    query: SELECT * FROM person_100k WHERE id <= {rows}\n"),
            );
        }
        let file = format!("bolt-{mode}-{batch}");
        let what = name.clone();
        cases.push(Case::new(
            name,
            (mode != "one_by_one").then_some(0),
            into_graph(rows, &what.clone(), move || {
                etlhost_sample(&what, &file, &spec, rows)
            }),
        ));
    }
    report(
        "Batching: MySQL -> Bolt (CREATE); ratio of medians to one_by_one",
        "batching.json",
        &alternate(opts.reps, cases)?,
        &plain,
    )
}
