package fsm

// Rules is the schema the state machine enforces. The FSM itself knows only
// keys, revisions and guarded batches; what a key means, who may write it,
// what the fencing fields of a command are checked against and which states
// are invalid belong to the schema's owner (package meta for raftcdc's
// metadata), so that the state machine never decodes a record itself.
//
// Both methods run inside the command's write transaction and must be
// deterministic: every replica has to reach the same answer.
type Rules interface {
	// Admit runs first, over the state before the command, and decides
	// whether its proposer may make it at all: the owner epoch and capture
	// fence it carries, and who may write each key it touches. It returns
	// the operations that carry the command out: cmd.Ops for a txn, the
	// record a claim_owner or register_capture writes for those kinds.
	// index is the command's Raft index.
	Admit(r Reader, cmd Command, index uint64) ([]Op, *Error)
	// Check runs after the operations, over the state after them, with the
	// keys they put or deleted; a refusal rolls the whole command back.
	Check(r Reader, changed []string) *Error
}
