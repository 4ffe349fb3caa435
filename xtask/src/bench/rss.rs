//! Memory stays flat in table size: peak RSS reading 1,000,000 rows and, with `--10m`,
//! 10,000,000 rows into the console sink (count only).

use anyhow::Result;
use serde_json::json;

use super::{alternate, console_spec, etlhost_sample, report, seed, Case, Opts};

pub fn run(opts: &Opts) -> Result<()> {
    seed("person_1m", 1_000_000)?;
    let mut tables = vec![("person_1m", 1_000_000u64)];
    if opts.ten_million {
        seed("person_10m", 10_000_000)?;
        tables.push(("person_10m", 10_000_000));
    } else {
        println!("\n(peak RSS on 10,000,000 rows: run `cargo xtask bench rss --10m`; seeding takes minutes)");
    }
    let cases = tables
        .into_iter()
        .enumerate()
        .map(|(i, (table, rows))| {
            let spec = console_spec(table, 1, 1);
            let name = format!("mysql -> console (count), {rows} rows");
            Case::new(name.clone(), (i > 0).then_some(0), move || {
                etlhost_sample(&name, &format!("rss-{table}"), &spec, rows)
            })
        })
        .collect();
    let figures = alternate(opts.reps.min(3), cases)?;
    let base = figures[0].peak_rss() as f64;
    report(
        "Peak RSS against table size, MySQL -> console (count only), 1 reader",
        "rss.json",
        &figures,
        &|f| {
            let r = f.peak_rss() as f64 / base;
            (
                Some(format!("RSS {r:.2}x of 1,000,000 rows")),
                json!({"peak_rss_to_1m": r}),
            )
        },
    )
}
