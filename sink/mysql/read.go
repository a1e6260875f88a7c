package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/raftcdc/raftcdc/model"
)

// ReadRows reads every row of a downstream table back as change-model
// values, aligned with schema's columns and ordered by the handle key (by
// every column when there is none): what a verifier compares with the
// upstream's state. The connection's session time zone must be UTC (the
// connections this package opens are, with the default time-zone).
func ReadRows(ctx context.Context, db *sql.DB, schema *model.TableSchema) ([][]model.Value, error) {
	cols := make([]string, len(schema.Columns))
	for i, c := range schema.Columns {
		cols[i] = model.QuoteIdent(c.Name)
	}
	order := append([]string(nil), cols...)
	for i, c := range schema.Columns {
		if c.Type.Kind == model.TypeFloat {
			// The text protocol prints a FLOAT with 6 digits; as a double
			// it is exact.
			cols[i] = "CAST(" + cols[i] + " AS DOUBLE)"
		}
	}
	if ix := schema.HandleKey(); ix != nil {
		order = nil
		for _, c := range ix.Columns {
			order = append(order, model.QuoteIdent(c))
		}
	}
	q := "SELECT " + strings.Join(cols, ",") + " FROM " + qname(schema) + " ORDER BY " + strings.Join(order, ",")
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET SESSION time_zone = '+00:00'"); err != nil {
		return nil, err
	}
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", qname(schema), err)
	}
	defer rows.Close()
	var out [][]model.Value
	raw := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		img := make([]model.Value, len(cols))
		for i, b := range raw {
			v, err := decodeText(schema.Columns[i].Type, b)
			if err != nil {
				return nil, fmt.Errorf("reading %s column %s: %w", qname(schema), schema.Columns[i].Name, err)
			}
			img[i] = v
		}
		out = append(out, img)
	}
	return out, rows.Err()
}

// decodeText turns a value in MySQL's text protocol into the model's
// canonical form for its column type.
func decodeText(t model.ColumnType, b []byte) (model.Value, error) {
	if b == nil {
		return model.Null(), nil
	}
	s := string(b)
	switch {
	case t.Kind == model.TypeBit:
		// BIT comes back as its bytes, big-endian.
		var u uint64
		for _, c := range b {
			u = u<<8 | uint64(c)
		}
		return model.UintValue(u), nil
	case t.IsInteger() && t.Unsigned:
		u, err := strconv.ParseUint(s, 10, 64)
		return model.UintValue(u), err
	case t.IsInteger() || t.Kind == model.TypeYear:
		i, err := strconv.ParseInt(s, 10, 64)
		return model.IntValue(i), err
	case t.Kind == model.TypeFloat:
		f, err := strconv.ParseFloat(s, 32)
		return model.FloatValue(f), err
	case t.Kind == model.TypeDouble:
		f, err := strconv.ParseFloat(s, 64)
		return model.FloatValue(f), err
	case t.IsBinary():
		return model.BytesValue(append([]byte{}, b...)), nil
	}
	return model.StringValue(s), nil
}
