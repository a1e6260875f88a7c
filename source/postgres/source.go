package postgres

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/raftcdc/raftcdc/model"
	"github.com/raftcdc/raftcdc/source"
)

var (
	// ErrSlotMissing: the changefeed has a stored position but its slot is
	// gone. Recreating the slot would silently skip every change between
	// the position and now, so the stream refuses. It is a lost snapshot:
	// the changefeed fails rather than retrying what cannot succeed.
	ErrSlotMissing = fmt.Errorf("replication slot is missing (%w)", source.ErrSnapshotLost)
	// ErrSlotAhead: the slot's confirmed position is past the stored
	// position, so the server has discarded changes the changefeed has not
	// delivered (the slot was recreated or advanced outside raftcdc).
	ErrSlotAhead = fmt.Errorf("replication slot is ahead of the changefeed's position (%w)", source.ErrSnapshotLost)
)

// publicationComment marks a publication raftcdc created, so that remove
// drops only those.
const publicationComment = "created by raftcdc for changefeed "

// Option configures a Source.
type Option func(*Source)

// WithLogger sets the logger.
func WithLogger(l zerolog.Logger) Option { return func(s *Source) { s.log = l } }

// WithTableFilter sets which tables belong to the changefeed; the catalog
// poll adds new tables it selects. Without it every table does.
func WithTableFilter(match func(model.TableName) bool) Option {
	return func(s *Source) { s.match = match }
}

// Source is a PostgreSQL database seen through one changefeed's slot. It
// implements source.StreamSource.
type Source struct {
	cfg          Config
	changefeedID string
	log          zerolog.Logger
	match        func(model.TableName) bool

	mu   sync.Mutex
	conn *pgx.Conn // for the Upstream calls
}

var _ source.StreamSource = (*Source)(nil)

// New returns the source for one changefeed. It connects lazily.
func New(cfg Config, changefeedID string, opts ...Option) *Source {
	s := &Source{cfg: cfg, changefeedID: changefeedID, log: zerolog.Nop(), match: func(model.TableName) bool { return true }}
	for _, o := range opts {
		o(s)
	}
	s.log = s.log.With().Str("component", "source/postgres").Str("slot", cfg.Slot).Logger()
	return s
}

// Config is the source's configuration.
func (s *Source) Config() Config { return s.cfg }

