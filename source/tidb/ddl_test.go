package tidb

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

// ddlFeed reads a DDL subscription in the background.
type ddlFeed struct {
	events   chan *model.DDLEvent
	resolved chan model.Ts
}

func (e *env) subscribeDDL(startTs model.Ts) (source.DDLSubscription, *ddlFeed) {
	e.t.Helper()
	sub, err := e.src.SubscribeDDL(context.Background(), startTs)
	if err != nil {
		e.t.Fatal(err)
	}
	f := &ddlFeed{events: make(chan *model.DDLEvent, 100), resolved: make(chan model.Ts, 1000)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := startTs
		for {
			b, err := sub.Next(ctx)
			if err != nil {
				return
			}
			for _, d := range b.DDLs {
				if d.CommitTs <= last && last != startTs {
					e.t.Errorf("DDL at %d after resolved %d", d.CommitTs, last)
				}
				f.events <- d
			}
			last = b.ResolvedTs
			select {
			case f.resolved <- b.ResolvedTs:
			default:
			}
		}
	}()
	e.t.Cleanup(func() { cancel(); sub.Close(); <-done })
	return sub, f
}

func (f *ddlFeed) next(t *testing.T) *model.DDLEvent {
	t.Helper()
	select {
	case d := <-f.events:
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
		return d
	case <-time.After(20 * time.Second):
		t.Fatal("no DDL event in 20 s")
		return nil
	}
}

