package tidb

import "github.com/pingcap/kvproto/pkg/cdcpb"

// matcher pairs a region's COMMIT events with their PREWRITEs (which carry
// the value and the old value), as TiCDC's does. Before the region is
// initialized, COMMITs and ROLLBACKs are cached: their PREWRITE may be a
// lock that the incremental scan has not sent yet.
type matcher struct {
	prewrites       map[matchKey]*cdcpb.Event_Row
	cachedCommits   []*cdcpb.Event_Row
	cachedRollbacks []*cdcpb.Event_Row
}

type matchKey struct {
	key     string
	startTs uint64
}

func (m *matcher) prewrite(row *cdcpb.Event_Row) {
	if m.prewrites == nil {
		m.prewrites = map[matchKey]*cdcpb.Event_Row{}
	}
	m.prewrites[matchKey{string(row.GetKey()), row.GetStartTs()}] = row
}

// match finds a COMMIT's PREWRITE and returns the committed change.
func (m *matcher) match(commit *cdcpb.Event_Row) (rawRow, bool) {
	k := matchKey{string(commit.GetKey()), commit.GetStartTs()}
	pw, ok := m.prewrites[k]
	if !ok {
		return rawRow{}, false
	}
	delete(m.prewrites, k)
	return rawRow{key: commit.GetKey(), value: pw.GetValue(), oldValue: pw.GetOldValue(),
		delete: pw.GetOpType() == cdcpb.Event_Row_DELETE, startTs: commit.GetStartTs(), commitTs: commit.GetCommitTs()}, true
}

func (m *matcher) rollback(row *cdcpb.Event_Row) {
	delete(m.prewrites, matchKey{string(row.GetKey()), row.GetStartTs()})
}

func (m *matcher) cacheCommit(row *cdcpb.Event_Row) { m.cachedCommits = append(m.cachedCommits, row) }
func (m *matcher) cacheRollback(row *cdcpb.Event_Row) {
	m.cachedRollbacks = append(m.cachedRollbacks, row)
}

// takeCached hands out (and forgets) what was cached before INITIALIZED.
func (m *matcher) takeCached() (commits, rollbacks []*cdcpb.Event_Row) {
	commits, rollbacks = m.cachedCommits, m.cachedRollbacks
	m.cachedCommits, m.cachedRollbacks = nil, nil
	return commits, rollbacks
}

// pending is how many PREWRITEs wait for their COMMIT or ROLLBACK.
func (m *matcher) pending() int { return len(m.prewrites) }