func (s *Source) withConn(ctx context.Context, f func(*pgx.Conn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil || s.conn.IsClosed() {
		c, err := connectPgx(ctx, &s.cfg)
		if err != nil {
			return err
		}
		s.conn = c
	}
	err := f(s.conn)
	if err != nil && s.conn.PgConn().IsBusy() {
		s.conn.Close(context.Background())
		s.conn = nil
	}
	return err
}

// UpstreamID is the server's system identifier and the database: slots
// belong to one database of one cluster.
func (s *Source) UpstreamID(ctx context.Context) (string, error) {
	var id string
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT system_identifier::text FROM pg_control_system()`).Scan(&id)
	})
	if err != nil {
		return "", fmt.Errorf("read system identifier of %s: %w", s.cfg.Redacted(), err)
	}
	return "postgres:" + id + "/" + s.cfg.Database, nil
}

// TablesAt lists the filtered tables that exist now: PostgreSQL keeps no
// catalog history outside logical decoding, so ts is not used.
func (s *Source) TablesAt(ctx context.Context, _ model.Ts) ([]model.TableName, error) {
	var out []model.TableName
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		all, err := listTables(ctx, c)
		for _, t := range all {
			if s.match(t) {
				out = append(out, t)
			}
		}
		return err
	})
	return out, err
}

// SchemaAt is the table's schema now (see TablesAt).
func (s *Source) SchemaAt(ctx context.Context, table model.TableName, ts model.Ts) (*model.TableSchema, error) {
	var out *model.TableSchema
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		cat := newCatalog(c)
		oid := uint32(table.ID)
		if oid == 0 {
			if err := c.QueryRow(ctx, `SELECT $1::regclass::oid::int8`, quoteTable(table)).Scan(&table.ID); err != nil {
				return fmt.Errorf("table %s: %w", table, err)
			}
			oid = uint32(table.ID)
		}
		cols, err := cat.columns(ctx, oid)
		if err != nil {
			return err
		}
		ts, err := cat.build(ctx, oid, cols, ts)
		if err != nil {
			return err
		}
		out = ts.schema
		return nil
	})
	return out, err
}

// CurrentTs is the server's clock in TSO form.
func (s *Source) CurrentTs(ctx context.Context) (model.Ts, error) {
	var t time.Time
	err := s.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t)
	})
	if err != nil {
		return 0, fmt.Errorf("read the clock of %s: %w", s.cfg.Redacted(), err)
	}
	return model.TsFromTime(t), nil
}

// GCSafepoint is 0: PostgreSQL keeps WAL per slot, not behind a cluster
// safepoint; a slot that lost its WAL fails its stream with
// source.ErrSnapshotLost instead.
func (s *Source) GCSafepoint(context.Context) (model.Ts, error) { return 0, nil }

// UpdateServiceGCSafepoint does nothing for the same reason and reports
// the requested safepoint as in force.
func (s *Source) UpdateServiceGCSafepoint(_ context.Context, _ string, _ time.Duration, sp model.Ts) (model.Ts, error) {
	return sp, nil
}

// Close closes the source's own connection (streams close separately).
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close(context.Background())
		s.conn = nil
	}
	return nil
}

// slotInfo is a row of pg_replication_slots.
type slotInfo struct {
	Exists         bool
	Plugin         string
	Database       string
	WALStatus      string
	Active         bool
	ActivePID      int32
	ConfirmedFlush pglogrepl.LSN
	RestartLSN     pglogrepl.LSN
	RetainedBytes  int64
}

func readSlot(ctx context.Context, c *pgx.Conn, name string) (slotInfo, error) {
	var si slotInfo
	var plugin, db, walStatus, confirmed, restart *string
	var pid *int32
	err := c.QueryRow(ctx, `SELECT plugin, database, wal_status, active, active_pid, confirmed_flush_lsn::text, restart_lsn::text,
  COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::int8
FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&plugin, &db, &walStatus, &si.Active, &pid, &confirmed, &restart, &si.RetainedBytes)
	if err == pgx.ErrNoRows {
		return si, nil
	}
	if err != nil {
		return si, fmt.Errorf("read replication slot %q: %w", name, err)
	}
	si.Exists = true
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	si.Plugin, si.Database, si.WALStatus = str(plugin), str(db), str(walStatus)
	if pid != nil {
		si.ActivePID = *pid
	}
	if confirmed != nil {
		si.ConfirmedFlush, _ = pglogrepl.ParseLSN(*confirmed)
	}
	if restart != nil {
		si.RestartLSN, _ = pglogrepl.ParseLSN(*restart)
	}
	return si, nil
}

// publicationState is what the catalog says about our publication.
type publicationState struct {
	Exists    bool
	Ours      bool
	AllTables bool
	Tables    map[string]bool // schema.table
}

func readPublication(ctx context.Context, c *pgx.Conn, name string) (publicationState, error) {
	var ps publicationState
	var comment *string
	err := c.QueryRow(ctx, `SELECT puballtables, obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = $1`, name).Scan(&ps.AllTables, &comment)
	if err == pgx.ErrNoRows {
		return ps, nil
	}
	if err != nil {
		return ps, fmt.Errorf("read publication %q: %w", name, err)
	}
	ps.Exists = true
	ps.Ours = comment != nil && strings.HasPrefix(*comment, publicationComment)
	rows, err := c.Query(ctx, `SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1`, name)
	if err != nil {
		return ps, fmt.Errorf("read tables of publication %q: %w", name, err)
	}
	defer rows.Close()
	ps.Tables = map[string]bool{}
	for rows.Next() {
		var sc, t string
		if err := rows.Scan(&sc, &t); err != nil {
			return ps, err
		}
		ps.Tables[model.TableName{Schema: sc, Table: t}.String()] = true
	}
	return ps, rows.Err()
}

