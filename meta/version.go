package meta

// SchemaVersion is the newest metadata schema this build enforces.
//
//	1  the schema of every build before the cluster record existed
//	2  the /cluster record (identity and schema version)
//	3  a changefeed's table set in /changefeed/tables/<cf>, out of its
//	   status; positions' running tables and statuses' orphans grouped by
//	   ts (TablesSchemaVersion)
//
// A cluster runs at the version in its /cluster record (1 without one).
// The leader raises it only when every voter advertises support for the
// new version in gossip, and refuses to add a node whose build is older
// than the version recorded. A rule or record format that a new schema
// version introduces must apply only where ClusterSchemaVersion says so:
// during a rolling upgrade, replicas of the old and the new build apply the
// same log, and must judge every command the same way.
const SchemaVersion = 3

// BaselineSchemaVersion is what a node that does not advertise a schema
// version (a build from before versions were gossiped) supports.
const BaselineSchemaVersion = 1

// TablesSchemaVersion is the first schema version at which the owner keeps
// a changefeed's table set in /changefeed/tables/<cf> instead of in its
// status, and at which the state machine accepts that key. A build of
// schema 2 knows no such key and would refuse the put that a newer replica
// applies; so until every voter supports it, nobody writes it.
const TablesSchemaVersion = 3
