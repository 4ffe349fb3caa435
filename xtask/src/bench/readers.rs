//! Readers scale: 1, 2 and 4 readers over 1,000,000 rows into the console sink (count only).

use anyhow::Result;

use super::{alternate, console_spec, etlhost_sample, plain, report, seed, Case, Opts};

const ROWS: u64 = 1_000_000;

pub fn run(opts: &Opts) -> Result<()> {
    seed("person_1m", ROWS)?;
    let cases = [1, 2, 4]
        .into_iter()
        .map(|readers| {
            // Twice as many splits as readers, so an uneven split does not leave a reader idle.
            let spec = console_spec("person_1m", readers, readers * 2);
            let name = format!("mysql -> console (count), {readers} reader(s)");
            let file = format!("readers-{readers}");
            Case::new(name.clone(), (readers > 1).then_some(0), move || {
                etlhost_sample(&name, &file, &spec, ROWS)
            })
        })
        .collect();
    report(
        "Readers: 1,000,000 rows, MySQL -> console (count only); ratio of medians to 1 reader",
        "readers.json",
        &alternate(opts.reps, cases)?,
        &plain,
    )
}