// syncPublication creates our publication or brings its table list in step
// with tables; a publication the user named is only checked. It returns
// the tables that were not in the publication before.
func (s *Source) syncPublication(ctx context.Context, c *pgx.Conn, tables []model.TableName) ([]model.TableName, error) {
	ps, err := readPublication(ctx, c, s.cfg.Publication)
	if err != nil {
		return nil, err
	}
	var missing []model.TableName
	for _, t := range tables {
		if !ps.AllTables && !ps.Tables[t.String()] {
			missing = append(missing, t)
		}
	}
	if s.cfg.PublicationGiven {
		if !ps.Exists {
			return nil, fmt.Errorf("publication %q (named by publication=) does not exist in database %s", s.cfg.Publication, s.cfg.Database)
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("publication %q does not publish %s, which the changefeed's filter selects: add them to it (ALTER PUBLICATION ... ADD TABLE) or exclude them", s.cfg.Publication, tableList(missing))
		}
		return nil, nil
	}
	if !ps.Exists {
		q := "CREATE PUBLICATION " + quoteIdent(s.cfg.Publication)
		if len(tables) > 0 {
			q += " FOR TABLE " + joinTables(tables)
		}
		q += " WITH (publish_via_partition_root = true)"
		if _, err := c.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("create publication %q: %w", s.cfg.Publication, err)
		}
		if _, err := c.Exec(ctx, "COMMENT ON PUBLICATION "+quoteIdent(s.cfg.Publication)+" IS "+quoteLiteral(publicationComment+s.changefeedID)); err != nil {
			return nil, fmt.Errorf("mark publication %q as raftcdc's: %w", s.cfg.Publication, err)
		}
		s.log.Info().Str("publication", s.cfg.Publication).Int("tables", len(tables)).Msg("created publication")
		return tables, nil
	}
	if !ps.Ours {
		return nil, fmt.Errorf("publication %q exists but raftcdc did not create it: name it with publication= to use it as it is, or choose another slot name", s.cfg.Publication)
	}
	if len(missing) > 0 {
		if _, err := c.Exec(ctx, "ALTER PUBLICATION "+quoteIdent(s.cfg.Publication)+" ADD TABLE "+joinTables(missing)); err != nil {
			return nil, fmt.Errorf("add %s to publication %q: %w", tableList(missing), s.cfg.Publication, err)
		}
	}
	want := map[string]bool{}
	for _, t := range tables {
		want[t.String()] = true
	}
	var extra []string
	for name := range ps.Tables {
		if !want[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		sc, tb, _ := strings.Cut(name, ".")
		if _, err := c.Exec(ctx, "ALTER PUBLICATION "+quoteIdent(s.cfg.Publication)+" DROP TABLE "+quoteTable(model.TableName{Schema: sc, Table: tb})); err != nil {
			return nil, fmt.Errorf("drop %s from publication %q: %w", name, s.cfg.Publication, err)
		}
	}
	return missing, nil
}

func joinTables(ts []model.TableName) string {
	q := make([]string, len(ts))
	for i, t := range ts {
		q[i] = quoteTable(t)
	}
	return strings.Join(q, ", ")
}

func tableList(ts []model.TableName) string {
	q := make([]string, len(ts))
	for i, t := range ts {
		q[i] = t.String()
	}
	return strings.Join(q, ", ")
}