func TestDDLEventsAndSchemaVersions(t *testing.T) {
	e := newEnv(t, withStores(1))
	e.exec("", "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(10))")
	start := e.c.Now()
	tbl := e.table("d", "t")
	rows := e.subscribe(tbl, start)
	_, ddls := e.subscribeDDL(start)

	e.commit(e.c.Begin().Insert("d", "t", 1, "a"))
	e.exec("d", "ALTER TABLE t ADD COLUMN n INT DEFAULT 7")
	afterAdd := e.c.Now()
	e.commit(e.c.Begin().Insert("d", "t", 2, "b", 9))
	e.commit(e.c.Begin().Update("d", "t", 1, "a2", 8)) // the old value predates the column
	e.exec("d", "RENAME TABLE t TO t2")
	e.commit(e.c.Begin().Insert("d", "t2", 3, "c", 1))
	e.exec("d", "ALTER TABLE t2 RENAME COLUMN v TO w", "ALTER TABLE t2 MODIFY COLUMN w VARCHAR(20)",
		"CREATE INDEX ix_n ON t2 (n)", "DROP INDEX ix_n ON t2", "ALTER TABLE t2 DROP COLUMN n")
	e.commit(e.c.Begin().Insert("d", "t2", 4, "d"))
	e.exec("d", "TRUNCATE TABLE t2", "CREATE TABLE t3 (k BIGINT PRIMARY KEY)", "DROP TABLE t3")
	e.exec("", "CREATE DATABASE other", "DROP DATABASE other")

	want := []struct {
		kind  model.DDLKind
		query string
	}{
		{model.DDLAddColumn, "ALTER TABLE `d`.`t` ADD COLUMN `n` INT DEFAULT 7"},
		{model.DDLRenameTable, "RENAME TABLE `d`.`t` TO `d`.`t2`"},
		{model.DDLRenameColumn, "ALTER TABLE `d`.`t2` RENAME COLUMN `v` TO `w`"},
		{model.DDLModifyColumn, "ALTER TABLE `d`.`t2` MODIFY COLUMN `w` VARCHAR(20)"},
		{model.DDLAddIndex, "CREATE INDEX `ix_n` ON `d`.`t2` (`n`)"},
		{model.DDLDropIndex, "DROP INDEX `ix_n` ON `d`.`t2`"},
		{model.DDLDropColumn, "ALTER TABLE `d`.`t2` DROP COLUMN `n`"},
		{model.DDLTruncateTable, "TRUNCATE TABLE `d`.`t2`"},
		{model.DDLCreateTable, "CREATE TABLE `d`.`t3` (`k` BIGINT PRIMARY KEY)"},
		{model.DDLDropTable, "DROP TABLE `d`.`t3`"},
		{model.DDLCreateSchema, "CREATE DATABASE `other`"},
		{model.DDLDropSchema, "DROP DATABASE `other`"},
	}
	var events []*model.DDLEvent
	for i, w := range want {
		d := ddls.next(t)
		events = append(events, d)
		if d.Kind != w.kind || d.Query != w.query {
			t.Fatalf("DDL %d: %s %q, want %s %q", i, d.Kind, d.Query, w.kind, w.query)
		}
		if i > 0 && d.CommitTs <= events[i-1].CommitTs {
			t.Fatalf("DDL %d at %d is not after the one before (%d)", i, d.CommitTs, events[i-1].CommitTs)
		}
	}
	if a := events[1].After[0]; a.Table.Table != "t2" || a.Table.ID != tbl.ID || events[1].Tables[0].Table != "t" {
		t.Fatalf("rename: tables %v after %v", events[1].Tables, a.Table)
	}
	if trunc := events[7]; trunc.Tables[0].ID != tbl.ID || trunc.After[0].Table.ID == tbl.ID {
		t.Fatalf("truncate: %v → %v; the new table needs a new ID", trunc.Tables[0], trunc.After[0].Table)
	}
	if events[9].After[0] != nil || events[8].After[0].Table.Table != "t3" {
		t.Fatal("create/drop table schemas after")
	}
	// The owner starts a created table at its DDL's ts; its schema must be
	// there at that ts, before the DDL's transaction commits.
	if s, err := e.src.SchemaAt(context.Background(), events[8].After[0].Table, events[8].CommitTs); err != nil || s.Table.Table != "t3" {
		t.Fatalf("schema of a table at its CREATE TABLE's ts: %+v %v", s, err)
	}

	// Rows decode against the version in force at commit ts − 1.
	rows.waitResolved(e.c.Now(), 20*time.Second)
	got := rows.rows(^uint64(0))
	if len(got) != 5 {
		t.Fatalf("%d rows, want 5", len(got))
	}
	if n := len(got[0].Schema.Columns); n != 2 {
		t.Errorf("row before ADD COLUMN has %d columns", n)
	}
	if got[1].After[2].Text() != "9" || got[1].Schema.Version != events[0].CommitTs {
		t.Errorf("row after ADD COLUMN: %v, schema version %d (want %d)", got[1].After, got[1].Schema.Version, events[0].CommitTs)
	}
	if got[2].Before[2].Text() != "7" || got[2].After[2].Text() != "8" {
		t.Errorf("update of a row written before ADD COLUMN: before %v after %v (the missing column is its default)", got[2].Before, got[2].After)
	}
	if got[3].Schema.Table.Table != "t2" || got[3].Schema.Table.ID != tbl.ID {
		t.Errorf("row after the rename carries %v", got[3].Schema.Table)
	}
	if len(got[4].Schema.Columns) != 2 || got[4].Schema.Columns[1].Name != "w" || got[4].Schema.Columns[1].Type.Length != 20 {
		t.Errorf("row after the column changes: %+v", got[4].Schema.Columns)
	}
	// The truncated table's ID gets no more rows.
	e.commit(e.c.Begin().Insert("d", "t2", 5, "e"))
	rows.waitResolved(e.c.Now(), 20*time.Second)
	if n := len(rows.rows(^uint64(0))); n != 5 {
		t.Errorf("the old table ID got rows after TRUNCATE: %d", n)
	}

	// SchemaAt and TablesAt read the meta keys at a ts.
	ctx := context.Background()
	s, err := e.src.SchemaAt(ctx, tbl, start)
	if err != nil || len(s.Columns) != 2 || s.Table.Table != "t" {
		t.Fatalf("schema at start: %+v %v", s, err)
	}
	s, err = e.src.SchemaAt(ctx, model.TableName{ID: tbl.ID, Schema: "d", Table: "t"}, afterAdd)
	if err != nil || len(s.Columns) != 3 {
		t.Fatalf("schema after ADD COLUMN: %+v %v", s, err)
	}
	tables, err := e.src.TablesAt(ctx, e.c.Now())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tn := range tables {
		names = append(names, tn.String())
	}
	if len(tables) != 1 || tables[0].Table != "t2" || tables[0].ID == tbl.ID {
		t.Fatalf("tables now: %v (mysql's tables must not be listed)", names)
	}
	if _, err := e.src.SchemaAt(ctx, tbl, e.c.Now()); err == nil || !strings.Contains(err.Error(), "no such table") {
		t.Fatalf("schema of the truncated table ID now: %v", err)
	}
}

