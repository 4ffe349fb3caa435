"""What a data engineer would write by hand instead of etlhost: PyMySQL streaming the table, the
official neo4j driver writing batched UNWIND transactions. Prints one JSON line: rows, seconds,
peak RSS. Arguments: one JSON object with host, port, user, password, database, table, bolt_uri,
graph_user, graph_password, graph_database, batch."""

import json
import resource
import sys
import time

import pymysql
import pymysql.cursors
from neo4j import GraphDatabase

QUERY = (
    "UNWIND $batch AS row "
    "CREATE (:Person {id: row.id, name: row.name, email: row.email, created_at: row.created_at})"
)


def main() -> None:
    a = json.loads(sys.argv[1])
    start = time.perf_counter()
    conn = pymysql.connect(
        host=a["host"],
        port=a["port"],
        user=a["user"],
        password=a["password"],
        database=a["database"],
        cursorclass=pymysql.cursors.SSDictCursor,
    )
    driver = GraphDatabase.driver(a["bolt_uri"], auth=(a["graph_user"], a["graph_password"]))
    rows = 0
    with driver.session(database=a["graph_database"]) as session, conn.cursor() as cur:
        cur.execute(f"SELECT id, name, email, created_at FROM {a['table']}")
        while True:
            batch = cur.fetchmany(a["batch"])
            if not batch:
                break
            session.execute_write(lambda tx, b=batch: tx.run(QUERY, batch=b).consume())
            rows += len(batch)
    driver.close()
    conn.close()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_bytes": peak}))


if __name__ == "__main__":
    main()