// resolveTables fills in OIDs (and checks existence) for the tables a
// stream is asked to replicate; with none given it lists the filter's.
func (s *Source) resolveTables(ctx context.Context, c *pgx.Conn, want []model.TableName) ([]model.TableName, error) {
	all, err := listTables(ctx, c)
	if err != nil {
		return nil, err
	}
	byName := map[string]model.TableName{}
	for _, t := range all {
		byName[t.String()] = t
	}
	var out []model.TableName
	if len(want) == 0 {
		for _, t := range all {
			if s.match(t) {
				out = append(out, t)
			}
		}
	} else {
		var gone []string
		for _, w := range want {
			t, ok := byName[w.String()]
			if !ok {
				gone = append(gone, w.String())
				continue
			}
			out = append(out, t)
		}
		if len(gone) > 0 {
			s.log.Warn().Strs("tables", gone).Msg("tables of the changefeed no longer exist upstream")
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	if bad, err := keylessTables(ctx, c, out); err != nil {
		return nil, err
	} else if len(bad) > 0 {
		return nil, keylessError(bad)
	}
	return out, nil
}

// OpenStream opens the changefeed's slot and streams from opts.Position,
// creating the slot (and the initial snapshot) on the first start.
func (s *Source) OpenStream(ctx context.Context, opts source.StreamOptions) (source.Stream, error) {
	cfg := s.cfg
	conn, err := connectPgx(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	ok := false
	var repl interface{ Close(context.Context) error }
	var job *copyJob
	defer func() {
		if !ok {
			conn.Close(context.Background())
			if repl != nil {
				repl.Close(context.Background())
			}
			job.stop()
		}
	}()
	tables, err := s.resolveTables(ctx, conn, opts.Tables)
	if err != nil {
		return nil, err
	}
	added, err := s.syncPublication(ctx, conn, tables)
	if err != nil {
		return nil, err
	}
	slot, err := readSlot(ctx, conn, cfg.Slot)
	if err != nil {
		return nil, err
	}
	if slot.Exists && (slot.Plugin != "pgoutput" || slot.Database != cfg.Database) {
		return nil, fmt.Errorf("replication slot %q exists but decodes %s with %q, not database %s with pgoutput: choose another slot name", cfg.Slot, slot.Database, slot.Plugin, cfg.Database)
	}
	if slot.Exists && slot.WALStatus == "lost" {
		return nil, fmt.Errorf("replication slot %q was invalidated: the server removed WAL it still needed (max_slot_wal_keep_size): %w", cfg.Slot, source.ErrSnapshotLost)
	}
	var pos *position
	var exported string
	replConn, err := connect(ctx, &cfg, true)
	if err != nil {
		return nil, err
	}
	repl = replConn
	switch {
	case opts.Position != "":
		if pos, err = decodePosition(opts.Position); err != nil {
			return nil, err
		}
		if pos.Slot != cfg.Slot {
			return nil, fmt.Errorf("stored position belongs to slot %q, the changefeed now names slot %q", pos.Slot, cfg.Slot)
		}
		if !slot.Exists {
			return nil, fmt.Errorf("%w: slot %q in database %s was dropped outside raftcdc; the changes after the checkpoint (LSN %s) are gone. Remove the changefeed and create it again for a fresh initial snapshot", ErrSlotMissing, cfg.Slot, cfg.Database, pos.LSN)
		}
		if slot.ConfirmedFlush > pos.LSN {
			return nil, fmt.Errorf("%w: slot %q confirms LSN %s but the changefeed's checkpoint is at %s, so the server has discarded changes raftcdc has not delivered (was the slot recreated or advanced by hand?)", ErrSlotAhead, cfg.Slot, slot.ConfirmedFlush, pos.LSN)
		}
		// Tables new to the changefeed (the filter grew): copy them.
		var fresh []model.TableName
		for _, t := range tables {
			if _, known := pos.Cols[uint32(t.ID)]; !known && !pos.CopyAll && !containsOID(pos.Copy, uint32(t.ID)) {
				fresh = append(fresh, t)
			}
		}
		pending := s.pendingTables(pos, tables)
		if len(pending) > 0 || len(fresh) > 0 {
			created := map[uint32]bool{}
			for _, t := range fresh {
				created[uint32(t.ID)] = true
			}
			all := append(append([]model.TableName(nil), pending...), fresh...)
			if job, err = prepareCopy(ctx, &cfg, all, len(pending) > 0, created); err != nil {
				return nil, err
			}
			if len(fresh) > 0 {
				// Only the pending ones are re-copies; fresh ones need no truncate.
				job.recopy = len(pending) > 0
			}
		}
		_ = added
	case slot.Exists:
		// No stored position but the slot is there: an earlier first start
		// died before any checkpoint, or the user named an existing slot.
		// Stream from the slot's confirmed position and copy every table
		// again at a new consistent point, truncating what an interrupted
		// copy may have left downstream.
		pos = &position{LSN: slot.ConfirmedFlush, Ts: opts.StartTs, Cols: map[uint32]string{}, Slot: cfg.Slot}
		if cfg.Snapshot == SnapshotInitial && len(tables) > 0 {
			pos.CopyAll = true
			if job, err = prepareCopy(ctx, &cfg, tables, true, nil); err != nil {
				return nil, err
			}
		}
	default:
		action := "NOEXPORT_SNAPSHOT"
		if cfg.Snapshot == SnapshotInitial {
			action = "EXPORT_SNAPSHOT"
		}
		res, err := pglogrepl.CreateReplicationSlot(ctx, replConn, cfg.Slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{SnapshotAction: action, Mode: pglogrepl.LogicalReplication})
		if err != nil {
			return nil, fmt.Errorf("create replication slot %q: %w", cfg.Slot, err)
		}
		lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
		if err != nil {
			return nil, fmt.Errorf("slot %q consistent point %q: %w", cfg.Slot, res.ConsistentPoint, err)
		}
		s.log.Info().Str("consistent_point", lsn.String()).Msg("created replication slot")
		pos = &position{LSN: lsn, Ts: opts.StartTs, Cols: map[uint32]string{}, Slot: cfg.Slot}
		exported = res.SnapshotName
		if cfg.Snapshot == SnapshotInitial && len(tables) > 0 {
			pos.CopyAll = true
			job = &copyJob{at: lsn, tables: tables, initial: true, base: opts.StartTs}
			pos.Ts = opts.StartTs + model.Ts(len(tables))
			if err := startWorkers(ctx, &cfg, exported, job); err != nil {
				return nil, err
			}
		}
	}
	if job != nil {
		job.estRows = estimateRows(ctx, conn, job.tables)
	}
	conf := slot.ConfirmedFlush
	if !slot.Exists || conf == 0 {
		conf = pos.LSN
	}
	err = pglogrepl.StartReplication(ctx, replConn, cfg.Slot, pos.LSN, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{
			"proto_version '1'",
			"publication_names " + quoteLiteral(quoteIdent(cfg.Publication)),
			"messages 'true'",
		},
	})
	if err != nil {
		return nil, classifyStreamErr(&cfg, fmt.Errorf("start replication on slot %q at %s: %w", cfg.Slot, pos.LSN, err))
	}
	sctx, cancel := context.WithCancel(context.Background())
	st := &Stream{cfg: &cfg, log: s.log, out: make(chan item, outDepth), cancel: cancel,
		nudge: make(chan struct{}, 1), addReq: make(chan []model.TableName, 1)}
	st.confirmed.Store(uint64(conf))
	r := &reader{s: st, repl: replConn, cat: newCatalog(conn), log: s.log, pos: pos, resolved: opts.StartTs,
		tables: map[uint32]model.TableName{}, pending: map[uint32]bool{}, rels: map[uint32][]relCol{}, relSigs: map[uint32]string{}, schemas: map[uint32]*tableSchema{}}
	for _, t := range tables {
		r.tables[uint32(t.ID)] = t
	}
	if job != nil {
		r.installCopy(job)
	}
	known := map[string]bool{}
	for _, t := range tables {
		known[t.String()] = true
	}
	st.wg.Add(2)
	go func() {
		defer st.wg.Done()
		defer conn.Close(context.Background())
		defer replConn.Close(context.Background())
		defer func() { r.copy.stop() }()
		r.run(sctx)
	}()
	go func() {
		defer st.wg.Done()
		s.maintain(sctx, st, known)
	}()
	ok = true
	return st, nil
}

// pendingTables are the tables whose copy a position still owes.
func (s *Source) pendingTables(pos *position, tables []model.TableName) []model.TableName {
	if s.cfg.Snapshot != SnapshotInitial && !pos.CopyAll && len(pos.Copy) == 0 {
		return nil
	}
	var out []model.TableName
	for _, t := range tables {
		if pos.CopyAll || containsOID(pos.Copy, uint32(t.ID)) {
			out = append(out, t)
		}
	}
	return out
}

func estimateRows(ctx context.Context, c *pgx.Conn, tables []model.TableName) int64 {
	var total int64
	for _, t := range tables {
		var n float64
		if err := c.QueryRow(ctx, `SELECT GREATEST(reltuples, 0)::float8 FROM pg_class WHERE oid = $1`, t.ID).Scan(&n); err == nil {
			total += int64(n)
		}
	}
	return total
}

// maintain sends heartbeats and polls the catalog for new tables, on its
// own connection.
func (s *Source) maintain(ctx context.Context, st *Stream, known map[string]bool) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	hb := time.NewTicker(s.cfg.HeartbeatInterval)
	defer hb.Stop()
	poll := time.NewTicker(s.cfg.TablePoll)
	defer poll.Stop()
	getConn := func() *pgx.Conn {
		if conn != nil && !conn.IsClosed() {
			return conn
		}
		c, err := connectPgx(ctx, &s.cfg)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("maintenance connection")
			}
			return nil
		}
		conn = c
		return conn
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb.C:
			c := getConn()
			if c == nil {
				continue
			}
			// A transactional message: it commits like any transaction, so
			// an idle slot gets a position to confirm and the changefeed a
			// ts to resolve to.
			if _, err := c.Exec(ctx, `SELECT pg_logical_emit_message(true, 'raftcdc_heartbeat', $1::text)`, s.cfg.Slot); err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("heartbeat")
				c.Close(context.Background())
			}
		case <-poll.C:
			c := getConn()
			if c == nil {
				continue
			}
			if err := s.pollTables(ctx, c, st, known); err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("poll for new tables")
			}
		}
	}
}

