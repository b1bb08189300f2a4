#!/usr/bin/env python3
# Operation retention at scale (#15 item 5): the purge statement before and after the partial index
# operations_finished, on a SQLite table of 2,000,000 recent finished operations and 200,000 past retention
# (half assigned, half failed). Prints (rows deleted, batches of 500, seconds) for each. BENCHMARKS.md "Operation purge".
import sqlite3, time, os
p = "/tmp/purge-bench.sqlite"
if os.path.exists(p): os.remove(p)
c=sqlite3.connect(p)
c.executescript("""
PRAGMA journal_mode=WAL;
CREATE TABLE operations (id TEXT PRIMARY KEY NOT NULL, status TEXT NOT NULL, updated TEXT NOT NULL, doc TEXT NOT NULL, reg_key TEXT NOT NULL DEFAULT '');
CREATE INDEX operations_by_status ON operations (status, updated);
""")
# 2,000,000 recent assigned + 200,000 old assigned and failed rows (old first in time)
c.execute("""WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < 1999999)
 INSERT INTO operations SELECT 'r'||i, 'assigned', '2026-12-02T'||printf('%08d', i), '{}', 'd'||i FROM n""")
c.execute("""WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < 199999)
 INSERT INTO operations SELECT 'o'||i, CASE i%2 WHEN 0 THEN 'assigned' ELSE 'failed' END, '2026-12-01T'||printf('%08d', i), '{}', 'd'||i FROM n""")
c.commit()
old="DELETE FROM operations WHERE rowid IN (SELECT rowid FROM operations WHERE status <> 'assigning' AND updated < ? LIMIT ?)"
new="DELETE FROM operations WHERE rowid IN (SELECT rowid FROM operations WHERE status <> 'assigning' AND updated < ? ORDER BY updated LIMIT ?)"
def purge(sql):
    t=time.perf_counter(); total=0; batches=0
    while True:
        n=c.execute(sql,('2026-12-02',500)).rowcount; c.commit(); total+=n; batches+=1
        if n<500: break
    return total,batches,time.perf_counter()-t
import shutil
c.close(); shutil.copy(p,p+'.bak')
c=sqlite3.connect(p); print('old', purge(old)); c.close()
shutil.copy(p+'.bak',p); 
for ext in ('-wal','-shm'):
    if os.path.exists(p+ext): os.remove(p+ext)
c=sqlite3.connect(p); c.execute("CREATE INDEX operations_finished ON operations (updated) WHERE status <> 'assigning'"); c.commit()
print('new', purge(new))
