//! pgoutput's row messages (protocol version 1), as PostgreSQL's "Logical Replication Message
//! Formats" defines them. Begin and Commit are the transport's (`pgwire-replication` hands them
//! on as events); the rest arrive as the bytes of an XLogData message and are read here.

/// One column of a tuple as logged, borrowed from the message's bytes (no copy per column).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Datum<'a> {
    Null,
    /// An unchanged TOASTed value: the update did not touch it, and the log does not repeat it.
    Unchanged,
    /// The value in the binary send/recv form (`binary 'true'`).
    Binary(&'a [u8]),
    /// The value in its text form (a server that sent text for this type).
    Text(&'a [u8]),
}

/// A relation's columns as the log describes them (sent before its first change in a session,
/// and again after it changes).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Relation {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default (the primary key), `n` nothing, `f` full, `i` an index.
    pub replica_identity: u8,
    pub columns: Vec<RelColumn>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct RelColumn {
    pub name: String,
    pub type_oid: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Message<'a> {
    Relation(Relation),
    Insert {
        rel: u32,
        new: Vec<Datum<'a>>,
    },
    /// `old`: the key columns (`K`, when the key changed) or the whole row (`O`, REPLICA
    /// IDENTITY FULL); `None` when the log has neither.
    Update {
        rel: u32,
        old: Option<Vec<Datum<'a>>>,
        new: Vec<Datum<'a>>,
    },
    /// `old`: the key columns, or the whole row with REPLICA IDENTITY FULL.
    Delete {
        rel: u32,
        old: Vec<Datum<'a>>,
    },
    Truncate {
        rels: Vec<u32>,
    },
    /// Anything else (Begin and Commit seen as bytes, Origin, Type, Message): nothing to apply.
    Other,
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| {
            format!(
                "a pgoutput message ends early ({} bytes, {n} more wanted at {})",
                self.buf.len(),
                self.at
            )
        })?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstr(&mut self) -> Result<String, String> {
        let rest = &self.buf[self.at..];
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("a pgoutput string has no end")?;
        let s = String::from_utf8_lossy(&rest[..nul]).into_owned();
        self.at += nul + 1;
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Vec<Datum<'a>>, String> {
        let n = self.u16()? as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => Datum::Null,
                b'u' => Datum::Unchanged,
                kind @ (b't' | b'b') => {
                    let len = self.u32()? as usize;
                    let v = self.take(len)?;
                    if kind == b'b' {
                        Datum::Binary(v)
                    } else {
                        Datum::Text(v)
                    }
                }
                other => return Err(format!("unknown pgoutput tuple column kind {other:#04x}")),
            });
        }
        Ok(out)
    }
}

