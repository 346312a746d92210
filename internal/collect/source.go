package collect

// Sources of listeners and owners (Snapshot.Source).
const (
	// SourceBPF: listeners, both queues and drops from iter/tcp in each
	// namespace, owners from one iter/task_file pass over every process
	// (a /proc/PID/fd walk for the processes it did not visit).
	SourceBPF = "bpf_iter"
	// SourceSockDiag: sock_diag dumps of listeners and request sockets,
	// owners from a /proc/*/fd walk.
	SourceSockDiag = "sock_diag"
)