func (s *Source) pollTables(ctx context.Context, c *pgx.Conn, st *Stream, known map[string]bool) error {
	all, err := listTables(ctx, c)
	if err != nil {
		return err
	}
	var fresh []model.TableName
	for _, t := range all {
		if !known[t.String()] && s.match(t) {
			fresh = append(fresh, t)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	bad, err := keylessTables(ctx, c, fresh)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		s.log.Error().Strs("tables", bad).Msg("new tables match the filter but have no primary key or replica identity: not replicated (add a key, or exclude them)")
		skip := map[string]bool{}
		for _, b := range bad {
			skip[b] = true
		}
		kept := fresh[:0]
		for _, t := range fresh {
			if !skip[t.String()] {
				kept = append(kept, t)
			}
		}
		fresh = kept
		if len(fresh) == 0 {
			return nil
		}
	}
	if !s.cfg.PublicationGiven {
		ps, err := readPublication(ctx, c, s.cfg.Publication)
		if err != nil {
			return err
		}
		var add []model.TableName
		for _, t := range fresh {
			if !ps.Tables[t.String()] {
				add = append(add, t)
			}
		}
		if len(add) > 0 {
			if _, err := c.Exec(ctx, "ALTER PUBLICATION "+quoteIdent(s.cfg.Publication)+" ADD TABLE "+joinTables(add)); err != nil {
				return fmt.Errorf("add %s to publication %q: %w", tableList(add), s.cfg.Publication, err)
			}
		}
	}
	select {
	case st.addReq <- fresh:
		for _, t := range fresh {
			known[t.String()] = true
		}
		s.log.Info().Str("tables", tableList(fresh)).Msg("new tables match the filter")
	default: // the stream is busy with a copy; the next poll asks again
	}
	return nil
}
