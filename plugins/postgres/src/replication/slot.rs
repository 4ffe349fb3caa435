//! What streaming needs on the server, checked and made before the snapshot: `wal_level`, the
//! user's REPLICATION attribute, each table's replica identity, the publication and the logical
//! replication slot. A slot made here exports its snapshot, held open on its replication session
//! until the stream starts, so that the copy ends exactly where the stream begins.

use etlhost_plugin_sdk::{Error, Position};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, SslMode, TlsConfig};
use tokio_postgres::Client;

use crate::options::{PgOptions, TlsMode};
use crate::source::PgSource;
use crate::sql::{ident, string_lit};

/// The slot and publication a source's stream uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Names {
    pub slot: String,
    pub publication: String,
}

/// The options' names, or `etlhost_<database>_<schema>_<table>` of the source's table (what
/// PostgreSQL allows in a slot name: lower-case letters, digits, `_`; at most 63 bytes).
pub(super) fn names(o: &PgOptions, database: &str, relation: &str) -> Names {
    let default = || {
        let raw = format!("etlhost_{database}_{relation}");
        let mut s: String = raw
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9') => c,
                _ => '_',
            })
            .collect();
        while s.contains("__") {
            s = s.replace("__", "_");
        }
        let s = s.trim_end_matches('_').to_string();
        if s.len() <= 63 {
            return s;
        }
        // Long names keep a hash of the whole, so two tables that share a prefix differ.
        let hash = raw.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        format!("{}_{:08x}", &s[..54], hash as u32)
    };
    Names {
        slot: o.slot.clone().unwrap_or_else(default),
        publication: o.publication.clone().unwrap_or_else(default),
    }
}

/// The server's settings and the user's attribute that streaming needs, each refusal with its fix.
pub(super) async fn check_server(c: &Client, source: &PgSource) -> Result<(), Error> {
    let fail = |e: tokio_postgres::Error| {
        source
            .conn
            .error("cannot check the server for streaming", &e)
    };
    let row = c
        .query_one(
            "SELECT current_setting('wal_level'), current_user::text, \
             (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user)",
            &[],
        )
        .await
        .map_err(fail)?;
    let (wal_level, user, replication): (String, String, Option<bool>) =
        (row.get(0), row.get(1), row.get(2));
    if replication != Some(true) {
        return Err(Error::permanent(format!(
            "user {user} lacks the REPLICATION attribute that streaming needs: \
             ALTER ROLE {} REPLICATION (as a superuser)",
            ident(&user)
        )));
    }
    if wal_level != "logical" {
        return Err(Error::permanent(format!(
            "the server's wal_level is {wal_level}, and streaming reads logical replication: \
             ALTER SYSTEM SET wal_level = logical (or wal_level = logical in postgresql.conf), \
             then restart the server"
        )));
    }
    Ok(())
}

/// A streamed table as the server knows it.
#[derive(Debug, Clone)]
pub(super) struct Table {
    /// As the options name it (what the host's flows say).
    pub name: String,
    pub oid: u32,
    /// `"schema"."table"`.
    pub relation: String,
    /// A partitioned table: its partitions' changes are published as its own only by a
    /// publication with `publish_via_partition_root`.
    pub partitioned: bool,
}

/// A table's replica identity, or a partition's, as the log can describe its old rows: not
/// `NOTHING`, and `DEFAULT` only with a primary key.
const IDENTITY_UNUSABLE: &str = "(c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS \
     (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))";

