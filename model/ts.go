package model

import (
	"time"

	"github.com/tikv/client-go/v2/oracle"
)

// Ts is a position in TSO form: physical milliseconds << 18 | logical.
type Ts = uint64

// TsFromTime is the TSO of a wall time with logical part zero.
func TsFromTime(t time.Time) Ts {
	return oracle.GoTimeToTS(t)
}

// TsTime is the wall time of a TSO's physical part.
func TsTime(ts Ts) time.Time {
	return oracle.GetTimeFromTS(ts)
}

// LagSeconds is how far ts is behind now, in seconds; never negative.
func LagSeconds(ts Ts, now time.Time) float64 {
	d := now.Sub(TsTime(ts)).Seconds()
	if d < 0 {
		return 0
	}
	return d
}
