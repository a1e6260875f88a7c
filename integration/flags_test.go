package integration

import (
	"flag"
	"time"
)

// Longer variants of the scenarios; the defaults keep the package's default
// run (CI, with -race, on two cores) to a few minutes.
var (
	flagKills = flag.Int("kills", 4, "leader kill -9 rounds in TestLeaderKillLoop (the issue's full run is 10)")
	// make chaos DURATION=30m passes -chaos-duration.
	flagChaosDuration = flag.Duration("chaos-duration", 0, "run TestChaosLong for this long (0 skips it)")
	flagChaosSeed     = flag.Uint64("chaos-seed", 0, "seed of the chaos runs' fault choices (0 = from the clock); the seed is logged so a run can be repeated")
	flagChaosShort    = flag.Duration("chaos-short", 45*time.Second, "duration of TestChaosShort, the chaos run in the default test run (0 skips it)")
	// make chaos TLS=1 passes -chaos-tls.
	flagChaosTLS = flag.Bool("chaos-tls", false, "run the chaos runs' nodes with mutual TLS on every node-to-node path and HTTPS on the API")
	// The before/after comparison of drained rolling restarts.
	flagRollingCompare = flag.Bool("rolling-compare", false, "also run TestRollingRestartWithoutDrain (--drain-timeout 0), to compare stalls and duplicates")
)
