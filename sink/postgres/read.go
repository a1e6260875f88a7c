package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/raftcdc/raftcdc/model"
)

// ReadRows reads every row of a downstream table back as change-model
// values, aligned with schema's columns and ordered by the handle key (by
// every column when there is none): what a verifier compares with the
// upstream's state. conn's session must use the settings this package's
// connections use (TimeZone UTC, DateStyle ISO, IntervalStyle postgres,
// bytea_output hex); SessionSettings lists them.
func ReadRows(ctx context.Context, conn *pgx.Conn, schema *model.TableSchema) ([][]model.Value, error) {
	cols := make([]string, len(schema.Columns))
	for i, c := range schema.Columns {
		cols[i] = quoteIdent(c.Name)
	}
	order := append([]string(nil), cols...)
	if ix := schema.HandleKey(); ix != nil {
		order = order[:0]
		for _, c := range ix.Columns {
			order = append(order, quoteIdent(c))
		}
	}
	if schema.HandleKey() == nil {
		for i, c := range schema.Columns {
			if c.Type.Kind == model.TypeJSON {
				order[i] = cols[i] + "::text" // json has no ordering operator
			}
		}
	}
	q := "SELECT " + strings.Join(cols, ",") + " FROM " + qname(schema.Table) + " ORDER BY " + strings.Join(order, ",")
	for _, set := range SessionSettings() {
		if _, err := conn.Exec(ctx, set); err != nil {
			return nil, err
		}
	}
	rows, err := conn.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", qname(schema.Table), err)
	}
	defer rows.Close()
	var out [][]model.Value
	for rows.Next() {
		raw := rows.RawValues()
		img := make([]model.Value, len(raw))
		for i, b := range raw {
			var s *string
			if b != nil {
				v := string(b)
				s = &v
			}
			v, err := decodeText(schema.Columns[i].Type, s)
			if err != nil {
				return nil, fmt.Errorf("reading %s column %s: %w", qname(schema.Table), schema.Columns[i].Name, err)
			}
			img[i] = v
		}
		out = append(out, img)
	}
	return out, rows.Err()
}

// SessionSettings are the SET statements that give a session the text
// forms ReadRows decodes.
func SessionSettings() []string {
	var out []string
	for k, v := range sessionParams {
		out = append(out, "SET "+k+" = "+quoteString(v))
	}
	return out
}
