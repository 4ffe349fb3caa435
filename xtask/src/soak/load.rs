//! The load: about 1,000 row changes a second on several connections (inserts, updates, deletes,
//! key changes, members moved to another team, team deletes that cascade, a steady stream of
//! events), and every so often one large transaction of 5,000 changes.
//!
//! Each connection is a `mariadb` client fed one second of transactions, then a new one: a server
//! restart costs at most that second, and the next client reconnects. The client's `-vv` output
//! says what each statement changed; only committed transactions count.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::rng::Rng;
use super::setup::{client, DB};

const CONNECTIONS: usize = 4;
/// Transactions per connection per second, each of about 25 changes.
const TX_PER_SEC: u64 = 10;
/// The large transaction: half member updates, half events.
const BIG_HALF: u64 = 2_500;
/// Members touched are drawn from the newest this many ids (older ones are mostly gone).
const MEMBER_WINDOW: u64 = 5_000;

/// What the load threads share.
struct Shared {
    stop: AtomicBool,
    /// Rows changed by committed transactions (cascades not counted: MySQL reports no rows for them).
    made: AtomicU64,
    transactions: AtomicU64,
    big: AtomicU64,
    /// Statements MySQL refused (a member whose team was just deleted, a lost connection...).
    errors: AtomicU64,
    next_member: AtomicU64,
    next_team: AtomicU64,
    next_event: AtomicU64,
    teams: Mutex<Vec<u64>>,
}

pub struct Load {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

/// What the load did, at its end.
pub struct Made {
    pub changes: u64,
    pub transactions: u64,
    pub big_transactions: u64,
    pub refused_statements: u64,
    pub secs: f64,
}

impl Load {
    /// Starts the connections and the large transactions (every `big_every`).
    pub fn start(port: u16, dir: &Path, rng: &mut Rng, big_every: Duration) -> Load {
        let (team, member) = super::setup::first_ids();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            made: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            big: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            next_member: AtomicU64::new(member),
            next_team: AtomicU64::new(team),
            next_event: AtomicU64::new(1),
            teams: Mutex::new((1..team).collect()),
        });
        let mut threads = Vec::new();
        for i in 0..CONNECTIONS {
            let (s, mut r) = (shared.clone(), rng.fork());
            let out = dir.join(format!("load-{i}"));
            threads.push(std::thread::spawn(move || {
                connection(port, &out, &s, &mut r)
            }));
        }
        let s = shared.clone();
        let out = dir.join("load-big");
        threads.push(std::thread::spawn(move || big(port, &out, &s, big_every)));
        Load {
            shared,
            threads,
            started: Instant::now(),
        }
    }

    pub fn changes(&self) -> u64 {
        self.shared.made.load(Relaxed)
    }

    /// Stops every connection after its current second and waits for them.
    pub fn stop(self) -> Made {
        self.shared.stop.store(true, Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let s = &self.shared;
        Made {
            changes: s.made.load(Relaxed),
            transactions: s.transactions.load(Relaxed),
            big_transactions: s.big.load(Relaxed),
            refused_statements: s.errors.load(Relaxed),
            secs: self.started.elapsed().as_secs_f64(),
        }
    }
}

/// A client whose output goes to `<out>.out` / `<out>.err`, statements on its stdin.
fn session(port: u16, out: &Path) -> Result<Child> {
    let file = |ext: &str| std::fs::File::create(out.with_extension(ext));
    client(port)
        .args(["--force", "-vv", "-N", "-B", DB])
        .stdin(Stdio::piped())
        .stdout(file("out")?)
        .stderr(file("err")?)
        .spawn()
        .context("cannot start the mariadb client")
}

/// Ends a session: waits for the client, then counts what it committed and what was refused.
fn finish(mut child: Child, out: &Path, shared: &Shared) {
    drop(child.stdin.take());
    let _ = child.wait();
    let text = std::fs::read_to_string(out.with_extension("out")).unwrap_or_default();
    let (rows, txs) = committed(&text);
    shared.made.fetch_add(rows, Relaxed);
    shared.transactions.fetch_add(txs, Relaxed);
    let err = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
    let refused = err.lines().filter(|l| l.starts_with("ERROR")).count();
    shared.errors.fetch_add(refused as u64, Relaxed);
}