func TestPartitionsMapToTheLogicalTable(t *testing.T) {
	e := newEnv(t)
	e.exec("", "CREATE DATABASE d",
		"CREATE TABLE d.h (id INT PRIMARY KEY, v VARCHAR(10)) PARTITION BY HASH(id) PARTITIONS 4",
		"CREATE TABLE d.r (id INT PRIMARY KEY, v VARCHAR(20)) PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (100), PARTITION p1 VALUES LESS THAN (200))")
	start := e.c.Now()
	h, r := e.table("d", "h"), e.table("d", "r")
	fh, fr := e.subscribe(h, start), e.subscribe(r, start)
	txn := e.c.Begin()
	for i := 0; i < 40; i++ {
		txn.Insert("d", "h", i, "x").Insert("d", "r", i*5, "y")
	}
	e.commit(txn)
	e.checkState(fh, "d", "h", e.c.Now())
	e.checkState(fr, "d", "r", e.c.Now())
	if n := e.metric("raftcdc_tidb_regions", "table", "d.h"); n < 4 {
		t.Fatalf("hash table regions %v, want one per partition", n)
	}
	for _, row := range fh.rows(^uint64(0)) {
		if row.Schema.Table.ID != h.ID {
			t.Fatalf("a partition's row names table %d, want the logical table %d", row.Schema.Table.ID, h.ID)
		}
	}
	// A partition added later is subscribed from the DDL's ts.
	e.exec("d", "ALTER TABLE r ADD PARTITION (PARTITION p2 VALUES LESS THAN (300))")
	e.commit(e.c.Begin().Insert("d", "r", 250, "new-partition"))
	e.exec("d", "ALTER TABLE r TRUNCATE PARTITION p0")
	e.commit(e.c.Begin().Insert("d", "r", 5, "after-truncate"))
	fr.waitResolved(e.c.Now(), 20*time.Second)
	st := fr.state(^uint64(0))
	if st["250"] == nil || st["250"][1] != "new-partition" || st["5"] == nil || st["5"][1] != "after-truncate" {
		t.Fatalf("rows in added and truncated partitions: %v %v", st["250"], st["5"])
	}
}

// A subscription that starts below a DDL gets the rows on both sides of it
// in one incremental scan; each decodes against its own version even where
// one batch holds both.
func TestOneScanDecodesRowsOfSeveralVersions(t *testing.T) {
	e := newEnv(t, withStores(1))
	e.exec("", "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(10))")
	start := e.c.Now()
	e.commit(e.c.Begin().Insert("d", "t", 1, "a").Insert("d", "t", 2, "b"))
	e.exec("d", "ALTER TABLE t ADD COLUMN n INT DEFAULT 7")
	e.commit(e.c.Begin().Insert("d", "t", 3, "c", 9))
	e.exec("d", "ALTER TABLE t DROP COLUMN v")
	e.commit(e.c.Begin().Insert("d", "t", 4, 10))
	rows := e.subscribe(e.table("d", "t"), start)
	rows.waitResolved(e.c.Now(), 20*time.Second)
	got := rows.rows(^uint64(0))
	var texts []string
	for _, r := range got {
		var vs []string
		for i, v := range r.After {
			vs = append(vs, r.Schema.Columns[i].Name+"="+v.Text())
		}
		texts = append(texts, strings.Join(vs, ","))
	}
	want := []string{"id=1,v=a", "id=2,v=b", "id=3,v=c,n=9", "id=4,n=10"}
	if strings.Join(texts, " ") != strings.Join(want, " ") {
		t.Fatalf("rows %q, want %q", texts, want)
	}
}
