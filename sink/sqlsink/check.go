package sqlsink

// CheckResult is what a create-time check of a SQL downstream found: the
// server it reached and whether the sink can work there. The API's create
// and preview paths show it.
type CheckResult struct {
	Sink    string `json:"sink"`    // mysql, tidb, postgres
	URI     string `json:"uri"`     // redacted
	Flavour string `json:"flavour"` // MySQL, MariaDB, TiDB, PostgreSQL
	Version string `json:"version"`
	User    string `json:"user"`
	// Databases are the downstream databases (PostgreSQL: schemas) the
	// check covered.
	Databases []string `json:"databases,omitempty"`
	// Warnings do not stop the changefeed but deserve a look.
	Warnings []string `json:"warnings,omitempty"`
}

// RequiredMySQLPrivileges are what the MySQL sink needs on every database
// it writes: the DML, and the DDL it replays and create-tables uses.
var RequiredMySQLPrivileges = []string{"SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX"}