/// One connection: a session a second, [`TX_PER_SEC`] transactions each, until stopped.
fn connection(port: u16, out: &Path, shared: &Shared, rng: &mut Rng) {
    while !shared.stop.load(Relaxed) {
        let Ok(mut child) = session(port, out) else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let start = Instant::now();
        let mut stdin = child.stdin.take().expect("piped stdin");
        for tick in 0..TX_PER_SEC {
            let due = Duration::from_millis(tick * 1000 / TX_PER_SEC);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            let tx = transaction(shared, rng);
            // A client that lost its server exits at once: the rest of this second is lost.
            if stdin
                .write_all(tx.as_bytes())
                .and_then(|_| stdin.flush())
                .is_err()
            {
                break;
            }
        }
        drop(stdin);
        finish(child, out, shared);
        if let Some(wait) = Duration::from_secs(1).checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// A random live team (the list is a guess: another connection may have just deleted it).
fn some_team(shared: &Shared, rng: &mut Rng) -> u64 {
    let teams = shared.teams.lock().unwrap();
    teams[rng.below(teams.len() as u64) as usize]
}

fn some_member(shared: &Shared, rng: &mut Rng) -> u64 {
    let next = shared.next_member.load(Relaxed);
    next - 1 - rng.below(MEMBER_WINDOW.min(next - 1))
}

/// One transaction of about 25 changes (10 events, 6 updates, 3 inserts, 2 deletes, 2 moves, a key
/// change, now and then a team's), one statement a line.
fn transaction(shared: &Shared, rng: &mut Rng) -> String {
    let mut s = String::from("BEGIN;\n");
    let first = shared.next_event.fetch_add(10, Relaxed);
    let events: Vec<String> = (first..first + 10)
        .map(|id| {
            let kind = ["login", "post", "like", "share"][rng.below(4) as usize];
            format!(
                "({id}, {}, '{kind}', ROUND(UNIX_TIMESTAMP(NOW(6)) * 1000))",
                some_member(shared, rng)
            )
        })
        .collect();
    s += &format!(
        "INSERT INTO event (id, member_id, kind, at) VALUES {};\n",
        events.join(", ")
    );
    for _ in 0..6 {
        s += &format!(
            "UPDATE member SET score = score + 1 WHERE id = {};\n",
            some_member(shared, rng)
        );
    }
    for _ in 0..3 {
        let id = shared.next_member.fetch_add(1, Relaxed);
        let team = some_team(shared, rng);
        s += &format!("INSERT INTO member VALUES ({id}, {team}, 'member-{id}', 0);\n");
    }
    for _ in 0..2 {
        s += &format!(
            "DELETE FROM member WHERE id = {};\n",
            some_member(shared, rng)
        );
        let (m, t) = (some_member(shared, rng), some_team(shared, rng));
        s += &format!("UPDATE member SET team_id = {t} WHERE id = {m};\n");
    }
    let new = shared.next_member.fetch_add(1, Relaxed);
    s += &format!(
        "UPDATE member SET id = {new} WHERE id = {};\n",
        some_member(shared, rng)
    );
    s += &team_changes(shared, rng);
    s + "COMMIT;\n"
}

/// Now and then a team deleted (its members go with it, by cascade) and one made; more rarely a
/// team's key changed (its members follow, by cascade).
fn team_changes(shared: &Shared, rng: &mut Rng) -> String {
    let mut s = String::new();
    let mut teams = shared.teams.lock().unwrap();
    if rng.one_in(40) && teams.len() > 20 {
        let i = rng.below(teams.len() as u64) as usize;
        let gone = teams.swap_remove(i);
        let id = shared.next_team.fetch_add(1, Relaxed);
        teams.push(id);
        s += &format!(
            "DELETE FROM team WHERE id = {gone};\nINSERT INTO team VALUES ({id}, 'team-{id}');\n"
        );
    }
    if rng.one_in(100) {
        let i = rng.below(teams.len() as u64) as usize;
        let id = shared.next_team.fetch_add(1, Relaxed);
        s += &format!("UPDATE team SET id = {id} WHERE id = {};\n", teams[i]);
        teams[i] = id;
    }
    s
}

/// Every `every`: one transaction of [`BIG_HALF`] member updates and as many events.
fn big(port: u16, out: &Path, shared: &Shared, every: Duration) {
    let mut last = Instant::now();
    while !shared.stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        let first = shared.next_event.fetch_add(BIG_HALF, Relaxed) - 1;
        let sql = format!(
            "BEGIN;\nUPDATE member SET score = score + 1 ORDER BY id DESC LIMIT {BIG_HALF};\n\
             INSERT INTO event (id, member_id, kind, at) SELECT {first} + seq, seq, 'bulk', \
             ROUND(UNIX_TIMESTAMP(NOW(6)) * 1000) FROM seq_1_to_{BIG_HALF};\nCOMMIT;\n"
        );
        let Ok(mut child) = session(port, out) else {
            continue;
        };
        let mut stdin = child.stdin.take().expect("piped stdin");
        let _ = stdin.write_all(sql.as_bytes());
        drop(stdin);
        let before = shared.transactions.load(Relaxed);
        finish(child, out, shared);
        if shared.transactions.load(Relaxed) > before {
            shared.big.fetch_add(1, Relaxed);
        }
    }
}

/// Rows changed by the committed transactions of a client's `-vv` output, and how many committed.
fn committed(text: &str) -> (u64, u64) {
    let (mut rows, mut txs, mut pending) = (0, 0, 0);
    let mut statement = "";
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == "--------------" {
            statement = lines.next().unwrap_or("");
            let _ = lines.next();
            continue;
        }
        let Some(rest) = line.strip_prefix("Query OK, ") else {
            continue;
        };
        let n: u64 = rest
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        match statement {
            "BEGIN" => pending = 0,
            "COMMIT" => {
                rows += pending;
                txs += 1;
                pending = 0;
            }
            _ => pending += n,
        }
    }
    (rows, txs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_committed_rows_count() {
        let out = "--------------\nBEGIN\n--------------\n\nQuery OK, 0 rows affected\n\n\
                   --------------\nINSERT INTO event VALUES (1)\n--------------\n\nQuery OK, 2 rows affected\n\
                   --------------\nDELETE FROM member WHERE id = 3\n--------------\n\nQuery OK, 1 row affected\n\
                   --------------\nCOMMIT\n--------------\n\nQuery OK, 0 rows affected\n\
                   --------------\nBEGIN\n--------------\n\nQuery OK, 0 rows affected\n\
                   --------------\nUPDATE member SET score = 1\n--------------\n\nQuery OK, 5 rows affected\n\
                   --------------\nCOMMIT\n--------------\n\n";
        assert_eq!(super::committed(out), (3, 1));
    }
}
