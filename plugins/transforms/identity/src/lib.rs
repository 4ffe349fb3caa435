//! `identity`: keeps every row. The baseline of what crossing into a WASM component costs.

use etlhost_transform::{Batch, Outcome, Output, Transform};

struct Identity;

impl Transform for Identity {
    fn new(_config: &str) -> Result<Self, String> {
        Ok(Identity)
    }

    fn process(&mut self, input: Batch) -> Result<Output, String> {
        Ok(Output {
            outcomes: vec![Outcome::Keep; input.rows.len()],
            columns: input.columns,
        })
    }
}

etlhost_transform::transform!(Identity);
