//! `identity`: keeps every row. The baseline of what crossing into a WASM component costs, on the
//! encoded world: the batch is copied in as one buffer and nothing of it is decoded.

use etlhost_transform::encoded::{Output, Rows, Transform};

struct Identity;

impl Transform for Identity {
    fn new(_config: &str) -> Result<Self, String> {
        Ok(Identity)
    }

    fn process(&mut self, _rows: &Rows) -> Result<Output, String> {
        Ok(Output::all_kept())
    }
}

etlhost_transform::encoded_transform!(Identity);
