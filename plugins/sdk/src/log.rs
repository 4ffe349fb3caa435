//! Forwards a plugin's `tracing` events to the host, which logs them under the plugin's name.

use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::abi::{self, LogFn, StrRef};

/// The host's callback, the most verbose level it wants, and this plugin's name.
static HOST: OnceLock<(LogFn, u32, &'static str)> = OnceLock::new();

fn level_num(level: &Level) -> u32 {
    match *level {
        Level::ERROR => abi::LOG_ERROR,
        Level::WARN => abi::LOG_WARN,
        Level::INFO => abi::LOG_INFO,
        Level::DEBUG => abi::LOG_DEBUG,
        Level::TRACE => abi::LOG_TRACE,
    }
}

/// Installs the forwarding subscriber as the plugin's global default (once per library).
pub(crate) fn install(plugin: &'static str, log: LogFn, max_level: u32) {
    if HOST.set((log, max_level, plugin)).is_ok() {
        // Fails only if the plugin installed a subscriber of its own, which then wins.
        let _ = tracing::subscriber::set_global_default(Forward);
    }
}

struct Forward;

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

impl Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        HOST.get()
            .is_some_and(|(_, max, _)| level_num(metadata.level()) <= *max)
    }

    fn event(&self, event: &Event<'_>) {
        let Some((log, _, plugin)) = HOST.get() else {
            return;
        };
        let mut msg = Message::default();
        event.record(&mut msg);
        // The host logs under the plugin's name, whatever module of the plugin spoke.
        let target = *plugin;
        // SAFETY: the host's callback only reads the two borrowed strings during the call.
        unsafe {
            log(
                level_num(event.metadata().level()),
                StrRef::new(target.as_bytes()),
                StrRef::new(msg.0.as_bytes()),
            )
        };
    }

    // Spans are not forwarded: the host adds its own context (plugin, split) around each call.
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}
