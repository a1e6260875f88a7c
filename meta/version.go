package meta

// SchemaVersion is the newest metadata schema this build enforces.
//
//	1  the schema of every build before the cluster record existed
//	2  the /cluster record (identity and schema version)
//
// A cluster runs at the version in its /cluster record (1 without one).
// The leader raises it only when every voter advertises support for the
// new version in gossip, and refuses to add a node whose build is older
// than the version recorded. A rule or record format that a new schema
// version introduces must apply only where ClusterSchemaVersion says so:
// during a rolling upgrade, replicas of the old and the new build apply the
// same log, and must judge every command the same way.
const SchemaVersion = 2

// BaselineSchemaVersion is what a node that does not advertise a schema
// version (a build from before versions were gossiped) supports.
const BaselineSchemaVersion = 1