/// Reads one message.
pub(super) fn parse(buf: &[u8]) -> Result<Message<'_>, String> {
    let mut r = Reader { buf, at: 0 };
    Ok(match r.u8()? {
        b'R' => {
            let oid = r.u32()?;
            let namespace = r.cstr()?;
            let name = r.cstr()?;
            let replica_identity = r.u8()?;
            let n = r.u16()? as usize;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                let _flags = r.u8()?;
                let name = r.cstr()?;
                let type_oid = r.u32()?;
                let _typmod = r.u32()?;
                columns.push(RelColumn { name, type_oid });
            }
            Message::Relation(Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'I' => {
            let rel = r.u32()?;
            expect(r.u8()?, b'N', "insert")?;
            Message::Insert {
                rel,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let rel = r.u32()?;
            let mut old = None;
            let mut tag = r.u8()?;
            if tag == b'K' || tag == b'O' {
                old = Some(r.tuple()?);
                tag = r.u8()?;
            }
            expect(tag, b'N', "update")?;
            Message::Update {
                rel,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let rel = r.u32()?;
            let tag = r.u8()?;
            if tag != b'K' && tag != b'O' {
                return Err(format!(
                    "a pgoutput delete has {tag:#04x} where K or O belongs"
                ));
            }
            Message::Delete {
                rel,
                old: r.tuple()?,
            }
        }
        b'T' => {
            let n = r.u32()? as usize;
            let _options = r.u8()?;
            let rels = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
            Message::Truncate { rels }
        }
        _ => Message::Other,
    })
}

fn expect(got: u8, want: u8, what: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "a pgoutput {what} has {got:#04x} where {} belongs",
            want as char
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(cols: &[Datum]) -> Vec<u8> {
        let mut b = (cols.len() as u16).to_be_bytes().to_vec();
        for c in cols {
            match c {
                Datum::Null => b.push(b'n'),
                Datum::Unchanged => b.push(b'u'),
                Datum::Binary(v) | Datum::Text(v) => {
                    b.push(if matches!(c, Datum::Binary(_)) {
                        b'b'
                    } else {
                        b't'
                    });
                    b.extend((v.len() as u32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b
    }

    #[test]
    fn relation_and_rows() {
        let mut m = vec![b'R'];
        m.extend(16384u32.to_be_bytes());
        m.extend(b"public\0person\0d");
        m.extend(2u16.to_be_bytes());
        m.extend(b"\x01id\0");
        m.extend(20u32.to_be_bytes());
        m.extend((-1i32).to_be_bytes());
        m.extend(b"\x00bio\0");
        m.extend(25u32.to_be_bytes());
        m.extend((-1i32).to_be_bytes());
        let Message::Relation(r) = parse(&m).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(
            (r.oid, r.name.as_str(), r.replica_identity),
            (16384, "person", b'd')
        );
        assert_eq!(r.columns[1].name, "bio");
        assert_eq!(r.columns[1].type_oid, 25);

        let seven = 7i64.to_be_bytes();
        let one = Datum::Binary(&seven);
        let mut m = vec![b'U'];
        m.extend(16384u32.to_be_bytes());
        m.push(b'N');
        m.extend(tuple(&[one, Datum::Unchanged]));
        assert_eq!(
            parse(&m).unwrap(),
            Message::Update {
                rel: 16384,
                old: None,
                new: vec![one, Datum::Unchanged]
            }
        );

        let mut m = vec![b'D'];
        m.extend(16384u32.to_be_bytes());
        m.push(b'K');
        m.extend(tuple(&[one, Datum::Null]));
        assert_eq!(
            parse(&m).unwrap(),
            Message::Delete {
                rel: 16384,
                old: vec![one, Datum::Null]
            }
        );

        let mut m = vec![b'T'];
        m.extend(2u32.to_be_bytes());
        m.push(1);
        m.extend(1u32.to_be_bytes());
        m.extend(2u32.to_be_bytes());
        assert_eq!(parse(&m).unwrap(), Message::Truncate { rels: vec![1, 2] });
    }

    /// Each column kind of a tuple, borrowed from the message's bytes as they are.
    #[test]
    fn every_column_kind_borrows_its_bytes() {
        let seven = 7i32.to_be_bytes();
        let cols = [
            Datum::Binary(&seven),
            Datum::Text(b"{a,b}"),
            Datum::Null,
            Datum::Unchanged,
            Datum::Binary(b""),
        ];
        let mut m = vec![b'I'];
        m.extend(16384u32.to_be_bytes());
        m.push(b'N');
        m.extend(tuple(&cols));
        let Message::Insert { rel, new } = parse(&m).unwrap() else {
            panic!("not an insert")
        };
        assert_eq!((rel, &new[..]), (16384, &cols[..]));
        let Datum::Text(t) = new[1] else {
            panic!("not text")
        };
        assert!(std::ptr::eq(t.as_ptr(), m[22..].as_ptr()));
        m[8] = b'x';
        assert_eq!(
            parse(&m).unwrap_err(),
            "unknown pgoutput tuple column kind 0x78"
        );
    }

    #[test]
    fn a_short_message_is_an_error_not_a_panic() {
        assert!(parse(b"I\x00\x00").is_err());
        assert!(parse(b"U\x00\x00\x00\x01N\x00\x01b\x00\x00\x00\x09abc").is_err());
    }
}