/// Resolves the tables (as PostgreSQL reads a name: quoted parts keep their case) and refuses
/// one whose updates and deletes the log could not describe.
pub(super) async fn tables(
    c: &Client,
    source: &PgSource,
    names: &[String],
) -> Result<Vec<Table>, Error> {
    let mut out = Vec::new();
    for name in names {
        let parts = crate::sql::parse_name(name).map_err(Error::permanent)?;
        let relation = parts
            .iter()
            .map(|(p, _)| ident(p))
            .collect::<Vec<_>>()
            .join(".");
        // A partition's replica identity is its own (the parent's does not carry over), and
        // PostgreSQL refuses the updates and deletes of a published partition without one.
        let sql = format!(
            "SELECT c.oid, {IDENTITY_UNUSABLE}, c.relkind = 'p', \
             (SELECT string_agg(c.oid::regclass::text, ', ' ORDER BY c.oid::regclass::text) \
              FROM pg_partition_tree(p.oid) t JOIN pg_class c ON c.oid = t.relid \
              WHERE t.isleaf AND t.relid <> p.oid AND {IDENTITY_UNUSABLE}) \
             FROM pg_class c, LATERAL (SELECT c.oid) p WHERE c.oid = to_regclass($1)"
        );
        let row = c
            .query_opt(&sql, &[&relation])
            .await
            .map_err(|e| {
                source
                    .conn
                    .error(&format!("cannot look up table `{name}`"), &e)
            })?
            .ok_or_else(|| {
                Error::permanent(format!(
                    "table `{name}` does not exist (or this user cannot see it)"
                ))
            })?;
        let (oid, unusable, partitioned, partitions): (u32, bool, bool, Option<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if unusable {
            return Err(Error::permanent(format!(
                "table `{name}` has no primary key and no REPLICA IDENTITY, so PostgreSQL logs no \
                 old row for its updates and deletes (and refuses them once it is published): \
                 ALTER TABLE {relation} REPLICA IDENTITY FULL, or add a primary key"
            )));
        }
        if let Some(list) = partitions {
            let first = list.split(", ").next().unwrap_or_default();
            return Err(Error::permanent(format!(
                "table `{name}` is partitioned, and its partitions {list} have no primary key and \
                 no REPLICA IDENTITY of their own (a partition does not take its parent's), so \
                 PostgreSQL would refuse their updates and deletes once they are published: \
                 ALTER TABLE {first} REPLICA IDENTITY FULL, and the same for each of them, or add \
                 a primary key to {relation}"
            )));
        }
        out.push(Table {
            name: name.clone(),
            oid,
            relation,
            partitioned,
        });
    }
    Ok(out)
}

/// Makes the publication when absent (for the tables), or adds the tables it lacks to one this
/// source made; a publication named in the options that lacks a table is refused with the fix.
pub(super) async fn publication(
    c: &Client,
    source: &PgSource,
    names: &Names,
    named: bool,
    tables: &[Table],
) -> Result<(), Error> {
    let fail = |e: tokio_postgres::Error| {
        source.conn.error(
            &format!("cannot set up publication `{}`", names.publication),
            &e,
        )
    };
    let exists = c
        .query_opt(
            "SELECT puballtables, pubviaroot FROM pg_publication WHERE pubname = $1",
            &[&names.publication],
        )
        .await
        .map_err(fail)?;
    let list = tables
        .iter()
        .map(|t| t.relation.clone())
        .collect::<Vec<_>>()
        .join(", ");
    let Some(row) = exists else {
        // A partitioned table's changes are published as its own (not its partitions'), as the
        // flows name it.
        let sql = format!(
            "CREATE PUBLICATION {} FOR TABLE {list} WITH (publish_via_partition_root = true)",
            ident(&names.publication)
        );
        return c.batch_execute(&sql).await.map_err(fail);
    };
    if let Some((partitioned, set)) = via_root(names, tables).filter(|_| !row.get::<_, bool>(1)) {
        // One this source made is changed; one named in the options is refused with the fix.
        if named {
            return Err(Error::permanent(format!(
                "publication `{}` publishes the partitions of {partitioned} as themselves, and the \
                 flows read the partitioned table, so its changes would be lost: {set}",
                names.publication
            )));
        }
        c.batch_execute(&set).await.map_err(fail)?;
    }
    if row.get::<_, bool>(0) {
        return Ok(());
    }
    let mut missing = Vec::new();
    for t in tables {
        let member = c
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid \
                 WHERE p.pubname = $1 AND r.prrelid = $2)",
                &[&names.publication, &t.oid],
            )
            .await
            .map_err(fail)?;
        if !member.get::<_, bool>(0) {
            missing.push(t.relation.clone());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let add = format!(
        "ALTER PUBLICATION {} ADD TABLE {}",
        ident(&names.publication),
        missing.join(", ")
    );
    if named {
        return Err(Error::permanent(format!(
            "publication `{}` does not publish {}: {add}",
            names.publication,
            missing.join(", ")
        )));
    }
    c.batch_execute(&add).await.map_err(fail)
}

/// A publication without `publish_via_partition_root` sends a partitioned table's changes as
/// its partitions', which no flow names: they would be lost. The partitioned tables among
/// `tables`, and the statement that publishes them through the parent.
fn via_root(names: &Names, tables: &[Table]) -> Option<(String, String)> {
    let partitioned: Vec<&str> = tables
        .iter()
        .filter(|t| t.partitioned)
        .map(|t| t.relation.as_str())
        .collect();
    (!partitioned.is_empty()).then(|| {
        let set = format!(
            "ALTER PUBLICATION {} SET (publish_via_partition_root = true)",
            ident(&names.publication)
        );
        (partitioned.join(", "), set)
    })
}

/// The slot's confirmed position, or `None` when there is no such slot.
pub(super) async fn confirmed(
    c: &Client,
    source: &PgSource,
    slot: &str,
) -> Result<Option<u64>, Error> {
    let row = c
        .query_opt(
            "SELECT confirmed_flush_lsn::text, plugin::text, database::text = current_database() \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| source.conn.error("cannot read the replication slots", &e))?;
    let Some(row) = row else { return Ok(None) };
    let (lsn, plugin, here): (Option<String>, Option<String>, Option<bool>) =
        (row.get(0), row.get(1), row.get(2));
    if plugin.as_deref() != Some("pgoutput") || here != Some(true) {
        return Err(Error::permanent(format!(
            "replication slot `{slot}` is not a logical pgoutput slot of this database (plugin {}): \
             name another one with the `slot` option, or drop it: SELECT pg_drop_replication_slot({})",
            plugin.as_deref().unwrap_or("none"),
            string_lit(slot)
        )));
    }
    Ok(Some(
        lsn.as_deref().map(parse_lsn).transpose()?.unwrap_or(0),
    ))
}

/// `16/B374D848` as a number.
pub(super) fn parse_lsn(text: &str) -> Result<u64, Error> {
    Lsn::parse(text)
        .map(Lsn::as_u64)
        .map_err(|e| Error::permanent(format!("the server's position `{text}` is not an LSN: {e}")))
}

/// The position the host is told: an LSN in `pos`, one file (so `Position::log_cmp` orders them).
pub(super) fn position(lsn: u64) -> Position {
    Position {
        file: String::new(),
        pos: lsn,
        gtid: None,
        skip: 0,
    }
}

/// A replication session's configuration from the source's connection settings.
pub(super) fn config(
    source: &PgSource,
    o: &PgOptions,
    names: &Names,
) -> Result<ReplicationConfig, Error> {
    use tokio_postgres::config::Host;
    let cfg = &source.conn.config;
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let user = cfg.get_user().unwrap_or_default().to_string();
    let password = cfg
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let database = cfg.get_dbname().unwrap_or(&user).to_string();
    let tls = tls(o, &source.conn, &host);
    Ok(ReplicationConfig::new(
        host,
        user,
        password,
        database,
        names.slot.clone(),
        names.publication.clone(),
    )
    .with_port(port)
    .with_tls(tls)
    .with_binary(true)
    .with_application_name("etlhost")
    .with_status_interval(std::time::Duration::from_secs(1)))
}

/// The replication session's TLS in the source's mode, checked as the query connections check
/// theirs (connect.rs), which come first and make the refusals (so with the same texts):
/// - the host in `url` is always the name checked and sent, also an IP address (which
///   pgwire-replication would otherwise refuse under `verify-full`);
/// - `verify-ca`: pgwire-replication's chain-only check still compares names (it misses rustls's
///   `NotValidForNameContext`), so the session names the certificate by a name the query
///   connection found in it, and the check passes on the chain as `verify-ca` means;
/// - without `trusted_ca`, the system's authorities (its bundle file) rather than the Mozilla list
///   compiled into pgwire-replication;
/// - `require` with `trusted_ca` checks the chain, as libpq and the query connections do.
fn tls(o: &PgOptions, conn: &crate::connect::Connector, host: &str) -> TlsConfig {
    let ca = || {
        o.trusted_ca
            .as_ref()
            .map(std::path::PathBuf::from)
            .or_else(system_ca_file)
    };
    let tls = match o.tls {
        TlsMode::Disable => return TlsConfig::disabled(),
        TlsMode::Prefer => TlsConfig {
            mode: SslMode::Prefer,
            ..TlsConfig::default()
        },
        TlsMode::Require if o.trusted_ca.is_none() => TlsConfig::require(),
        TlsMode::Require | TlsMode::VerifyCa => TlsConfig::verify_ca(ca()),
        TlsMode::VerifyFull => TlsConfig::verify_full(ca()),
    };
    let name = match tls.mode {
        SslMode::VerifyCa => conn.certificate_name.get(),
        _ => None,
    };
    tls.with_sni_hostname(name.unwrap_or_else(|| host.to_string()))
}

/// The system's bundle of trusted authorities, where OpenSSL (and rustls-native-certs) look.
fn system_ca_file() -> Option<std::path::PathBuf> {
    let named = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let known = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    named
        .into_iter()
        .chain(known.iter().map(std::path::PathBuf::from))
        .find(|p| p.is_file())
}

/// Makes the slot on a replication session with an exported snapshot; the session must stay open
/// (and idle) until every snapshot reader has imported the snapshot.
pub(super) async fn create_exported(
    source: &PgSource,
    cfg: ReplicationConfig,
    slot: &str,
) -> Result<(ReplicationClient, u64, String), Error> {
    let redact = |e: pgwire_replication::PgWireError| source.conn.redact(&e.to_string());
    let mut client = ReplicationClient::connect_gated(cfg).await.map_err(|e| {
        Error::retryable(format!("cannot open a replication session: {}", redact(e)))
    })?;
    let sql = format!(
        "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')",
        ident(slot)
    );
    let rows = client.simple_query(&sql).await.map_err(|e| {
        Error::permanent(format!(
            "cannot create replication slot `{slot}`: {}",
            redact(e)
        ))
    })?;
    let text = |i: usize| {
        rows.first()
            .and_then(|r| r.get(i).cloned().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let (Some(lsn), Some(snapshot)) = (text(1), text(2)) else {
        return Err(Error::permanent(format!(
            "CREATE_REPLICATION_SLOT `{slot}` answered without a consistent point and snapshot"
        )));
    };
    Ok((client, parse_lsn(&lsn)?, snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partitioned_tables_need_a_publication_through_the_parent() {
        let names = Names {
            slot: "s".into(),
            publication: "Shop pub".into(),
        };
        let table = |name: &str, partitioned| Table {
            name: name.into(),
            oid: 1,
            relation: ident(name),
            partitioned,
        };
        assert_eq!(via_root(&names, &[table("person", false)]), None);
        let tables = [
            table("event", true),
            table("person", false),
            table("log", true),
        ];
        assert_eq!(
            via_root(&names, &tables),
            Some((
                "\"event\", \"log\"".to_string(),
                "ALTER PUBLICATION \"Shop pub\" SET (publish_via_partition_root = true)"
                    .to_string()
            ))
        );
    }
}
